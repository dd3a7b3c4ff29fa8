//! Why an object or a field a user wrote is refused. Each message names the
//! rule, so the user can fix the input.

use std::net::IpAddr;

use crate::config::Cidr;
use crate::model::HostPort;

/// An invalid object, field or request about the model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// An Ingress or a Secret.
    #[error(transparent)]
    Ingress(#[from] super::ingress::IngressError),
    /// A Secret.
    #[error(transparent)]
    Secret(#[from] super::secret::SecretError),
    /// A ConfigMap.
    #[error(transparent)]
    ConfigMap(#[from] super::configmap::ConfigMapError),
    /// An annotation key that is not a qualified name.
    #[error(
        "invalid annotation key `{0}`: use letters, digits, '-', '_' or '.', with an optional DNS prefix and '/'"
    )]
    AnnotationKey(String),
    /// Annotations over Kubernetes' bound.
    #[error("annotations are {0} bytes: they must have at most 262144 bytes (256 KiB) of keys and values")]
    AnnotationsTooLong(usize),
    /// A pod, namespace, deployment, service or node name.
    #[error(
        "invalid {kind} name `{name}`: use at most {max_len} lowercase letters, digits and '-', starting and ending with a letter or digit"
    )]
    Name {
        /// What is named.
        kind: String,
        /// The name given.
        name: String,
        /// Its longest allowed length.
        max_len: usize,
    },
    /// A label key or value.
    #[error("invalid label `{key}={value}`: keys and values are up to 63 letters, digits, '-', '_' or '.'")]
    Label {
        /// The key given.
        key: String,
        /// The value given.
        value: String,
    },
    /// An ExternalName target.
    #[error("`{0}` is not a valid DNS name for --external-name")]
    DnsName(String),
    /// A restart policy.
    #[error("restart policy `{0}` is not one of Always, OnFailure, Never")]
    RestartPolicy(String),
    /// A transport protocol.
    #[error(transparent)]
    Protocol(#[from] netstack::protocol::UnknownProtocol),
    /// A port number.
    #[error("port `{0}` is not a number from 1 to 65535")]
    Port(String),
    /// A port name.
    #[error("invalid port name `{0}`: use up to 15 lowercase letters, digits and '-'")]
    PortName(String),
    /// A readiness probe.
    #[error("readiness probe `{0}` is not tcp:PORT or http:PORT/PATH")]
    Probe(String),
    /// An environment variable's name.
    #[error("invalid environment variable name `{0}`: use printable characters without '=' (e.g. LOG_LEVEL)")]
    EnvName(String),
    /// An environment variable's value.
    #[error("environment variable `{0}` has a NUL byte in its value")]
    EnvValue(String),
    /// Too many variables, or too long.
    #[error(
        "the environment is too large: at most {} variables and {} KiB of names and values",
        super::MAX_ENV,
        super::MAX_ENV_BYTES >> 10
    )]
    EnvSize,
    /// An image pull policy.
    #[error("image pull policy `{0}` is not one of Always, IfNotPresent, Never")]
    PullPolicy(String),
    /// Resource limits or requests.
    #[error("resources `{0}` are not memory=QUANTITY,cpu=QUANTITY (e.g. memory=128Mi,cpu=500m)")]
    Resources(String),
    /// A Service type.
    #[error("service type `{0}` is not one of ClusterIP, NodePort, LoadBalancer")]
    ServiceType(String),
    /// A host port.
    #[error("host port `{0}` is not [HOSTIP:]HOSTPORT:PORT[/TCP|UDP]")]
    HostPort(String),
    /// Two host ports of one pod.
    #[error("host ports {0} and {1} conflict: give each its own port")]
    HostPortConflict(HostPort, HostPort),
    /// A ClusterIP outside the usable part of the service range.
    #[error(
        "cluster IP {ip} is not a usable address of the service range {range}: pick another, or leave --cluster-ip out"
    )]
    ClusterIpUnusable {
        /// The address asked for.
        ip: IpAddr,
        /// network.service_cidr.
        range: Cidr,
    },
    /// A ClusterIP another Service has.
    #[error("cluster IP {0} is already taken by another service: pick another, or leave --cluster-ip out")]
    ClusterIpTaken(IpAddr),
    /// Every address of the service range is taken.
    #[error("the service range {0} has no free address: delete services")]
    ServiceRangeFull(Cidr),
    /// A CNI_CONTAINERID podnet does not take.
    #[error(
        "invalid CNI_CONTAINERID `{0}`: use letters, digits, '_', '.' and '-', starting with a letter or digit, at most 256"
    )]
    ContainerId(String),
    /// A CNI_IFNAME Linux does not take.
    #[error("invalid CNI_IFNAME `{0}`: use 1 to 15 characters, no '/', ':' or spaces")]
    Ifname(String),
    /// A CNI_NETNS that is not an absolute path.
    #[error("invalid CNI_NETNS `{}`: give the absolute path of the container's network namespace", .0.display())]
    NetnsPath(std::path::PathBuf),
    /// An IPv6 address where only IPv4 works yet.
    #[error(transparent)]
    Ipv6(#[from] super::address::Ipv6Unsupported),
    /// A NetworkPolicy.
    #[error(transparent)]
    Policy(#[from] super::policy::PolicyError),
}
