//! One watch request (`?watch=1`): the initial state (every object as
//! ADDED for resourceVersion "" or "0", else the changes after N, or 410
//! Gone), then the hub's events filtered by the watcher's namespace and
//! label and field selectors, as JSON lines on a chunked response; BOOKMARK
//! events when allowed; the end at `timeoutSeconds`.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Bytes;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::agent::AgentRefusal;
use super::discovery::Resource;
use super::select::{FieldSelector, LabelSelector};
use super::status::Status;
use super::table::{self, Include};
use super::watch::{self, Ended, Event, Hub};
use crate::api::changes::{ChangeType, Object, ObjectKind};
use crate::api::{Request, Response};
use crate::control::{CHANGE_LOG, CHANGES_PER_ANSWER};

/// Encoded events queued toward the client's connection.
const BODY_QUEUE: usize = 16;

/// What one watch asked for.
struct Filter {
    resource: &'static Resource,
    namespace: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
    table: Option<Include>,
}

impl Filter {
    fn matches(&self, object: &Value) -> bool {
        self.namespace.as_deref().is_none_or(|ns| object["metadata"]["namespace"] == ns)
            && self.labels.matches(object)
            && self.fields.matches(object)
    }

    /// The object as this watch's resource shows it (a ReplicaSet is its
    /// deployment's current one).
    fn shown(&self, object: &Value, source: &Object) -> Value {
        match (self.resource.name, source) {
            ("replicasets", Object::Deployment(d)) => super::replicasets::current(d, object),
            ("endpointslices", Object::Endpoints(e)) => super::endpointslices::of(e, object),
            _ => object.clone(),
        }
    }

    /// What `event` is to this watcher: the type and object to send, if any
    /// (an object leaving its selection is DELETED for it, as the
    /// apiserver's watch cache does).
    fn event(&self, event: &Event) -> Option<(&'static str, Value)> {
        let source = &event.change.object.object;
        let now = self.shown(&event.object, source);
        let passes = self.matches(&now);
        let before = match event.change.change {
            ChangeType::Added => None,
            ChangeType::Deleted => return passes.then_some(("DELETED", now)),
            ChangeType::Modified => event.before().map(|b| self.shown(b, source)).filter(|b| self.matches(b)),
        };
        match (before, passes) {
            (None, true) => Some(("ADDED", now)),
            (Some(_), true) => Some(("MODIFIED", now)),
            (Some(mut before), false) => {
                // Its previous state, with this change's revision.
                before["metadata"]["resourceVersion"] = now["metadata"]["resourceVersion"].clone();
                Some(("DELETED", before))
            }
            (None, false) => None,
        }
    }
}

/// A boolean query parameter as the apiserver reads one (Go's
/// `strconv.ParseBool`: kubectl sends `true`, the Python client `True`).
pub fn flag(value: Option<&String>) -> bool {
    matches!(value.map(String::as_str), Some("1" | "t" | "T" | "true" | "TRUE" | "True"))
}

/// A number in the query, if given.
fn number(query: &std::collections::BTreeMap<String, String>, key: &str) -> Result<Option<u64>, Status> {
    query
        .get(key)
        .filter(|v| !v.is_empty())
        .map(|v| v.parse::<u64>().map_err(|_| Status::bad_request(format!("{key} `{v}` is not a number"))))
        .transpose()
}

/// Starts a watch of `resource` (in `namespace`) for `client`; the body's
/// chunks come from the returned receiver.
pub async fn start(
    hub: &Arc<Hub>,
    resource: &'static Resource,
    namespace: Option<&str>,
    query: &std::collections::BTreeMap<String, String>,
    table: bool,
    client: IpAddr,
) -> Result<mpsc::Receiver<Bytes>, Status> {
    if resource.name == "events" {
        return events(hub, namespace, query, table, client).await;
    }
    let Some(kind) = super::versioned::kind_of(resource.name) else {
        return Err(Status::not_allowed(format!(
            "podnet does not watch {} yet: list them without -w",
            resource.name
        )));
    };
    let filter = Filter {
        resource,
        namespace: namespace.map(str::to_string),
        labels: LabelSelector::parse(query.get("labelSelector").map_or("", String::as_str))?,
        fields: FieldSelector::parse(query.get("fieldSelector").map_or("", String::as_str), resource.kind)?,
        table: table.then(|| Include::from_query(query.get("includeObject").map(String::as_str))),
    };
    let timeout = number(query, "timeoutSeconds")?
        .map(Duration::from_secs)
        .map_or(hub.limits.longest, |t| t.min(hub.limits.longest));
    let bookmarks = flag(query.get("allowWatchBookmarks"));
    // A streaming list (client-go's WatchList): the state now, then a
    // bookmark saying it is all there.
    let initial_end = flag(query.get("sendInitialEvents"));
    let rv = match initial_end {
        true => "",
        false => query.get("resourceVersion").map(String::as_str).unwrap_or(""),
    };
    hub.admit(client)?;

    let (initial, from) = initial(hub, kind, &filter, rv).await?;
    let subscription = hub.subscribe(kind, from, client)?;
    let (tx, rx) = mpsc::channel(BODY_QUEUE);
    let options = Options { timeout, bookmarks, initial_end };
    tokio::spawn(run(filter, initial, subscription, tx, options, from, hub.clone()));
    Ok(rx)
}

