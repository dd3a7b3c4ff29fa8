//! core/v1 Events (`kubectl get events`, and the Events `kubectl describe
//! pod` reads with an involvedObject field selector), from podnet's
//! per-pod events: what the pod's node saw (pulling, started, probe
//! failures, back-off), asked of the node with `Request::DescribePod`.
//!
//! Events live on the pod's node. A request for a pod on another node is
//! answered by the node serving the API only for its own pods (and, from a
//! member, the server's): pods elsewhere contribute no events until pod
//! requests are forwarded to their node.

use futures::StreamExt;
use serde_json::{Value, json};

use super::agent::Agent;
use super::objects::timestamp;
use crate::api::changes::{Object, ObjectKind};
use crate::api::{Request, Response};
use crate::model::{Pod, PodEvent};

/// Pods whose events one list gathers at most (each is a request to a node).
pub const MAX_PODS: usize = 200;
/// Requests for pods' events at once.
const AT_ONCE: usize = 8;

/// A pod's event as the Kubernetes API shows it.
pub fn event(pod: &Pod, index: usize, e: &PodEvent, rv: u64) -> Value {
    let spec = &pod.spec;
    json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": format!("{}.{:x}{:04x}", spec.name, e.at, index),
            "namespace": spec.namespace,
            "uid": format!("{}-{index}", pod.uid),
            "resourceVersion": rv.to_string(),
            "creationTimestamp": timestamp(e.at),
        },
        "involvedObject": {
            "kind": "Pod",
            "apiVersion": "v1",
            "namespace": spec.namespace,
            "name": spec.name,
            "uid": pod.uid,
            "fieldPath": format!("spec.containers{{{}}}", spec.name),
        },
        "reason": e.reason,
        "message": e.message,
        "type": if e.warning { "Warning" } else { "Normal" },
        "count": e.count,
        "firstTimestamp": timestamp(e.at),
        "lastTimestamp": timestamp(e.at),
        "source": { "component": "kubelet", "host": pod.node_name },
        "reportingComponent": "kubelet",
        "reportingInstance": pod.node_name,
    })
}

/// The pod a field selector names (`involvedObject.name=X`), if it names one.
fn named_pod(field_selector: &str) -> Option<&str> {
    field_selector.split(',').find_map(|part| {
        let (field, value) = part.split_once("==").or_else(|| part.split_once('='))?;
        (field.trim() == "involvedObject.name" && !field.ends_with('!')).then_some(value.trim())
    })
}

/// The events of the pods in `namespace` (all: None), or of the one pod the
/// field selector names; with the list's revision. Unfiltered: the caller
/// applies the selectors.
pub async fn list(
    agent: &Agent,
    namespace: Option<&str>,
    field_selector: &str,
) -> Result<(Vec<Value>, u64), String> {
    let request = Request::Objects { kind: ObjectKind::Pod, namespace: namespace.map(str::to_string) };
    let (revision, items) = match agent.call(request).await.map_err(|e| e.to_string())? {
        Response::Objects { revision, items } => (revision, items),
        _ => return Err("the agent answered with something else than asked for".into()),
    };
    let only = named_pod(field_selector);
    let pods: Vec<std::sync::Arc<Pod>> = items
        .into_iter()
        .filter_map(|v| match v.object {
            Object::Pod(p) => Some(p),
            _ => None,
        })
        .filter(|p| only.is_none_or(|name| p.spec.name == name))
        .take(MAX_PODS)
        .collect();
    let asked = futures::stream::iter(pods)
        .map(|pod| async move {
            let request =
                Request::DescribePod { namespace: pod.spec.namespace.clone(), name: pod.spec.name.clone() };
            // A pod on another node: no events from here (see the module doc).
            match agent.call(request).await {
                Ok(Response::PodEvents(events)) => {
                    events.iter().enumerate().map(|(i, e)| event(&pod, i, e, revision)).collect()
                }
                _ => Vec::new(),
            }
        })
        .buffered(AT_ONCE)
        .collect::<Vec<Vec<Value>>>()
        .await;
    let events: Vec<Value> = asked.into_iter().flatten().collect();
    // A watch from this list's version starts from what it held.
    let scope = super::event_history::scope(namespace, field_selector);
    agent.event_history().record(&scope, revision, &events);
    Ok((events, revision))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_selector_names_the_pod_to_ask() {
        let s = "involvedObject.name=web-1,involvedObject.namespace=default,involvedObject.kind=Pod";
        assert_eq!(named_pod(s), Some("web-1"));
        assert_eq!(named_pod("involvedObject.name==x"), Some("x"));
        assert_eq!(named_pod("involvedObject.kind=Pod"), None);
        assert_eq!(named_pod("involvedObject.name!=x"), None);
    }
}
