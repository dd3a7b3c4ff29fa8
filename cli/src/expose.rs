//! `podnet expose` and `podnet patch svc`: kubectl's defaults — the Service
//! is named after the object, the target port is the port, and the selector
//! is the deployment's app label or the pod's labels.

use std::path::Path;

use runtime::api::{Request, Response};
use runtime::model::{
    ClusterIpRequest, DEFAULT_AFFINITY_TIMEOUT, ServicePort, ServiceSpec, SessionAffinity, TargetPort,
    check_port_name, parse_port,
};

use crate::args::{Affinity, ExposeArgs, Kind};
use crate::error::CliError;
use crate::{call, parse_labels, unexpected};

/// The affinity the flags ask for.
pub(crate) fn affinity(choice: Affinity, timeout: Option<u32>) -> Result<SessionAffinity, CliError> {
    match (choice, timeout) {
        (Affinity::None, Some(_)) => {
            Err("--session-affinity-timeout needs --session-affinity ClientIP".into())
        }
        (Affinity::None, None) => Ok(SessionAffinity::None),
        (Affinity::ClientIp, Some(0)) => Err("--session-affinity-timeout must be at least 1 second".into()),
        (Affinity::ClientIp, t) => {
            Ok(SessionAffinity::ClientIp { timeout_seconds: t.unwrap_or(DEFAULT_AFFINITY_TIMEOUT) })
        }
    }
}

pub(crate) async fn run(socket: &Path, args: ExposeArgs) -> Result<String, CliError> {
    let namespace = args.ns.namespace.clone();
    let selector = if args.selector.is_empty() {
        default_selector(socket, args.kind, &namespace, &args.name).await?
    } else {
        parse_labels(&args.selector)?
    };
    if !args.target_ports.is_empty() && args.target_ports.len() != args.ports.len() {
        return Err("give one --target-port per --port, or none".into());
    }
    if !args.node_ports.is_empty() && args.node_ports.len() != args.ports.len() {
        return Err("give one --node-port per --port, or none".into());
    }
    let mut ports = Vec::new();
    for (i, text) in args.ports.iter().enumerate() {
        let (name, number) = match text.split_once(':') {
            Some((name, number)) => {
                check_port_name(name)?;
                (Some(name.to_string()), parse_port(number)?)
            }
            None => (None, parse_port(text)?),
        };
        let target_port = args.target_ports.get(i).cloned().unwrap_or(TargetPort::Number(number));
        let node_port = args.node_ports.get(i).copied();
        ports.push(ServicePort { name, port: number, target_port, protocol: args.protocol, node_port });
    }
    let cluster_ip = match args.cluster_ip.as_deref() {
        None => ClusterIpRequest::Auto,
        Some("None") => ClusterIpRequest::None,
        Some(ip) => {
            let ip = ip.parse().map_err(|_| {
                CliError::Message(format!("--cluster-ip `{ip}` is not an IPv4 address or None"))
            })?;
            let ip = runtime::model::address::refuse_ipv6("--cluster-ip", ip)
                .map_err(|e| CliError::Message(e.to_string()))?;
            ClusterIpRequest::Fixed(ip)
        }
    };
    let spec = ServiceSpec {
        name: args.service_name.unwrap_or(args.name),
        namespace,
        cluster_ip,
        ports,
        selector,
        session_affinity: affinity(args.session_affinity, args.session_affinity_timeout)?,
        external_name: None,
        service_type: args.service_type,
        labels: Default::default(),
        annotations: Default::default(),
    };
    let Response::Service(service) = call(socket, Request::CreateService(spec)).await? else {
        return unexpected();
    };
    Ok(format!("service/{} exposed", service.spec.name))
}

async fn default_selector(
    socket: &Path,
    kind: Kind,
    namespace: &str,
    name: &str,
) -> Result<runtime::model::Labels, CliError> {
    match kind {
        Kind::Deployment => {
            let request = Request::GetDeployments { namespace: Some(namespace.into()) };
            let Response::Deployments(list) = call(socket, request).await? else { return unexpected() };
            let d = list.into_iter().find(|d| d.spec.name == name).ok_or_else(|| {
                format!("deployment {namespace}/{name} not found: list them with `podnet get deployments`")
            })?;
            let app = d.spec.labels.get("app").cloned().unwrap_or_else(|| name.to_string());
            Ok([("app".to_string(), app)].into())
        }
        Kind::Pod => {
            let request = Request::GetPods { namespace: Some(namespace.into()) };
            let Response::Pods(list) = call(socket, request).await? else { return unexpected() };
            let pod = list.into_iter().find(|p| p.spec.name == name).ok_or_else(|| {
                format!("pod {namespace}/{name} not found: list pods with `podnet get pods`")
            })?;
            if pod.spec.labels.is_empty() {
                return Err(
                    format!("pod {namespace}/{name} has no labels to select it by: give --selector").into()
                );
            }
            Ok(pod.spec.labels)
        }
        _ => Err("podnet expose takes a deployment or a pod".into()),
    }
}
