//! The Kubernetes objects podnet reads, as k8s.io/api's JSON shapes, with
//! only the fields it uses (serde skips the rest while parsing, so a large
//! object costs its parse, not its memory). Hand-written rather than
//! k8s-openapi: that crate's types would add megabytes to a binary that is
//! already over its size target. Every field is optional or defaulted, as
//! the API leaves them out when empty; a BOOKMARK's object (metadata only)
//! decodes as any kind.

use std::collections::BTreeMap;

use serde::Deserialize;

/// `metadata`: the fields podnet uses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Meta {
    /// Name.
    pub name: String,
    /// Namespace (empty for cluster-scoped kinds).
    pub namespace: String,
    /// The object's uid.
    pub uid: String,
    /// Its resourceVersion: opaque, only ever given back to the server.
    pub resource_version: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// When it was made (RFC 3339): the older of two Ingresses wins a path.
    pub creation_timestamp: String,
}

/// A list's `metadata`: where the next watch starts, and the next page.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ListMeta {
    /// The list's resourceVersion: a watch from it misses nothing.
    pub resource_version: String,
    /// The next page's token (`continue`), empty on the last page.
    #[serde(rename = "continue")]
    pub next: String,
}

/// A list of one kind (`kind: XList`).
#[derive(Debug, Clone, Deserialize)]
#[serde(bound = "T: Deserialize<'de>")]
pub struct List<T> {
    /// Its metadata.
    #[serde(default)]
    pub metadata: ListMeta,
    /// The objects (null when none).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub items: Vec<T>,
}

/// A kind of object that has metadata.
pub trait Object: for<'de> Deserialize<'de> + Clone + Send + 'static {
    /// Its metadata.
    fn meta(&self) -> &Meta;

    /// Its key: namespace and name.
    fn key(&self) -> (String, String) {
        (self.meta().namespace.clone(), self.meta().name.clone())
    }

    /// Decodes one from its JSON.
    fn from_json(value: serde_json::Value) -> Result<Self, serde_json::Error> {
        serde_json::from_value(value)
    }
}

/// A Node: its pod subnet and addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Node {
    /// Metadata.
    pub metadata: Meta,
    /// spec.
    pub spec: NodeSpec,
    /// status.
    pub status: NodeStatus,
}

/// A Node's spec.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct NodeSpec {
    /// The node's pod subnet (the controller manager's allocation).
    #[serde(rename = "podCIDR")]
    pub pod_cidr: Option<String>,
}

/// A Node's status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct NodeStatus {
    /// Its addresses by type (InternalIP, ExternalIP, Hostname).
    #[serde(deserialize_with = "null_as_empty")]
    pub addresses: Vec<NodeAddress>,
}

/// One address of a Node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct NodeAddress {
    /// InternalIP, ExternalIP, Hostname, …
    #[serde(rename = "type")]
    pub kind: String,
    /// The address.
    pub address: String,
}

/// A Service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Service {
    /// Metadata.
    pub metadata: Meta,
    /// spec.
    pub spec: ServiceSpec,
}

/// A Service's spec.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ServiceSpec {
    /// ClusterIP, NodePort, LoadBalancer or ExternalName.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// The ClusterIP, or "None" (headless).
    #[serde(rename = "clusterIP")]
    pub cluster_ip: Option<String>,
    /// Ports.
    #[serde(deserialize_with = "null_as_empty")]
    pub ports: Vec<ServicePort>,
    /// The CNAME target of an ExternalName Service.
    pub external_name: Option<String>,
    /// None or ClientIP.
    pub session_affinity: Option<String>,
    /// sessionAffinityConfig.
    pub session_affinity_config: Option<AffinityConfig>,
}

/// sessionAffinityConfig.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct AffinityConfig {
    /// clientIP.
    #[serde(rename = "clientIP")]
    pub client_ip: Option<ClientIpConfig>,
}

