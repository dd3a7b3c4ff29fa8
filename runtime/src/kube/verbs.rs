//! The verbs on podnet's objects: list and get (as objects or as Tables,
//! filtered by label and field selectors), create, delete, and a
//! deployment's scale. Each one is a request to the agent, translated.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use hyper::Method;
use hyper::body::Bytes;
use serde_json::{Value, json};

use super::agent::{Agent, AgentRefusal};
use super::decode;
use super::discovery::Resource;
use super::encode::{ListBody, Shape};
use super::fields;
use super::objects;
use super::routes::Route;
use super::select::{FieldSelector, LabelSelector};
use super::status::Status;
use super::table::{self, Include};
use super::versioned;
use crate::api::changes::{Object, ObjectKind, Versioned};
use crate::api::{Request, Response};

/// One request, read and authenticated.
pub struct Asked<'a> {
    /// The HTTP method.
    pub method: &'a Method,
    /// Query parameters, decoded.
    pub query: &'a BTreeMap<String, String>,
    /// Whether the client asked for a Table (`as=Table`).
    pub table: bool,
    /// The body, parsed as JSON (Null when there was none).
    pub body: &'a Value,
    /// Its Content-Type (which kind of patch a PATCH is).
    pub content_type: &'a str,
}

/// What the server answers: a code and a JSON body.
pub type Reply = (u16, Value);

/// The verbs, over the agent. Objects carry the control plane's revision
/// of their last change; `version` is the latest revision seen, for what is
/// not numbered (Tables, endpoints, namespaces, a write's answer).
pub struct Verbs {
    agent: Agent,
    version: AtomicU64,
}

impl Verbs {
    /// Verbs answered through `agent`.
    pub fn new(agent: Agent) -> Verbs {
        Verbs { agent, version: AtomicU64::new(1) }
    }

    /// The agent the verbs ask (streams ask it too).
    pub fn agent(&self) -> &Agent {
        &self.agent
    }

    pub(super) fn rv(&self) -> u64 {
        self.version.load(Ordering::Relaxed)
    }

    /// Notes the revision an answer of the control plane carried.
    fn seen(&self, revision: u64) -> u64 {
        self.version.fetch_max(revision, Ordering::Relaxed).max(revision)
    }

    /// The revision a write's answer carries: the latest seen (the write's
    /// own is in the next list or get).
    pub(super) fn changed(&self) -> u64 {
        self.rv()
    }

    /// The resourceVersion after a change, or as it is after a dry run.
    pub(super) fn bump(&self, dry: bool) -> u64 {
        if dry { self.rv() } else { self.changed() }
    }

