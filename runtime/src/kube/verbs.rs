//! The verbs on podnet's objects: list and get (as objects or as Tables,
//! filtered by label and field selectors), create, delete, and a
//! deployment's scale. Each one is a request to the agent, translated.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use hyper::Method;
use serde_json::{Value, json};

use super::agent::{Agent, AgentRefusal};
use super::decode;
use super::discovery::Resource;
use super::fields;
use super::objects;
use super::routes::Route;
use super::select::{FieldSelector, LabelSelector};
use super::status::Status;
use super::table::{self, Include};
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
}

/// What the server answers: a code and a JSON body.
pub type Reply = (u16, Value);

/// The verbs, over the agent, with the coarse resourceVersion this slice
/// keeps: one counter, bumped by every change made through the API.
pub struct Verbs {
    agent: Agent,
    version: AtomicU64,
    started: u64,
}

impl Verbs {
    /// Verbs answered through `agent`.
    pub fn new(agent: Agent) -> Verbs {
        Verbs { agent, version: AtomicU64::new(1), started: crate::model::unix_now() }
    }

    /// The agent the verbs ask (streams ask it too).
    pub fn agent(&self) -> &Agent {
        &self.agent
    }

    fn rv(&self) -> u64 {
        self.version.load(Ordering::Relaxed)
    }

