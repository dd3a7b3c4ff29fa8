//! `podnet node up --kubernetes KUBECONFIG`: podnet as a real Kubernetes
//! cluster's network. A read-only client of that cluster's API server
//! lists and watches Nodes, Services, EndpointSlices, Pods, Namespaces,
//! NetworkPolicies, Ingresses and TLS Secrets (`watch.rs` decides,
//! `client.rs` does the requests, `watcher.rs` runs one thread per
//! resource) and keeps them (`cluster.rs`), which the agent turns into this
//! node's desired state (its subnet from its Node's spec.podCIDR, the
//! switch's services, the DNS zone, node ports, policy, overlay peers and
//! the Ingresses it serves: kube-proxy's, CoreDNS's, flannel's and
//! Traefik's jobs). It never writes to the API server: the kubelet and the
//! controllers own everything there (so no Ingress or LoadBalancer status).

use std::path::PathBuf;

pub mod client;
pub mod cluster;
pub mod kubeconfig;
pub mod objects;
pub mod stats;
pub mod watch;
pub mod watcher;

/// Why the Kubernetes mode cannot start or a request failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KubernetesError {
    /// The kubeconfig cannot be read.
    #[error("cannot read kubeconfig {}: {message}; pass the Kubernetes cluster's kubeconfig (k3s: /etc/rancher/k3s/k3s.yaml)", path.display())]
    KubeconfigUnreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The kubeconfig cannot be used.
    #[error("kubeconfig {} is not usable: {problem}", path.display())]
    KubeconfigInvalid {
        /// The file.
        path: PathBuf,
        /// Why.
        problem: kubeconfig::KubeconfigProblem,
    },
    /// The kubeconfig's CA or client certificate is not PEM podnet can use.
    #[error("the kubeconfig's {what} is not usable: {message}")]
    Pem {
        /// Which one.
        what: &'static str,
        /// Why.
        message: String,
    },
    /// The server cannot be reached.
    #[error(
        "cannot reach the Kubernetes API at {server}: {message}; check the kubeconfig's server address and that the API server runs"
    )]
    Unreachable {
        /// The server URL.
        server: String,
        /// Why.
        message: String,
    },
    /// TLS failed.
    #[error(
        "TLS with the Kubernetes API at {server} failed: {message}; check the kubeconfig's certificate-authority-data"
    )]
    Tls {
        /// The server URL.
        server: String,
        /// Why.
        message: String,
    },
    /// 401.
    #[error(
        "the Kubernetes API at {server} refused the kubeconfig's credentials (401 Unauthorized): use a kubeconfig with a valid token or client certificate"
    )]
    Unauthorized {
        /// The server URL.
        server: String,
    },
    /// 403.
    #[error(
        "the Kubernetes API at {server} forbids podnet's user to list and watch {resource} (403 Forbidden): grant get, list and watch on nodes, services, endpointslices, pods, namespaces, networkpolicies, ingresses and secrets"
    )]
    Forbidden {
        /// The server URL.
        server: String,
        /// The resource.
        resource: &'static str,
    },
    /// Another refusal.
    #[error("the Kubernetes API at {server} answered {code} to {path}: {message}")]
    Status {
        /// The server URL.
        server: String,
        /// The request's path.
        path: String,
        /// The HTTP status.
        code: u16,
        /// The Status's message.
        message: String,
    },
    /// 410: the resourceVersion or continue token is too old.
    #[error("the Kubernetes API no longer has that resourceVersion (410 Gone)")]
    Gone,
    /// An answer that is not what the API sends, or too large.
    #[error("the Kubernetes API at {server} sent a {what} podnet cannot take: {message}")]
    Answer {
        /// The server URL.
        server: String,
        /// What it was.
        what: &'static str,
        /// Why.
        message: String,
    },
    /// This node is not a Node of the cluster.
    #[error(
        "node `{node}` is not a Node of the Kubernetes cluster: start podnet with --name set to this machine's Node name (kubectl get nodes)"
    )]
    NoNode {
        /// The name.
        node: String,
    },
    /// Its Node has no pod subnet.
    #[error(
        "Node `{node}` has no spec.podCIDR: let the controller manager allocate node CIDRs (--allocate-node-cidrs and --cluster-cidr; k3s does), or set it: kubectl patch node {node} -p '{{\"spec\":{{\"podCIDR\":\"10.42.1.0/24\"}}}}'"
    )]
    NoPodCidr {
        /// The name.
        node: String,
    },
    /// Its Node's pod subnet is not one podnet can use.
    #[error("Node `{node}` has spec.podCIDR {cidr}, which podnet cannot use: {message}")]
    BadPodCidr {
        /// The name.
        node: String,
        /// The value.
        cidr: String,
        /// Why.
        message: String,
    },
}
