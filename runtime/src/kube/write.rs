//! The verbs that change objects in place: update (PUT) and the four
//! patches (JSON, merge, strategic merge, server-side apply) go one way —
//! the patch is applied to the object as the API shows it (`objects`),
//! the result decoded back (`decode`) and sent as one update request, so
//! the control plane checks it whole and nothing is half-changed. Also
//! namespaces made, and `dryRun=All` for every change.

use std::collections::BTreeMap;

use hyper::Method;
use serde_json::Value;

use super::decode;
use super::discovery::Resource;
use super::fields;
use super::objects;
use super::patch::{self, PatchKind};
use super::status::Status;
use super::verbs::{Asked, Reply, Verbs};
use crate::api::{Request, Response};

/// Whether a request asks for a dry run (`dryRun=All`; any other value is
/// refused, as Kubernetes does).
pub fn dry_run(query: &BTreeMap<String, String>) -> Result<bool, Status> {
    match query.get("dryRun").map(String::as_str) {
        None | Some("") => Ok(false),
        Some("All") => Ok(true),
        Some(other) => Err(Status::bad_request(format!("dryRun `{other}` is not supported: give All"))),
    }
}

/// `request`, as a dry run when `dry`.
pub fn as_dry_run(request: Request, dry: bool) -> Request {
    match dry {
        true => Request::DryRun(Box::new(request)),
        false => request,
    }
}

/// Optimistic concurrency, in one place: an object sent with a
/// resourceVersion must carry the one the object has now.
fn check_version(resource: &str, name: &str, live: &Value, sent: &Value) -> Result<(), Status> {
    match sent["metadata"]["resourceVersion"].as_str().filter(|v| !v.is_empty()) {
        Some(version) if Some(version) != live["metadata"]["resourceVersion"].as_str() => {
            Err(Status::conflict(resource, name))
        }
        _ => Ok(()),
    }
}

/// How kubectl names a resource in messages (`deployments.apps`).
fn label(resource: &Resource) -> String {
    match resource.group.is_empty() {
        true => resource.name.to_string(),
        false => format!("{}.{}", resource.name, resource.group),
    }
}

