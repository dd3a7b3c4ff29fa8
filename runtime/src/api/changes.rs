//! The cluster's change log as the API reads it: every change of an object
//! (a node, pod, deployment, service, endpoints, namespace, ...) gets the next revision of the
//! control plane, and the objects carry the revision of their last change
//! (the Kubernetes API's resourceVersion).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::model::configmap::ConfigMap;
use crate::model::ingress::Ingress;
use crate::model::policy::NetworkPolicy;
use crate::model::secret::SecretInfo;
use crate::model::{Deployment, Endpoints, Namespace, NodeInfo, Pod, Service};

/// The kinds of object whose changes are numbered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ObjectKind {
    /// A node.
    Node,
    /// A pod.
    Pod,
    /// A deployment.
    Deployment,
    /// A Service.
    Service,
    /// A NetworkPolicy.
    NetworkPolicy,
    /// An Ingress.
    Ingress,
    /// A Secret.
    Secret,
    /// A ConfigMap.
    ConfigMap,
    /// A Service's endpoints (derived: they change with its pods).
    Endpoints,
    /// A namespace (made, or holding objects).
    Namespace,
}

/// What happened to an object, in the Kubernetes watch's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChangeType {
    /// It appeared.
    Added,
    /// It changed (spec or status).
    Modified,
    /// It is gone.
    Deleted,
}

impl ChangeType {
    /// `ADDED`, `MODIFIED` or `DELETED`.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeType::Added => "ADDED",
            ChangeType::Modified => "MODIFIED",
            ChangeType::Deleted => "DELETED",
        }
    }
}

/// One object, as the API shows it. Each is behind an `Arc`: the last
/// version, the change log and snapshots share one copy, and an `Object`
/// is a pointer wide however big the largest kind is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Object {
    /// A node (its pod count left out: a node's object does not change
    /// with the pods placed on it).
    Node(Arc<NodeInfo>),
    /// A pod with its status.
    Pod(Arc<Pod>),
    /// A deployment with its replica counts.
    Deployment(Arc<Deployment>),
    /// A Service (shared with the control plane's map, the change log and
    /// the nodes' desired state: one copy however many hold it).
    Service(Arc<Service>),
    /// A NetworkPolicy.
    NetworkPolicy(Arc<NetworkPolicy>),
    /// An Ingress.
    Ingress(Arc<Ingress>),
    /// A Secret: its keys, sizes and digest, never its bytes.
    Secret(Arc<SecretInfo>),
    /// A ConfigMap, with its data (shared with the stored one: the change
    /// log and snapshots hold it without copying its bytes).
    ConfigMap(Arc<ConfigMap>),
    /// A Service's endpoints (shared by the last version and the change log).
    Endpoints(Arc<Endpoints>),
    /// A namespace, with the time of its oldest object when it was not made.
    Namespace(Arc<Namespace>),
}

impl Object {
    /// Its kind.
    pub fn kind(&self) -> ObjectKind {
        match self {
            Object::Node(_) => ObjectKind::Node,
            Object::Pod(_) => ObjectKind::Pod,
            Object::Deployment(_) => ObjectKind::Deployment,
            Object::Service(_) => ObjectKind::Service,
            Object::NetworkPolicy(_) => ObjectKind::NetworkPolicy,
            Object::Ingress(_) => ObjectKind::Ingress,
            Object::Secret(_) => ObjectKind::Secret,
            Object::ConfigMap(_) => ObjectKind::ConfigMap,
            Object::Endpoints(_) => ObjectKind::Endpoints,
            Object::Namespace(_) => ObjectKind::Namespace,
        }
    }

    /// Its namespace ("" for a node).
    pub fn namespace(&self) -> &str {
        match self {
            Object::Node(_) => "",
            Object::Pod(p) => &p.spec.namespace,
            Object::Deployment(d) => &d.spec.namespace,
            Object::Service(s) => &s.spec.namespace,
            Object::NetworkPolicy(p) => &p.spec.namespace,
            Object::Ingress(i) => &i.spec.namespace,
            Object::Secret(s) => &s.namespace,
            Object::ConfigMap(c) => &c.spec.namespace,
            Object::Endpoints(e) => &e.namespace,
            Object::Namespace(_) => "",
        }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        match self {
            Object::Node(n) => &n.name,
            Object::Pod(p) => &p.spec.name,
            Object::Deployment(d) => &d.spec.name,
            Object::Service(s) => &s.spec.name,
            Object::NetworkPolicy(p) => &p.spec.name,
            Object::Ingress(i) => &i.spec.name,
            Object::Secret(s) => &s.name,
            Object::ConfigMap(c) => &c.spec.name,
            Object::Endpoints(e) => &e.name,
            Object::Namespace(n) => &n.name,
        }
    }
}

/// An object with the revision of its last change, and for a deployment
/// its generation (how many times its spec changed; 1 at creation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Versioned {
    /// The revision of its last change.
    pub revision: u64,
    /// Spec changes, from 1.
    pub generation: u64,
    /// The object.
    pub object: Object,
}

/// One entry of the change log: the object as it was after the change (as
/// it was last, for a deletion).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// What happened.
    pub change: ChangeType,
    /// The object, with the revision of this change.
    pub object: Versioned,
    /// The object before a modification (a watch with a selector tells an
    /// object leaving it from one that never was in it).
    pub before: Option<Object>,
}