    /// Answers `asked` on `route` (not a document: the server serves those).
    pub async fn answer(&self, route: Route<'_>, asked: &Asked<'_>) -> Result<Reply, Status> {
        if super::watcher::flag(asked.query.get("watch")) {
            // Collections are watched by the server (kube/watcher.rs).
            return Err(Status::not_allowed(
                "watch a collection, with fieldSelector=metadata.name=NAME for one object",
            ));
        }
        let dry = super::write::dry_run(asked.query)?;
        let m = asked.method;
        match route {
            Route::Collection { resource, namespace: Some(ns) } if m == Method::POST => {
                if asked.query.get("fieldValidation").is_some_and(|v| v == "Strict")
                    && let Some(field) = fields::unknown(resource.kind, asked.body)
                {
                    let (kind, version) = (resource.kind, resource.api_version());
                    return Err(Status::bad_request(format!(
                        "{kind} in version \"{version}\" cannot be handled as a {kind}: strict decoding error: unknown field \"{field}\""
                    )));
                }
                self.create(resource, ns, asked.body, dry).await
            }
            // Writes (write.rs): namespaces made, objects updated and patched.
            Route::Collection { resource, namespace: None }
                if m == Method::POST && resource.name == "namespaces" =>
            {
                self.create_namespace(asked.body, dry).await
            }
            Route::Object { resource, namespace, name } if m == Method::PUT || m == Method::PATCH => {
                self.update(resource, namespace, name, asked, dry).await
            }
            Route::Object { resource, namespace, name } if m == Method::DELETE && dry => {
                self.get(resource, namespace, name).await.map(|object| (200, object))
            }
            Route::Object { resource, namespace, name } if m == Method::GET => {
                let object = self.get(resource, namespace, name).await?;
                match asked.table {
                    true => Ok((200, self.table(resource, &[object], asked))),
                    false => Ok((200, object)),
                }
            }
            Route::Object { resource, namespace, name } if m == Method::DELETE => {
                self.delete(resource, namespace, name).await
            }
            Route::Scale { namespace, name } if m == Method::GET => {
                let d = self.deployment(namespace, name).await?;
                Ok((200, objects::scale(&d, self.rv())))
            }
            Route::Scale { namespace, name } if m == Method::PUT || m == Method::PATCH => {
                let replicas = match asked.body {
                    // A JSON patch: [{"op":"replace","path":"/spec/replicas","value":3}].
                    Value::Array(ops) => ops
                        .iter()
                        .find(|op| {
                            op["path"] == "/spec/replicas"
                                && matches!(op["op"].as_str(), Some("replace" | "add"))
                        })
                        .and_then(|op| op["value"].as_u64())
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or_else(|| {
                            Status::invalid("Scale", name, "spec.replicas", "the patch sets no replica count")
                        })?,
                    body => decode::replicas(body, name)?,
                };
                let request =
                    Request::ScaleDeployment { namespace: namespace.into(), name: name.into(), replicas };
                match self.call(request, "Deployment", "deployments.apps", name).await? {
                    Response::Deployment(d) => Ok((200, objects::scale(&d, self.changed()))),
                    _ => Err(unexpected()),
                }
            }
            Route::Collection { resource, .. } | Route::Object { resource, .. } => Err(Status::not_allowed(
                format!("podnet does not serve {} on {}", asked.method, resource.name),
            )),
            Route::Scale { .. } => Err(Status::not_allowed(format!(
                "the scale subresource takes GET, PUT and PATCH, not {}",
                asked.method
            ))),
            Route::Document(_) | Route::Log { .. } | Route::Stream { .. } => Err(Status::no_path()),
        }
    }

    pub(super) async fn call(
        &self,
        request: Request,
        kind: &str,
        resource: &str,
        name: &str,
    ) -> Result<Response, Status> {
        self.agent.call(request).await.map_err(|e| match e {
            AgentRefusal::Refused(text) => Status::from_agent(&text, kind, resource, name),
            AgentRefusal::Unavailable(text) => Status::unavailable(text),
        })
    }

    /// Every object of `resource` in `namespace` (None: all), API-shaped.
    async fn objects(&self, resource: &Resource, namespace: Option<&str>) -> Result<Vec<Value>, Status> {
        Ok(self.objects_at(resource, namespace).await?.0)
    }

    /// [`Verbs::objects`], with the revision they are at (a list's).
    async fn objects_at(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
    ) -> Result<(Vec<Value>, u64), Status> {
        let (items, revision) = self.items_at(resource, namespace).await?;
        let objects = match items {
            Items::Shown(objects) => objects,
            Items::Versioned(items) => items.iter().map(versioned::render).collect(),
        };
        Ok((objects, revision))
    }