impl Verbs {
    /// PUT or PATCH of one object.
    pub(super) async fn update(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        name: &str,
        asked: &Asked<'_>,
        dry: bool,
    ) -> Result<Reply, Status> {
        let kind = match *asked.method {
            Method::PATCH => Some(PatchKind::from_content_type(asked.content_type)?),
            _ => None,
        };
        if kind == Some(PatchKind::Apply) && asked.query.get("fieldManager").is_none_or(|m| m.is_empty()) {
            return Err(Status::bad_request("PATCH with apply-patch+yaml requires a fieldManager"));
        }
        let live = match self.get(resource, namespace, name).await {
            Ok(live) => live,
            // Server-side apply makes what is not there yet.
            Err(e) if e.code == 404 && kind == Some(PatchKind::Apply) => {
                let Some(ns) = namespace else { return Err(e) };
                let mut body = asked.body.clone();
                if body["metadata"]["name"].is_null() && body.is_object() {
                    body["metadata"]["name"] = Value::from(name);
                }
                self.strict(resource, asked, &body)?;
                return self.create(resource, ns, &body, dry).await;
            }
            Err(e) => return Err(e),
        };
        let object = match kind {
            None => asked.body.clone(),
            Some(kind) => patch::apply(kind, &live, asked.body)?,
        };
        check_version(&label(resource), name, &live, &object)?;
        // The patched object: the patch itself may hold `$` directives.
        self.strict(resource, asked, &object)?;
        if object["metadata"]["name"].as_str().is_some_and(|n| n != name) {
            return Err(Status::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                object["metadata"]["name"].as_str().unwrap_or("")
            )));
        }
        let ns = namespace.unwrap_or("");
        let request = match resource.name {
            "pods" => Request::UpdatePod(decode::pod(&object, ns)?),
            "deployments" => Request::UpdateDeployment(decode::deployment(&object, ns)?),
            "services" => Request::UpdateService(decode::service(&object, ns)?),
            "networkpolicies" => Request::UpdateNetworkPolicy(super::netpol::decode(&object, ns)?),
            // `kubectl label namespace`: a namespace's labels are all it has to change.
            "namespaces" => {
                let (_, labels, annotations) = decode::namespace(&object)?;
                Request::UpdateNamespace { name: name.to_string(), labels, annotations }
            }
            "ingresses" => Request::UpdateIngress(super::ingresses::decode_ingress(&object, ns)?),
            // A patch merges with the object as shown, whose data podnet
            // never shows: the whole Secret must come with the request.
            "secrets" if kind.is_some() => {
                return Err(Status::not_allowed(
                    "podnet does not send a Secret's data back, so it cannot patch one: use kubectl replace -f, or delete and create it",
                ));
            }
            "secrets" => Request::UpdateSecret(super::ingresses::decode_secret(&object, ns)?),
            "configmaps" => Request::UpdateConfigMap(super::configmaps::decode(&object, ns)?),
            other => {
                return Err(Status::not_allowed(format!(
                    "podnet keeps {other} itself: they cannot be updated or patched"
                )));
            }
        };
        let response = self.call(as_dry_run(request, dry), resource.kind, &label(resource), name).await?;
        let rv = self.bump(dry);
        match response {
            Response::Pod(p) => Ok((200, objects::pod(&p, rv))),
            Response::Deployment(d) => Ok((200, objects::deployment(&d, rv))),
            Response::Service(s) => Ok((200, objects::service(&s, rv))),
            Response::NetworkPolicy(p) => Ok((200, super::netpol::render(&p, rv))),
            Response::Namespace(n) => Ok((200, objects::namespace(&n, rv))),
            Response::Ingress(i) => Ok((200, super::ingresses::ingress(&i, rv))),
            Response::Secret(s) => Ok((200, super::ingresses::secret(&s, rv))),
            Response::ConfigMap(c) => Ok((200, super::configmaps::configmap(&c, rv))),
            _ => Err(Status::unavailable("the agent answered with something else than asked for")),
        }
    }

    /// `kubectl create namespace`.
    pub(super) async fn create_namespace(&self, body: &Value, dry: bool) -> Result<Reply, Status> {
        let (name, labels, annotations) = decode::namespace(body)?;
        let request = Request::CreateNamespace { name: name.clone(), labels, annotations };
        match self.call(as_dry_run(request, dry), "Namespace", "namespaces", &name).await? {
            Response::Namespace(ns) => Ok((201, objects::namespace(&ns, self.bump(dry)))),
            _ => Err(Status::unavailable("the agent answered with something else than asked for")),
        }
    }

    /// `fieldValidation=Strict` (what kubectl asks for): a field
    /// Kubernetes does not define is an error, not silently nothing.
    fn strict(&self, resource: &Resource, asked: &Asked<'_>, body: &Value) -> Result<(), Status> {
        if asked.query.get("fieldValidation").is_some_and(|v| v == "Strict")
            && let Some(field) = fields::unknown(resource.kind, body)
        {
            let (kind, version) = (resource.kind, resource.api_version());
            return Err(Status::bad_request(format!(
                "{kind} in version \"{version}\" cannot be handled as a {kind}: strict decoding error: unknown field \"{field}\""
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::changes::{Object, Versioned};
    use crate::api::server::{Answer, Call};
    use crate::model::{Deployment, DeploymentSpec};
    use serde_json::json;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// Verbs over a fake agent holding deployment `web` (when `exists`):
    /// it answers lists, and echoes updates and creations; every request
    /// it got is kept.
    fn verbs(exists: bool) -> (Verbs, Arc<Mutex<Vec<Request>>>) {
        let body = json!({ "kind": "Deployment", "apiVersion": "apps/v1",
            "metadata": { "name": "web", "labels": { "app": "web" } },
            "spec": { "replicas": 1, "selector": { "matchLabels": { "app": "web" } }, "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": { "containers": [{ "name": "app", "image": "app:v1", "ports": [{ "containerPort": 80 }] }] } } } });
        let spec = decode::deployment(&body, "default").unwrap();
        let (calls, mut requests) = tokio::sync::mpsc::channel::<Call>(4);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let as_deployment = |spec: DeploymentSpec| Deployment {
            uid: "u".into(),
            created_at: 0,
            spec,
            replicas: 0,
            ready_replicas: 0,
        };
        tokio::spawn(async move {
            while let Some((request, reply)) = requests.recv().await {
                log.lock().unwrap().push(request.clone());
                let answer = match request {
                    Request::Objects { .. } => Response::Objects {
                        revision: 7,
                        items: match exists {
                            true => vec![Versioned {
                                revision: 5,
                                generation: 1,
                                object: Object::Deployment(std::sync::Arc::new(as_deployment(spec.clone()))),
                            }],
                            false => vec![],
                        },
                    },
                    Request::UpdateDeployment(spec) | Request::CreateDeployment(spec) => {
                        Response::Deployment(as_deployment(spec))
                    }
                    Request::DryRun(inner) => match *inner {
                        Request::UpdateDeployment(spec) => Response::Deployment(as_deployment(spec)),
                        _ => Response::Done,
                    },
                    _ => Response::Done,
                };
                let _ = reply.send(Ok(Answer::Once(Box::new(answer))));
            }
        });
        (Verbs::new(super::super::agent::Agent::new(calls, Duration::from_secs(5))), seen)
    }

    async fn patch(
        verbs: &Verbs,
        content_type: &str,
        query: &[(&str, &str)],
        body: Value,
    ) -> Result<Reply, Status> {
        let query: BTreeMap<String, String> =
            query.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let asked = Asked { method: &Method::PATCH, query: &query, table: false, body: &body, content_type };
        let resource = super::super::discovery::find("apps", "deployments").unwrap();
        let dry = dry_run(&query)?;
        verbs.update(resource, Some("default"), "web", &asked, dry).await
    }

    #[tokio::test]
    async fn a_strategic_patch_becomes_one_update_of_the_merged_object() {
        let (verbs, seen) = verbs(true);
        let body = json!({ "spec": { "template": { "spec": { "containers": [{ "name": "app", "image": "app:v2" }] } } } });
        let (code, object) =
            patch(&verbs, "application/strategic-merge-patch+json", &[], body).await.unwrap();
        assert_eq!(code, 200);
        let c = &object["spec"]["template"]["spec"]["containers"][0];
        assert_eq!((c["name"].as_str(), c["image"].as_str()), (Some("app"), Some("app:v2")));
        assert_eq!(c["ports"][0]["containerPort"], 80, "merged into the live container, not replacing it");
        let sent = seen.lock().unwrap().clone();
        let Some(Request::UpdateDeployment(spec)) = sent.last() else { panic!("{sent:?}") };
        assert_eq!(spec.template.image.as_ref().unwrap().image, "app:v2");
        // A dry run goes as one.
        let body = json!({ "spec": { "replicas": 3 } });
        patch(&verbs, "application/merge-patch+json", &[("dryRun", "All")], body).await.unwrap();
        assert!(matches!(seen.lock().unwrap().last(), Some(Request::DryRun(_))));
    }

    #[tokio::test]
    async fn stale_versions_bad_patches_and_missing_managers_send_nothing() {
        let (verbs, seen) = verbs(true);
        let stale = json!({ "metadata": { "resourceVersion": "999" }, "spec": { "replicas": 2 } });
        let e = patch(&verbs, "application/merge-patch+json", &[], stale).await.unwrap_err();
        assert_eq!(e.code, 409);
        let bad = json!({ "spec": { "replicas": -1 } });
        let e = patch(&verbs, "application/merge-patch+json", &[], bad).await.unwrap_err();
        assert_eq!((e.code, e.causes[0].0.as_str()), (422, "spec.replicas"));
        let e = patch(&verbs, "application/apply-patch+yaml", &[], json!({})).await.unwrap_err();
        assert!(e.message.contains("fieldManager"), "{}", e.message);
        assert_eq!(patch(&verbs, "text/plain", &[], json!({})).await.unwrap_err().code, 415);
        let sent = seen.lock().unwrap().clone();
        assert!(sent.iter().all(|r| matches!(r, Request::Objects { .. })), "{sent:?}");
    }

    #[tokio::test]
    async fn server_side_apply_creates_what_is_absent() {
        let (verbs, seen) = verbs(false);
        let body = json!({ "apiVersion": "apps/v1", "kind": "Deployment", "metadata": { "name": "web" },
            "spec": { "selector": { "matchLabels": { "app": "web" } }, "template": { "metadata": { "labels": { "app": "web" } },
                "spec": { "containers": [{ "name": "app", "image": "app:v1" }] } } } });
        let (code, _) = patch(&verbs, "application/apply-patch+yaml", &[("fieldManager", "kubectl")], body)
            .await
            .unwrap();
        assert_eq!(code, 201);
        assert!(matches!(seen.lock().unwrap().last(), Some(Request::CreateDeployment(_))));
    }

    #[test]
    fn a_stale_resource_version_is_a_conflict_and_none_is_no_check() {
        let live = json!({ "metadata": { "resourceVersion": "7" } });
        let stale = json!({ "metadata": { "resourceVersion": "3" } });
        let e = check_version("deployments.apps", "web", &live, &stale).unwrap_err();
        assert_eq!((e.code, e.reason), (409, "Conflict"));
        assert!(e.message.contains("the object has been modified"), "{}", e.message);
        assert!(check_version("pods", "p", &live, &json!({ "metadata": {} })).is_ok());
        assert!(check_version("pods", "p", &live, &live).is_ok());
        let query = BTreeMap::from([("dryRun".to_string(), "Some".to_string())]);
        assert_eq!(dry_run(&query).unwrap_err().code, 400);
    }
}
