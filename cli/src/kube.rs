//! Objects in the Kubernetes API shape, so `-o json | jq` and `-o yaml`
//! habits from kubectl carry over: the same conversion the agent's
//! Kubernetes API serves (`runtime::kube::objects`), so `podnet get -o json`
//! and `kubectl get -o json` print the same objects.

use runtime::kube::objects;
use runtime::model::{Deployment, Endpoints, NodeInfo, Pod, Service};
use serde_json::Value;

/// The resourceVersion the CLI shows: it reads the agent's control socket,
/// which has none.
const NO_VERSION: u64 = 0;

/// A pod as `kubectl get pod -o json` shows one.
pub(crate) fn pod(pod: &Pod) -> Value {
    objects::pod(pod, NO_VERSION)
}

/// A deployment as `kubectl get deployment -o json` shows one.
pub(crate) fn deployment(d: &Deployment) -> Value {
    objects::deployment(d, NO_VERSION)
}

/// A Service as `kubectl get service -o json` shows one.
pub(crate) fn service(s: &Service) -> Value {
    objects::service(s, NO_VERSION)
}

/// Endpoints as `kubectl get endpoints -o json` shows them.
pub(crate) fn endpoints(e: &Endpoints) -> Value {
    objects::endpoints(e, NO_VERSION)
}

/// A node as `kubectl get node -o json` shows one.
pub(crate) fn node(n: &NodeInfo) -> Value {
    objects::node(n, NO_VERSION)
}

/// A NetworkPolicy as `kubectl get netpol -o json` shows one.
pub(crate) fn network_policy(p: &runtime::model::policy::NetworkPolicy) -> Value {
    runtime::kube::netpol::render(p, NO_VERSION)
}

/// Several objects as a `kind: List`.
pub(crate) fn list(items: Vec<Value>) -> Value {
    objects::list("", "v1", items, NO_VERSION)
}