    /// Every object of `resource` in `namespace`, as the control plane
    /// numbers them (rendered later, one at a time) or already shown.
    async fn items_at(&self, resource: &Resource, namespace: Option<&str>) -> Result<(Items, u64), Status> {
        let ns = namespace.map(str::to_string);
        let call = |request| self.call(request, resource.kind, resource.name, "");
        if let Some(kind) = versioned::kind_of(resource.name) {
            let (revision, items) = match call(Request::Objects { kind, namespace: ns.clone() }).await? {
                Response::Objects { revision, items } => (revision, items),
                _ => return Err(unexpected()),
            };
            self.seen(revision);
            let objects = match resource.name {
                "replicasets" => self.replicasets(&items, ns).await?,
                "endpointslices" => items
                    .iter()
                    .filter_map(|v| match &v.object {
                        Object::Endpoints(e) => Some(super::endpointslices::slice(e, v.revision)),
                        _ => None,
                    })
                    .collect(),
                // LoadBalancer status is what this node's listeners see: a
                // service's list answer carries it.
                "services" => match call(Request::GetServices { namespace: ns }).await? {
                    Response::Services(list) => {
                        let revisions: BTreeMap<(&str, &str), u64> = items
                            .iter()
                            .map(|v| ((v.object.namespace(), v.object.name()), v.revision))
                            .collect();
                        list.iter()
                            .map(|s| {
                                let key = (s.spec.namespace.as_str(), s.spec.name.as_str());
                                objects::service(s, revisions.get(&key).copied().unwrap_or(revision))
                            })
                            .collect()
                    }
                    _ => return Err(unexpected()),
                },
                // So is an Ingress's address.
                "ingresses" => match call(Request::GetIngresses { namespace: ns }).await? {
                    Response::Ingresses { items: list, .. } => {
                        let revisions: BTreeMap<(&str, &str), u64> = items
                            .iter()
                            .map(|v| ((v.object.namespace(), v.object.name()), v.revision))
                            .collect();
                        list.iter()
                            .map(|i| {
                                let key = (i.spec.namespace.as_str(), i.spec.name.as_str());
                                super::ingresses::ingress(i, revisions.get(&key).copied().unwrap_or(revision))
                            })
                            .collect()
                    }
                    _ => return Err(unexpected()),
                },
                _ => return Ok((Items::Versioned(items), revision)),
            };
            return Ok((Items::Shown(objects), revision));
        }
        let rv = self.rv();
        let objects = match resource.name {
            "events" => {
                let (events, revision) =
                    super::events::list(&self.agent, namespace, "").await.map_err(Status::unavailable)?;
                return Ok((Items::Shown(events), self.seen(revision)));
            }
            "nodes" => match call(Request::GetNodes).await? {
                Response::Nodes(list) => list.iter().map(|n| objects::node(n, rv)).collect(),
                _ => return Err(unexpected()),
            },
            "ingressclasses" => vec![super::ingresses::ingress_class()],
            _ => return Err(Status::no_path()),
        };
        Ok((Items::Shown(objects), rv))
    }

    /// The ReplicaSets of `deployments`, from their pods.
    async fn replicasets(&self, deployments: &[Versioned], ns: Option<String>) -> Result<Vec<Value>, Status> {
        let request = Request::Objects { kind: ObjectKind::Pod, namespace: ns };
        let pods = match self.call(request, "ReplicaSet", "replicasets.apps", "").await? {
            Response::Objects { items, .. } => items,
            _ => return Err(unexpected()),
        };
        let pods: Vec<&crate::model::Pod> = pods
            .iter()
            .filter_map(|v| match &v.object {
                Object::Pod(p) => Some(&**p),
                _ => None,
            })
            .collect();
        let mut out = Vec::new();
        for v in deployments {
            if let Object::Deployment(d) = &v.object {
                let mine: Vec<&crate::model::Pod> = pods
                    .iter()
                    .filter(|p| {
                        p.spec.namespace == d.spec.namespace && p.spec.owner.as_deref() == Some(&d.spec.name)
                    })
                    .copied()
                    .collect();
                out.extend(super::replicasets::of(d, &versioned::render(v), &mine, v.revision));
            }
        }
        Ok(out)
    }