/// sessionAffinityConfig.clientIP.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ClientIpConfig {
    /// How long a client sticks to its endpoint.
    pub timeout_seconds: Option<u32>,
}

/// One port of a Service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ServicePort {
    /// Its name (matches the EndpointSlice port's).
    pub name: Option<String>,
    /// TCP, UDP or SCTP (TCP when absent).
    pub protocol: Option<String>,
    /// The Service port.
    pub port: u16,
    /// The node port of a NodePort or LoadBalancer Service.
    pub node_port: Option<u16>,
}

/// An EndpointSlice (discovery.k8s.io/v1): some of a Service's endpoints.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct EndpointSlice {
    /// Metadata; the `kubernetes.io/service-name` label names its Service.
    pub metadata: Meta,
    /// IPv4, IPv6 or FQDN.
    pub address_type: String,
    /// The endpoints.
    #[serde(deserialize_with = "null_as_empty")]
    pub endpoints: Vec<Endpoint>,
    /// The ports every endpoint of the slice serves.
    #[serde(deserialize_with = "null_as_empty")]
    pub ports: Vec<EndpointPort>,
}

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// One endpoint of a slice.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Endpoint {
    /// Its addresses (one for a pod).
    #[serde(deserialize_with = "null_as_empty")]
    pub addresses: Vec<String>,
    /// Ready, serving, terminating.
    pub conditions: EndpointConditions,
    /// The pod behind it.
    pub target_ref: Option<TargetRef>,
}

/// An endpoint's conditions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct EndpointConditions {
    /// Ready; unknown (absent) counts as ready, as kube-proxy reads it.
    pub ready: Option<bool>,
}

/// The object behind an endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct TargetRef {
    /// Its name.
    pub name: String,
}

/// One port of an EndpointSlice.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct EndpointPort {
    /// The Service port's name it serves (empty or absent for an unnamed one).
    pub name: Option<String>,
    /// TCP, UDP or SCTP.
    pub protocol: Option<String>,
    /// The port on the endpoints.
    pub port: Option<u16>,
}

/// A core/v1 Endpoints object: the older shape of the same facts, read
/// when a server has no EndpointSlices (podnet's own API, Kubernetes before
/// 1.21), and turned into one slice.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Endpoints {
    /// Metadata: named as its Service.
    pub metadata: Meta,
    /// Its subsets.
    #[serde(deserialize_with = "null_as_empty")]
    pub subsets: Vec<EndpointSubset>,
}

/// One subset of an Endpoints object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct EndpointSubset {
    /// Ready addresses.
    #[serde(deserialize_with = "null_as_empty")]
    pub addresses: Vec<EndpointAddress>,
    /// Addresses not ready.
    #[serde(deserialize_with = "null_as_empty")]
    pub not_ready_addresses: Vec<EndpointAddress>,
    /// Ports.
    #[serde(deserialize_with = "null_as_empty")]
    pub ports: Vec<EndpointPort>,
}

/// One address of an Endpoints subset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct EndpointAddress {
    /// The IP.
    pub ip: String,
    /// The pod.
    pub target_ref: Option<TargetRef>,
}

impl From<Endpoints> for EndpointSlice {
    fn from(e: Endpoints) -> EndpointSlice {
        let mut metadata = e.metadata;
        metadata.labels = BTreeMap::from([(SERVICE_NAME_LABEL.to_string(), metadata.name.clone())]);
        let mut slice = EndpointSlice { metadata, address_type: "IPv4".into(), ..Default::default() };
        // One slice carries one port list: a subset with other ports would
        // need a slice of its own; podnet's Services give every pod the
        // same ports, and so does a real Endpoints controller per subset.
        for subset in e.subsets {
            if slice.ports.is_empty() {
                slice.ports = subset.ports;
            }
            let endpoint = |a: EndpointAddress, ready| Endpoint {
                addresses: vec![a.ip],
                conditions: EndpointConditions { ready: Some(ready) },
                target_ref: a.target_ref,
            };
            slice.endpoints.extend(subset.addresses.into_iter().map(|a| endpoint(a, true)));
            slice.endpoints.extend(subset.not_ready_addresses.into_iter().map(|a| endpoint(a, false)));
        }
        slice
    }
}

