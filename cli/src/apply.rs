//! `podnet apply -f FILE|-`: the objects of a manifest, read with the
//! Kubernetes API's decoder (`runtime::kube::manifest`), created when
//! absent and replaced when present (as `kubectl replace` would: the file
//! is the whole object; podnet keeps no last-applied state for a 3-way
//! merge), one line each as kubectl prints them. Every document is checked
//! before the first is sent.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use runtime::api::{Request, Response};
use runtime::kube::manifest::{self, MAX_BYTES, Object};

use crate::error::CliError;
use crate::{call, unexpected};

/// Applies the manifest at `file` (`-`: stdin); objects without a
/// namespace go to `namespace`.
pub(crate) async fn run(socket: &Path, file: &Path, namespace: &str) -> Result<ExitCode, CliError> {
    let name = if file == Path::new("-") { "stdin".to_string() } else { file.display().to_string() };
    let text = read(file).map_err(|e| CliError::Message(format!("{name}: {e}")))?;
    let objects = manifest::read(&text, namespace).map_err(|e| CliError::Message(format!("{name}: {e}")))?;
    for object in objects {
        let label = object.label();
        let outcome =
            apply(socket, object).await.map_err(|e| CliError::Message(format!("{name}: {label}: {e}")))?;
        println!("{label} {outcome}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The file's text, at most [`MAX_BYTES`] of it.
fn read(file: &Path) -> Result<String, String> {
    let mut bytes = Vec::new();
    let limit = MAX_BYTES as u64 + 1;
    let result = match file == Path::new("-") {
        true => std::io::stdin().lock().take(limit).read_to_end(&mut bytes),
        false => std::fs::File::open(file).and_then(|f| f.take(limit).read_to_end(&mut bytes)),
    };
    result.map_err(|e| format!("cannot read it: {e}"))?;
    if bytes.len() > MAX_BYTES {
        return Err(format!("it is larger than {MAX_BYTES} bytes: split it"));
    }
    String::from_utf8(bytes).map_err(|_| "it is not UTF-8 text".to_string())
}

/// Creates or replaces one object: `created`, `configured` or `unchanged`.
async fn apply(socket: &Path, object: Object) -> Result<&'static str, CliError> {
    let changed = |same: bool| if same { "unchanged" } else { "configured" };
    match object {
        Object::Pod(spec) => {
            let list = call(socket, Request::GetPods { namespace: Some(spec.namespace.clone()) }).await?;
            let Response::Pods(pods) = list else { return unexpected() };
            match pods.into_iter().find(|p| p.spec.name == spec.name) {
                None => call(socket, Request::RunPod(spec)).await.map(|_| "created"),
                Some(old) => match call(socket, Request::UpdatePod(spec)).await? {
                    Response::Pod(new) => Ok(changed(new.spec == old.spec)),
                    _ => unexpected(),
                },
            }
        }
        Object::Deployment(spec) => {
            let list =
                call(socket, Request::GetDeployments { namespace: Some(spec.namespace.clone()) }).await?;
            let Response::Deployments(all) = list else { return unexpected() };
            match all.into_iter().find(|d| d.spec.name == spec.name) {
                None => call(socket, Request::CreateDeployment(spec)).await.map(|_| "created"),
                Some(old) => match call(socket, Request::UpdateDeployment(spec)).await? {
                    Response::Deployment(new) => Ok(changed(new.spec == old.spec)),
                    _ => unexpected(),
                },
            }
        }
        Object::Service(spec) => {
            let list = call(socket, Request::GetServices { namespace: Some(spec.namespace.clone()) }).await?;
            let Response::Services(all) = list else { return unexpected() };
            match all.into_iter().find(|s| s.spec.name == spec.name) {
                None => call(socket, Request::CreateService(spec)).await.map(|_| "created"),
                Some(old) => match call(socket, Request::UpdateService(spec)).await? {
                    Response::Service(new) => Ok(changed(new.spec == old.spec)),
                    _ => unexpected(),
                },
            }
        }
        Object::Namespace(name, labels, annotations) => {
            let list = call(socket, Request::GetNamespaces).await?;
            let Response::Namespaces(all) = list else { return unexpected() };
            let stored = all.into_iter().find(|n| n.name == name);
            let create = Request::CreateNamespace {
                name: name.clone(),
                labels: labels.clone(),
                annotations: annotations.clone(),
            };
            match call(socket, create).await {
                Ok(_) => Ok("created"),
                // One that holds objects (or `default`) exists too: its labels are set.
                Err(e) if e.to_string().contains("already exists") => {
                    let before = stored.map(|n| (n.labels, n.annotations)).unwrap_or_default();
                    match call(socket, Request::UpdateNamespace { name, labels, annotations }).await? {
                        Response::Namespace(ns) => Ok(changed((ns.labels, ns.annotations) == before)),
                        _ => unexpected(),
                    }
                }
                Err(e) => Err(e),
            }
        }
        Object::NetworkPolicy(spec) => {
            let list =
                call(socket, Request::GetNetworkPolicies { namespace: Some(spec.namespace.clone()) }).await?;
            let Response::NetworkPolicies(all) = list else { return unexpected() };
            match all.into_iter().find(|p| p.spec.name == spec.name) {
                None => call(socket, Request::CreateNetworkPolicy(spec)).await.map(|_| "created"),
                Some(old) => match call(socket, Request::UpdateNetworkPolicy(spec)).await? {
                    Response::NetworkPolicy(new) => Ok(changed(new.spec == old.spec)),
                    _ => unexpected(),
                },
            }
        }
        Object::Ingress(spec) => {
            let list =
                call(socket, Request::GetIngresses { namespace: Some(spec.namespace.clone()) }).await?;
            let Response::Ingresses { items, .. } = list else { return unexpected() };
            match items.into_iter().find(|i| i.spec.name == spec.name) {
                None => call(socket, Request::CreateIngress(spec)).await.map(|_| "created"),
                Some(old) => match call(socket, Request::UpdateIngress(spec)).await? {
                    Response::Ingress(new) => Ok(changed(new.spec == old.spec)),
                    _ => unexpected(),
                },
            }
        }
        Object::Secret(spec) => {
            let list = call(socket, Request::GetSecrets { namespace: Some(spec.namespace.clone()) }).await?;
            let Response::Secrets(items) = list else { return unexpected() };
            match items.into_iter().find(|s| s.name == spec.name) {
                None => call(socket, Request::CreateSecret(spec)).await.map(|_| "created"),
                Some(old) => match call(socket, Request::UpdateSecret(spec)).await? {
                    Response::Secret(new) => {
                        Ok(changed(new.digest == old.digest && new.secret_type == old.secret_type))
                    }
                    _ => unexpected(),
                },
            }
        }
        Object::ConfigMap(spec) => {
            let list =
                call(socket, Request::GetConfigMaps { namespace: Some(spec.namespace.clone()) }).await?;
            let Response::ConfigMaps(items) = list else { return unexpected() };
            match items.into_iter().find(|c| c.spec.name == spec.name) {
                None => call(socket, Request::CreateConfigMap(spec)).await.map(|_| "created"),
                Some(old) => match call(socket, Request::UpdateConfigMap(spec)).await? {
                    Response::ConfigMap(new) => Ok(changed(new.spec == old.spec)),
                    _ => unexpected(),
                },
            }
        }
    }
}