/// Starts a watch of Events (see `event_watch.rs`).
async fn events(
    hub: &Arc<Hub>,
    namespace: Option<&str>,
    query: &std::collections::BTreeMap<String, String>,
    table: bool,
    client: IpAddr,
) -> Result<mpsc::Receiver<Bytes>, Status> {
    let field_selector = query.get("fieldSelector").cloned().unwrap_or_default();
    let timeout = number(query, "timeoutSeconds")?
        .map(Duration::from_secs)
        .map_or(hub.limits.longest, |t| t.min(hub.limits.longest));
    let initial_end = flag(query.get("sendInitialEvents"));
    let rv = query.get("resourceVersion").map(String::as_str).unwrap_or("");
    // From a list's version: what that list held, or 410 (list again).
    let from_list = match (initial_end, rv) {
        (true, _) | (_, "" | "0") => None,
        (false, rv) => {
            let revision = rv
                .parse::<u64>()
                .map_err(|_| Status::bad_request(format!("invalid resourceVersion {rv:?}")))?;
            let scope = super::event_history::scope(namespace, &field_selector);
            match hub.agent().event_history().at(&scope, revision) {
                Ok(seen) => Some(seen),
                Err(too_old) => {
                    hub.count_expired();
                    return Err(watch::expired(too_old.to_string()));
                }
            }
        }
    };
    let watch = super::event_watch::EventsWatch {
        agent: hub.agent().clone(),
        namespace: namespace.map(str::to_string),
        labels: LabelSelector::parse(query.get("labelSelector").map_or("", String::as_str))?,
        fields: FieldSelector::parse(&field_selector, "Event")?,
        field_selector,
        table: table.then(|| Include::from_query(query.get("includeObject").map(String::as_str))),
        timeout,
        from_list,
        initial_end,
    };
    hub.admit(client)?;
    // Pods' changes wake it; from the revision now (their past is not
    // what it sends).
    // The revision now, from the smallest listing there is (the nodes).
    let from = match hub.agent().call(Request::Objects { kind: ObjectKind::Node, namespace: None }).await {
        Ok(Response::Objects { revision, .. }) => revision,
        _ => return Err(Status::unavailable("the agent did not answer")),
    };
    let subscription = hub.subscribe(ObjectKind::Pod, from, client)?;
    let (tx, rx) = mpsc::channel(BODY_QUEUE);
    tokio::spawn(watch.run(subscription, tx));
    Ok(rx)
}

