//! `podnet create configmap`, `get configmaps` and `describe configmap`,
//! with kubectl's flags and output.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use runtime::api::{Request, Response};
use runtime::model::configmap::{ConfigMap, ConfigMapSpec};
use serde_json::Value;

use crate::error::CliError;
use crate::table::{age, render};
use crate::{call, unexpected};

/// The resourceVersion shown by the CLI (it has none to show).
const NO_VERSION: u64 = 0;

/// A ConfigMap from `--from-literal KEY=VALUE` and `--from-file
/// [KEY=]PATH` (a directory: each regular file in it, by its name), as
/// kubectl makes one: UTF-8 contents go to `data`, others to `binaryData`.
pub(crate) fn spec(
    name: String,
    namespace: String,
    literals: &[String],
    files: &[PathBuf],
) -> Result<ConfigMapSpec, CliError> {
    let mut spec = ConfigMapSpec {
        name,
        namespace,
        data: BTreeMap::new(),
        binary_data: BTreeMap::new(),
        labels: Default::default(),
        annotations: BTreeMap::new(),
    };
    for l in literals {
        let (k, v) = l.split_once('=').ok_or_else(|| format!("--from-literal `{l}` is not KEY=VALUE"))?;
        add(&mut spec, k, v.as_bytes().to_vec())?;
    }
    for f in files {
        let text = f.to_string_lossy();
        let (key, path) = match text.split_once('=') {
            Some((k, p)) => (Some(k.to_string()), PathBuf::from(p)),
            None => (None, f.clone()),
        };
        let cannot = |e: std::io::Error| format!("--from-file {}: cannot read it: {e}", path.display());
        if path.is_dir() {
            if key.is_some() {
                return Err(format!(
                    "--from-file {text}: a directory takes no KEY= (its files' names are the keys)"
                )
                .into());
            }
            let mut entries: Vec<PathBuf> =
                std::fs::read_dir(&path).map_err(cannot)?.filter_map(|e| Some(e.ok()?.path())).collect();
            entries.sort();
            for file in entries.iter().filter(|p| p.is_file()) {
                let bytes = std::fs::read(file).map_err(cannot)?;
                add(&mut spec, &file_key(file), bytes)?;
            }
        } else {
            let bytes = std::fs::read(&path).map_err(cannot)?;
            add(&mut spec, &key.unwrap_or_else(|| file_key(&path)), bytes)?;
        }
    }
    Ok(spec)
}

fn file_key(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Adds one key (given twice is an error, as kubectl says).
fn add(spec: &mut ConfigMapSpec, key: &str, bytes: Vec<u8>) -> Result<(), CliError> {
    if spec.data.contains_key(key) || spec.binary_data.contains_key(key) {
        return Err(format!(
            "cannot add key {key}: another key by that name already exists: give each key once"
        )
        .into());
    }
    match String::from_utf8(bytes) {
        Ok(text) => spec.data.insert(key.to_string(), text),
        Err(e) => spec.binary_data.insert(key.to_string(), e.into_bytes()).map(|_| String::new()),
    };
    Ok(())
}

/// `get configmaps`: NAME DATA AGE.
pub(crate) fn table(list: &[ConfigMap], all_namespaces: bool) -> String {
    let mut headers = vec!["NAME", "DATA", "AGE"];
    if all_namespaces {
        headers.insert(0, "NAMESPACE");
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|c| {
            let count = c.spec.data.len() + c.spec.binary_data.len();
            let mut row = vec![c.spec.name.clone(), count.to_string(), age(c.created_at)];
            if all_namespaces {
                row.insert(0, c.spec.namespace.clone());
            }
            row
        })
        .collect();
    render(&headers, &rows)
}

/// `get configmaps`: the objects and the table.
pub(crate) async fn get(
    socket: &Path,
    namespace: Option<String>,
    name: Option<&str>,
    shown_namespace: &str,
    all_namespaces: bool,
) -> Result<(Vec<Value>, String), CliError> {
    let Response::ConfigMaps(mut items) = call(socket, Request::GetConfigMaps { namespace }).await? else {
        return unexpected();
    };
    crate::keep_named(&mut items, name, |c| &c.spec.name, "configmap", shown_namespace)?;
    let objects = items.iter().map(|c| runtime::kube::configmaps::configmap(c, NO_VERSION)).collect();
    Ok((objects, table(&items, all_namespaces)))
}

/// `describe configmap NAME`, as kubectl shows one.
pub(crate) async fn describe(socket: &Path, namespace: &str, name: &str) -> Result<ExitCode, CliError> {
    let request = Request::GetConfigMaps { namespace: Some(namespace.to_string()) };
    let Response::ConfigMaps(items) = call(socket, request).await? else {
        return unexpected();
    };
    let Some(c) = items.into_iter().find(|c| c.spec.name == name) else {
        return Err(format!(
            "configmap {namespace}/{name} not found: list them with `podnet get configmaps -n {namespace}`"
        )
        .into());
    };
    let map = |m: Vec<(&String, &String)>| match m.is_empty() {
        true => "<none>".to_string(),
        false => m.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("\n              "),
    };
    let mut out = format!(
        "Name:         {}\nNamespace:    {}\nLabels:       {}\nAnnotations:  {}\n\nData\n====\n",
        c.spec.name,
        c.spec.namespace,
        map(c.spec.labels.iter().collect()),
        map(c.spec.annotations.iter().collect())
    );
    for (k, v) in &c.spec.data {
        out.push_str(&format!("{k}:\n----\n{v}\n\n"));
    }
    out.push_str("\nBinaryData\n====\n");
    for (k, v) in &c.spec.binary_data {
        out.push_str(&format!("{k}: {} bytes\n", v.len()));
    }
    out.push_str("\nEvents:  <none>\n");
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}