    pub(super) async fn get(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value, Status> {
        let all = self.objects(resource, namespace).await?;
        let label = if resource.group.is_empty() {
            resource.name.to_string()
        } else {
            format!("{}.{}", resource.name, resource.group)
        };
        all.into_iter().find(|o| o["metadata"]["name"] == name).ok_or_else(|| Status::not_found(&label, name))
    }

    async fn deployment(&self, namespace: &str, name: &str) -> Result<crate::model::Deployment, Status> {
        let request = Request::GetDeployments { namespace: Some(namespace.into()) };
        match self.call(request, "Deployment", "deployments.apps", name).await? {
            Response::Deployments(list) => list
                .into_iter()
                .find(|d| d.spec.name == name)
                .ok_or_else(|| Status::not_found("deployments.apps", name)),
            _ => Err(unexpected()),
        }
    }

    /// A list of `resource` (in `namespace`) as the client asked for it:
    /// its body's chunks, each object rendered and written as the
    /// connection takes them (see `encode.rs`).
    pub async fn list(
        &self,
        resource: &'static Resource,
        namespace: Option<&str>,
        asked: &Asked<'_>,
    ) -> Result<ListChunks, Status> {
        let labels = LabelSelector::parse(asked.query.get("labelSelector").map_or("", String::as_str))?;
        let fields =
            FieldSelector::parse(asked.query.get("fieldSelector").map_or("", String::as_str), resource.kind)?;
        let (items, revision) = match resource.name {
            // Only the named pod's node is asked for its events.
            "events" => {
                let selector = asked.query.get("fieldSelector").map_or("", String::as_str);
                let (events, revision) = super::events::list(&self.agent, namespace, selector)
                    .await
                    .map_err(Status::unavailable)?;
                (Items::Shown(events), self.seen(revision))
            }
            _ => self.items_at(resource, namespace).await?,
        };
        let shape = match asked.table {
            true => Shape::Table {
                include: Include::from_query(asked.query.get("includeObject").map(String::as_str)),
                now: crate::model::unix_now(),
            },
            false => Shape::List { api_version: resource.api_version() },
        };
        let objects: Box<dyn Iterator<Item = Value> + Send> = match items {
            Items::Versioned(mut items) => {
                items.sort_by(|a, b| {
                    (a.object.namespace(), a.object.name()).cmp(&(b.object.namespace(), b.object.name()))
                });
                Box::new(items.into_iter().map(|v| versioned::render(&v)))
            }
            Items::Shown(mut items) => {
                items.sort_by(|a, b| {
                    let key = |o: &Value| {
                        (
                            o["metadata"]["namespace"].as_str().unwrap_or("").to_string(),
                            o["metadata"]["name"].as_str().unwrap_or("").to_string(),
                        )
                    };
                    key(a).cmp(&key(b))
                });
                Box::new(items.into_iter())
            }
        };
        let body = ListBody::new(resource.kind, shape, revision);
        let chunks = futures::stream::unfold(Some((objects, body, labels, fields)), |state| async move {
            let (mut objects, mut body, labels, fields) = state?;
            loop {
                let Some(o) = objects.next() else {
                    return Some((Bytes::from(body.finish()), None));
                };
                if labels.matches(&o) && fields.matches(&o) {
                    body.push(&o);
                }
                if let Some(chunk) = body.chunk() {
                    return Some((Bytes::from(chunk), Some((objects, body, labels, fields))));
                }
            }
        });
        Ok(Box::pin(chunks))
    }

    fn table(&self, resource: &Resource, items: &[Value], asked: &Asked<'_>) -> Value {
        let include = Include::from_query(asked.query.get("includeObject").map(String::as_str));
        table::table(resource.kind, items, include, crate::model::unix_now(), self.rv())
    }

    pub(super) async fn create(
        &self,
        resource: &Resource,
        ns: &str,
        body: &Value,
        dry: bool,
    ) -> Result<Reply, Status> {
        crate::model::check_name("namespace", ns, 63)
            .map_err(|e| Status::invalid(resource.kind, "", "metadata.namespace", e.to_string()))?;
        let name = decode::head(body, resource.kind, resource.api_version(), Some(ns))?.to_string();
        let call =
            |request| self.call(super::write::as_dry_run(request, dry), resource.kind, resource.name, &name);
        match resource.name {
            "pods" => match call(Request::RunPod(decode::pod(body, ns)?)).await? {
                Response::Pod(p) => Ok((201, objects::pod(&p, self.bump(dry)))),
                _ => Err(unexpected()),
            },
            "deployments" => match self
                .call(
                    super::write::as_dry_run(Request::CreateDeployment(decode::deployment(body, ns)?), dry),
                    "Deployment",
                    "deployments.apps",
                    &name,
                )
                .await?
            {
                Response::Deployment(d) => Ok((201, objects::deployment(&d, self.bump(dry)))),
                _ => Err(unexpected()),
            },
            "services" => match call(Request::CreateService(decode::service(body, ns)?)).await? {
                Response::Service(s) => Ok((201, objects::service(&s, self.bump(dry)))),
                _ => Err(unexpected()),
            },
            "networkpolicies" => {
                let request = Request::CreateNetworkPolicy(super::netpol::decode(body, ns)?);
                match self
                    .call(
                        super::write::as_dry_run(request, dry),
                        resource.kind,
                        "networkpolicies.networking.k8s.io",
                        &name,
                    )
                    .await?
                {
                    Response::NetworkPolicy(p) => Ok((201, super::netpol::render(&p, self.bump(dry)))),
                    _ => Err(unexpected()),
                }
            }
            "ingresses" => {
                let spec = super::ingresses::decode_ingress(body, ns)?;
                let request = super::write::as_dry_run(Request::CreateIngress(spec), dry);
                match self.call(request, "Ingress", "ingresses.networking.k8s.io", &name).await? {
                    Response::Ingress(i) => Ok((201, super::ingresses::ingress(&i, self.bump(dry)))),
                    _ => Err(unexpected()),
                }
            }
            "secrets" => match call(Request::CreateSecret(super::ingresses::decode_secret(body, ns)?)).await?
            {
                Response::Secret(s) => Ok((201, super::ingresses::secret(&s, self.bump(dry)))),
                _ => Err(unexpected()),
            },
            "configmaps" => match call(Request::CreateConfigMap(super::configmaps::decode(body, ns)?)).await?
            {
                Response::ConfigMap(c) => Ok((201, super::configmaps::configmap(&c, self.bump(dry)))),
                _ => Err(unexpected()),
            },
            other => Err(Status::not_allowed(format!("podnet makes {other} itself: they cannot be created"))),
        }
    }

    async fn delete(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Reply, Status> {
        let object = self.get(resource, namespace, name).await?;
        let (ns, n) = (namespace.unwrap_or("").to_string(), name.to_string());
        let request = match resource.name {
            "pods" => Request::DeletePod { namespace: ns, name: n },
            "deployments" => Request::DeleteDeployment { namespace: ns, name: n },
            "services" => Request::DeleteService { namespace: ns, name: n },
            "networkpolicies" => Request::DeleteNetworkPolicy { namespace: ns, name: n },
            "ingresses" => Request::DeleteIngress { namespace: ns, name: n },
            "secrets" => Request::DeleteSecret { namespace: ns, name: n },
            "configmaps" => Request::DeleteConfigMap { namespace: ns, name: n },
            "nodes" => Request::DeleteNode { name: n },
            "namespaces" if name == "default" => {
                return Err(Status::forbidden("namespaces", name, "this namespace may not be deleted"));
            }
            "namespaces" => Request::DeleteNamespace { name: n },
            other => {
                return Err(Status::not_allowed(format!(
                    "podnet keeps {other} itself: they cannot be deleted"
                )));
            }
        };
        self.call(request, resource.kind, resource.name, name).await?;
        self.changed();
        // A pod comes back as the object; others as a Success Status.
        Ok(match resource.name {
            "pods" => (200, object),
            _ => (
                200,
                json!({
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Success",
                    "details": { "name": name, "group": resource.group, "kind": resource.name, "uid": object["metadata"]["uid"] },
                }),
            ),
        })
    }
}

/// A list body's chunks, made as they are read.
pub type ListChunks = std::pin::Pin<Box<dyn futures::Stream<Item = Bytes> + Send>>;

/// A list's objects: shown already, or as the control plane numbers them
/// (rendered one at a time while the body is written).
enum Items {
    /// Rendered.
    Shown(Vec<Value>),
    /// Numbered, not rendered yet.
    Versioned(Vec<Versioned>),
}

fn unexpected() -> Status {
    Status::unavailable("the agent answered with something else than asked for")
}
