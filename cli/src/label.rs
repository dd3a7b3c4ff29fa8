//! `podnet label pod NAME KEY=VALUE... [KEY-]`, as `kubectl label` does:
//! a changed value needs `--overwrite`, `KEY-` removes a label. Services
//! select pods by these, CNI containers included.

use std::path::Path;

use runtime::api::{Request, Response};
use runtime::model::check_label;

use crate::error::CliError;
use crate::{call, unexpected};

/// Changes pod `namespace/name`'s labels; says what it did, as kubectl does.
pub(crate) async fn run(
    socket: &Path,
    namespace: &str,
    name: &str,
    changes: &[String],
    overwrite: bool,
) -> Result<String, CliError> {
    if changes.is_empty() {
        return Err("no labels given: add KEY=VALUE to set one, or KEY- to remove one".into());
    }
    let Response::Pods(list) = call(socket, Request::GetPods { namespace: Some(namespace.into()) }).await?
    else {
        return unexpected();
    };
    let mut spec = list
        .into_iter()
        .find(|p| p.spec.name == name)
        .ok_or_else(|| format!("pod {namespace}/{name} not found: list pods with `podnet get pods`"))?
        .spec;
    for change in changes {
        if let Some(key) = change.strip_suffix('-').filter(|k| !k.contains('=')) {
            spec.labels.remove(key);
            continue;
        }
        let (key, value) = change.split_once('=').ok_or_else(|| {
            format!("`{change}` is not KEY=VALUE or KEY-: e.g. `app=web`, or `app-` to remove")
        })?;
        check_label(key, value)?;
        match spec.labels.get(key) {
            Some(old) if old != value && !overwrite => {
                return Err(format!(
                    "pod {namespace}/{name} already has label {key}={old}: add --overwrite to change it"
                )
                .into());
            }
            _ => spec.labels.insert(key.into(), value.into()),
        };
    }
    let Response::Pod(pod) = call(socket, Request::UpdatePod(spec)).await? else { return unexpected() };
    Ok(format!("pod/{} labeled", pod.spec.name))
}