/// A Pod: where it runs and its address, for DNS and NetworkPolicy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Pod {
    /// Metadata (labels select it).
    pub metadata: Meta,
    /// spec.
    pub spec: PodSpec,
    /// status.
    pub status: PodStatus,
}

/// A Pod's spec: the fields podnet reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PodSpec {
    /// A pod on the node's network has no address of its own.
    pub host_network: bool,
    /// Its containers (for named ports in policies).
    #[serde(deserialize_with = "null_as_empty")]
    pub containers: Vec<Container>,
}

/// A container: its ports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Container {
    /// Its ports.
    #[serde(deserialize_with = "null_as_empty")]
    pub ports: Vec<ContainerPort>,
}

/// A container port.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ContainerPort {
    /// Its name (policies may name it).
    pub name: Option<String>,
    /// The port.
    pub container_port: u16,
    /// TCP or UDP.
    pub protocol: Option<String>,
}

/// A Pod's status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PodStatus {
    /// Its address, once it has one.
    #[serde(rename = "podIP")]
    pub pod_ip: Option<String>,
}

/// A Namespace: its labels (policies select namespaces by them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Namespace {
    /// Metadata.
    pub metadata: Meta,
}

/// A NetworkPolicy: kept as its JSON, decoded by the same decoder podnet's
/// own API uses (`kube::netpol`), so the two read it alike.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct NetworkPolicy {
    /// Metadata.
    #[serde(default)]
    pub metadata: Meta,
    /// The object as sent (spec included).
    #[serde(skip)]
    pub json: serde_json::Value,
}

/// An Ingress: kept as its JSON, decoded by podnet's own API's decoder
/// (`kube::ingresses`), so the two read it alike.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Ingress {
    /// Metadata.
    #[serde(default)]
    pub metadata: Meta,
    /// The object as sent (spec included).
    #[serde(skip)]
    pub json: serde_json::Value,
}

/// A TLS Secret an Ingress may name: kept as its JSON (certificate and
/// key), decoded by podnet's own API's decoder.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Secret {
    /// Metadata.
    #[serde(default)]
    pub metadata: Meta,
    /// The object as sent (data included).
    #[serde(skip)]
    pub json: serde_json::Value,
}

macro_rules! object {
    ($($kind:ty),*) => {$(
        impl Object for $kind {
            fn meta(&self) -> &Meta {
                &self.metadata
            }
        }
    )*};
}

object!(Node, Service, EndpointSlice, Endpoints, Pod, Namespace);

/// Kinds kept as their JSON, for podnet's own API's decoders.
macro_rules! json_object {
    ($($kind:ident),*) => {$(
        impl Object for $kind {
            fn meta(&self) -> &Meta {
                &self.metadata
            }

            fn from_json(json: serde_json::Value) -> Result<Self, serde_json::Error> {
                let metadata = Option::<Meta>::deserialize(&json["metadata"])?.unwrap_or_default();
                Ok($kind { metadata, json })
            }
        }
    )*};
}

json_object!(NetworkPolicy, Ingress, Secret);

/// A watch event's Status (`type: ERROR`): 410 means the resourceVersion is
/// too old and the client must list again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Status {
    /// The HTTP code it stands for.
    pub code: u16,
    /// Its reason (Expired, Gone, …).
    pub reason: String,
    /// Its message.
    pub message: String,
}

fn null_as_empty<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

impl Node {
    /// Its InternalIP, the address other nodes reach its pods through.
    pub fn internal_ip(&self) -> Option<&str> {
        self.status.addresses.iter().find(|a| a.kind == "InternalIP").map(|a| a.address.as_str())
    }
}