/// The events before the hub's: (type, object) and the revision they reach.
async fn initial(
    hub: &Hub,
    kind: ObjectKind,
    filter: &Filter,
    rv: &str,
) -> Result<(Vec<(&'static str, Value)>, u64), Status> {
    let agent = hub.agent();
    let refusal = |e: AgentRefusal| match e {
        AgentRefusal::Refused(text) if text.contains("too old") => {
            hub.count_expired();
            watch::expired(format!("too old resource version: {rv}: {text}"))
        }
        AgentRefusal::Refused(text) => Status::bad_request(text),
        AgentRefusal::Unavailable(text) => Status::unavailable(text),
    };
    if rv.is_empty() || rv == "0" {
        let request = Request::Objects { kind, namespace: filter.namespace.clone() };
        return match agent.call(request).await.map_err(refusal)? {
            Response::Objects { revision, items } => {
                let mut out = Vec::new();
                for v in items {
                    let object = super::versioned::render(&v);
                    let shown = filter.shown(&object, &v.object);
                    if filter.matches(&shown) {
                        out.push(("ADDED", shown));
                    }
                }
                Ok((out, revision))
            }
            _ => Err(Status::unavailable("the agent answered with something else than asked for")),
        };
    }
    let mut since = rv
        .parse::<u64>()
        .map_err(|_| Status::bad_request(format!("resourceVersion `{rv}` is not one this server gave")))?;
    let mut out = Vec::new();
    // The log holds CHANGE_LOG changes: that many answers at most.
    for _ in 0..=CHANGE_LOG / CHANGES_PER_ANSWER {
        match agent.call(Request::Changes { since }).await.map_err(refusal)? {
            Response::Changes { changes, .. } => {
                let full = changes.len() >= CHANGES_PER_ANSWER;
                for change in changes {
                    // Past every change read, of any kind: the next page starts there.
                    since = since.max(change.object.revision);
                    if change.object.object.kind() == kind {
                        out.extend(filter.event(&Event::new(change)));
                    }
                }
                if !full {
                    break;
                }
            }
            _ => return Err(Status::unavailable("the agent answered with something else than asked for")),
        }
    }
    Ok((out, since))
}

/// One line of the stream.
pub(super) fn line(kind: &'static str, object: &Value) -> Bytes {
    let mut text = json!({ "type": kind, "object": object }).to_string();
    text.push('\n');
    Bytes::from(text)
}

/// How a watch runs, from its query.
struct Options {
    timeout: Duration,
    bookmarks: bool,
    initial_end: bool,
}

/// A BOOKMARK at revision `rv`, with `annotations`.
fn bookmark(filter: &Filter, rv: u64, annotations: Value) -> Bytes {
    let (api_version, kind) = (filter.resource.api_version(), filter.resource.kind);
    let metadata = json!({ "resourceVersion": rv.to_string(), "annotations": annotations });
    line("BOOKMARK", &json!({ "kind": kind, "apiVersion": api_version, "metadata": metadata }))
}

async fn run(
    filter: Filter,
    initial: Vec<(&'static str, Value)>,
    mut subscription: watch::Subscription,
    tx: mpsc::Sender<Bytes>,
    options: Options,
    mut last: u64,
    hub: Arc<Hub>,
) {
    let Options { timeout, bookmarks, initial_end } = options;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut first = true;
    let mut encode = |kind: &'static str, object: Value| -> Bytes {
        match filter.table {
            None => line(kind, &object),
            Some(include) => {
                let rv =
                    object["metadata"]["resourceVersion"].as_str().and_then(|r| r.parse().ok()).unwrap_or(0);
                let mut t =
                    table::table(filter.resource.kind, &[object], include, crate::model::unix_now(), rv);
                // Column definitions come with the first event only, as
                // the apiserver sends them; kubectl reuses them.
                if !std::mem::take(&mut first) {
                    t["columnDefinitions"] = json!([]);
                }
                line(kind, &t)
            }
        }
    };
    for (kind, object) in initial {
        if tx.send(encode(kind, object)).await.is_err() {
            return;
        }
    }
    if initial_end {
        let end = bookmark(&filter, last, json!({ "k8s.io/initial-events-end": "true" }));
        if tx.send(end).await.is_err() {
            return;
        }
    }
    let mut tick = tokio::time::interval(hub.limits.bookmark);
    tick.tick().await;
    loop {
        let event = tokio::select! {
            event = subscription.next() => event,
            _ = tick.tick(), if bookmarks => {
                // Everything up to the hub's cursor is queued here: send it
                // first, then the bookmark says it is all sent.
                let cursor = subscription.cursor().unwrap_or(last);
                loop {
                    match subscription.try_next() {
                        Ok(Some(event)) => {
                            last = last.max(event.revision());
                            if let Some((kind, object)) = filter.event(&event) && tx.send(encode(kind, object)).await.is_err() {
                                return;
                            }
                        }
                        Ok(None) => break,
                        Err(_) => return,
                    }
                }
                last = last.max(cursor);
                if tx.send(bookmark(&filter, last, json!({}))).await.is_err() {
                    return;
                }
                continue;
            }
            _ = tokio::time::sleep_until(deadline) => return,
            _ = tx.closed() => return,
        };
        match event {
            Ok(event) => {
                last = last.max(event.revision());
                if let Some((kind, object)) = filter.event(&event)
                    && tx.send(encode(kind, object)).await.is_err()
                {
                    return;
                }
            }
            Err(Ended::Slow) => return,
            Err(Ended::Expired) => {
                let status =
                    watch::expired("the watch's revision is gone (the control plane restarted): list again");
                let _ = tx.send(line("ERROR", &status.to_json())).await;
                return;
            }
        }
    }
}