    fn changed(&self) -> u64 {
        self.version.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Answers `asked` on `route` (not a document: the server serves those).
    pub async fn answer(&self, route: Route<'_>, asked: &Asked<'_>) -> Result<Reply, Status> {
        if asked.query.get("watch").is_some_and(|w| w == "1" || w == "true") {
            return Err(Status::not_allowed("watch is not served by podnet yet: run kubectl get without -w"));
        }
        if asked.query.contains_key("dryRun") {
            return Err(Status::bad_request("podnet does not do server-side dry runs: use --dry-run=client"));
        }
        let m = asked.method;
        match route {
            Route::Collection { resource, namespace } if m == Method::GET => {
                self.list(resource, namespace, asked).await
            }
            Route::Collection { resource, namespace: Some(ns) } if m == Method::POST => {
                if asked.query.get("fieldValidation").is_some_and(|v| v == "Strict")
                    && let Some(field) = fields::unknown(resource.kind, asked.body)
                {
                    let (kind, version) = (resource.kind, resource.api_version());
                    return Err(Status::bad_request(format!(
                        "{kind} in version \"{version}\" cannot be handled as a {kind}: strict decoding error: unknown field \"{field}\""
                    )));
                }
                self.create(resource, ns, asked.body).await
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
            Route::Collection { resource, .. } | Route::Object { resource, .. } => {
                Err(Status::not_allowed(format!(
                    "podnet does not serve {} on {} yet (no apply, edit, patch or replace in this version): delete and create the object instead",
                    asked.method, resource.name
                )))
            }
            Route::Scale { .. } => Err(Status::not_allowed(format!(
                "the scale subresource takes GET, PUT and PATCH, not {}",
                asked.method
            ))),
            Route::Document(_) | Route::Log { .. } | Route::Stream { .. } => Err(Status::no_path()),
        }
    }

    async fn call(
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
        let ns = namespace.map(str::to_string);
        let rv = self.rv();
        let call = |request| self.call(request, resource.kind, resource.name, "");
        Ok(match resource.name {
            "pods" => match call(Request::GetPods { namespace: ns }).await? {
                Response::Pods(pods) => pods.iter().map(|p| objects::pod(p, rv)).collect(),
                _ => return Err(unexpected()),
            },
            "deployments" => match call(Request::GetDeployments { namespace: ns }).await? {
                Response::Deployments(list) => list.iter().map(|d| objects::deployment(d, rv)).collect(),
                _ => return Err(unexpected()),
            },
            "services" => match call(Request::GetServices { namespace: ns }).await? {
                Response::Services(list) => list.iter().map(|s| objects::service(s, rv)).collect(),
                _ => return Err(unexpected()),
            },
            "endpoints" => match call(Request::GetEndpoints { namespace: ns }).await? {
                Response::Endpoints(list) => list.iter().map(|e| objects::endpoints(e, rv)).collect(),
                _ => return Err(unexpected()),
            },
            "nodes" => match call(Request::GetNodes).await? {
                Response::Nodes(list) => list.iter().map(|n| objects::node(n, rv)).collect(),
                _ => return Err(unexpected()),
            },
            "namespaces" => self.namespaces().await?,
            _ => return Err(Status::no_path()),
        })
    }

    /// podnet's namespaces: `default`, and every one an object is in (a
    /// namespace exists while something is in it); the oldest object's
    /// time is its creation time.
    async fn namespaces(&self) -> Result<Vec<Value>, Status> {
        let mut seen: BTreeMap<String, u64> = BTreeMap::from([("default".to_string(), self.started)]);
        let mut note = |ns: &str, t: u64| {
            let e = seen.entry(ns.to_string()).or_insert(t);
            *e = (*e).min(t);
        };
        let all = |r: Request| self.call(r, "Namespace", "namespaces", "");
        if let Response::Pods(pods) = all(Request::GetPods { namespace: None }).await? {
            pods.iter().for_each(|p| note(&p.spec.namespace, p.created_at));
        }
        if let Response::Deployments(list) = all(Request::GetDeployments { namespace: None }).await? {
            list.iter().for_each(|d| note(&d.spec.namespace, d.created_at));
        }
        if let Response::Services(list) = all(Request::GetServices { namespace: None }).await? {
            list.iter().for_each(|s| note(&s.spec.namespace, s.created_at));
        }
        let rv = self.rv();
        Ok(seen.iter().map(|(name, t)| objects::namespace(name, *t, rv)).collect())
    }

    async fn get(&self, resource: &Resource, namespace: Option<&str>, name: &str) -> Result<Value, Status> {
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

    async fn list(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        asked: &Asked<'_>,
    ) -> Result<Reply, Status> {
        let labels = LabelSelector::parse(asked.query.get("labelSelector").map_or("", String::as_str))?;
        let fields =
            FieldSelector::parse(asked.query.get("fieldSelector").map_or("", String::as_str), resource.kind)?;
        let mut items = self.objects(resource, namespace).await?;
        items.retain(|o| labels.matches(o) && fields.matches(o));
        items.sort_by(|a, b| {
            let key = |o: &Value| {
                (
                    o["metadata"]["namespace"].as_str().unwrap_or("").to_string(),
                    o["metadata"]["name"].as_str().unwrap_or("").to_string(),
                )
            };
            key(a).cmp(&key(b))
        });
        match asked.table {
            true => Ok((200, self.table(resource, &items, asked))),
            false => Ok((200, objects::list(resource.kind, resource.api_version(), items, self.rv()))),
        }
    }

    fn table(&self, resource: &Resource, items: &[Value], asked: &Asked<'_>) -> Value {
        let include = Include::from_query(asked.query.get("includeObject").map(String::as_str));
        table::table(resource.kind, items, include, crate::model::unix_now(), self.rv())
    }

    async fn create(&self, resource: &Resource, ns: &str, body: &Value) -> Result<Reply, Status> {
        crate::model::check_name("namespace", ns, 63)
            .map_err(|e| Status::invalid(resource.kind, "", "metadata.namespace", e.to_string()))?;
        let name = decode::head(body, resource.kind, resource.api_version(), Some(ns))?.to_string();
        let call = |request| self.call(request, resource.kind, resource.name, &name);
        match resource.name {
            "pods" => match call(Request::RunPod(decode::pod(body, ns)?)).await? {
                Response::Pod(p) => Ok((201, objects::pod(&p, self.changed()))),
                _ => Err(unexpected()),
            },
            "deployments" => match self
                .call(
                    Request::CreateDeployment(decode::deployment(body, ns)?),
                    "Deployment",
                    "deployments.apps",
                    &name,
                )
                .await?
            {
                Response::Deployment(d) => Ok((201, objects::deployment(&d, self.changed()))),
                _ => Err(unexpected()),
            },
            "services" => match call(Request::CreateService(decode::service(body, ns)?)).await? {
                Response::Service(s) => Ok((201, objects::service(&s, self.changed()))),
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
            "nodes" => Request::DeleteNode { name: n },
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

fn unexpected() -> Status {
    Status::unavailable("the agent answered with something else than asked for")
}
