//! Objects in the Kubernetes API shape, so `-o json | jq` and `-o yaml`
//! habits from kubectl carry over.

use std::time::{Duration, UNIX_EPOCH};

use runtime::model::{
    Deployment, Endpoints, ImageSpec, NodeInfo, Phase, Pod, ResourceList, Resources, Service,
    SessionAffinity, TargetPort,
};
use serde_json::{Value, json};

fn timestamp(unix: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(unix)).to_string()
}

/// A container: a command pod's host command, or an image with its
/// command, args, pull policy and resources.
fn container(name: &str, command: &[String], image: Option<&ImageSpec>, resources: &Resources) -> Value {
    let Some(image) = image else { return json!({ "name": name, "command": command }) };
    let mut container = json!({
        "name": name,
        "image": image.image,
        "imagePullPolicy": image.pull_policy.to_string(),
    });
    if !image.command.is_empty() {
        container["command"] = json!(image.command);
    }
    if !image.args.is_empty() {
        container["args"] = json!(image.args);
    }
    let list = |l: &ResourceList| {
        let mut v = json!({});
        if let Some(m) = l.memory {
            v["memory"] = json!(m.to_string());
        }
        if let Some(c) = l.cpu_millis {
            v["cpu"] = json!(format!("{c}m"));
        }
        v
    };
    if *resources != Resources::default() {
        container["resources"] =
            json!({ "limits": list(&resources.limits), "requests": list(&resources.requests) });
    }
    container
}

/// A container with the pod's securityContext, when it has one.
fn security_context(mut container: Value, security: &runtime::model::SecurityContext) -> Value {
    if *security != Default::default() {
        let mut context = json!({ "privileged": security.privileged });
        if let Some(run_as) = security.run_as {
            context["runAsUser"] = json!(run_as.uid);
            context["runAsGroup"] = json!(run_as.gid);
        }
        container["securityContext"] = context;
    }
    container
}

/// A pod as `kubectl get pod -o json` shows one.
pub(crate) fn pod(pod: &Pod) -> Value {
    let spec = &pod.spec;
    let status = &pod.status;
    let mut metadata = json!({
        "name": spec.name,
        "namespace": spec.namespace,
        "uid": pod.uid,
        "labels": spec.labels,
        "creationTimestamp": timestamp(pod.created_at),
    });
    if let Some(owner) = &spec.owner {
        metadata["ownerReferences"] =
            json!([{ "apiVersion": "apps/v1", "kind": "Deployment", "name": owner }]);
    }
    let state = match (status.ready, status.phase) {
        (true, _) => json!({ "running": { "startedAt": status.started_at.map(timestamp) } }),
        (false, Phase::Pending) => json!({ "waiting": {
            "reason": status.reason.as_deref().unwrap_or("ContainerCreating"),
            "message": status.message,
        } }),
        (false, Phase::Running) => {
            json!({ "waiting": { "reason": status.reason, "message": status.message } })
        }
        (false, _) => {
            json!({ "terminated": { "exitCode": status.last_exit_code, "reason": status.reason } })
        }
    };
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {
            "nodeName": pod.node_name,
            "restartPolicy": spec.restart_policy.to_string(),
            "containers": [security_context(container(&spec.name, &spec.command, spec.image.as_ref(), &spec.resources), &spec.security)],
        },
        "status": {
            "phase": format!("{:?}", status.phase),
            "podIP": status.pod_ip,
            "podIPs": status.pod_ip.map(|ip| vec![json!({ "ip": ip })]).unwrap_or_default(),
            "startTime": status.started_at.map(timestamp),
            "containerStatuses": [{
                "name": spec.name,
                "ready": status.ready,
                "restartCount": status.restarts,
                "state": state,
            }],
        },
    })
}

/// A deployment as `kubectl get deployment -o json` shows one.
pub(crate) fn deployment(d: &Deployment) -> Value {
    let spec = &d.spec;
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": spec.name,
            "namespace": spec.namespace,
            "uid": d.uid,
            "labels": spec.labels,
            "creationTimestamp": timestamp(d.created_at),
        },
        "spec": {
            "replicas": spec.replicas,
            "selector": { "matchLabels": { "app": spec.labels.get("app") } },
            "template": {
                "metadata": { "labels": spec.labels },
                "spec": { "containers": [container(&spec.name, &spec.command, spec.image.as_ref(), &spec.resources)] },
            },
        },
        "status": {
            "replicas": d.replicas,
            "readyReplicas": d.ready_replicas,
            "availableReplicas": d.ready_replicas,
        },
    })
}

/// A Service as `kubectl get svc -o json` shows one.
pub(crate) fn service(s: &Service) -> Value {
    let spec = &s.spec;
    let ports: Vec<Value> = spec
        .ports
        .iter()
        .map(|p| {
            let target = match &p.target_port {
                TargetPort::Number(n) => json!(n),
                TargetPort::Name(name) => json!(name),
            };
            let mut port = json!({ "name": p.name, "port": p.port, "targetPort": target, "protocol": p.protocol.to_string() });
            if let Some(n) = p.node_port {
                port["nodePort"] = json!(n);
            }
            port
        })
        .collect();
    let cluster_ip = s.cluster_ip.map_or("None".to_string(), |ip| ip.to_string());
    let mut out = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": spec.name,
            "namespace": spec.namespace,
            "uid": s.uid,
            "creationTimestamp": timestamp(s.created_at),
        },
        "spec": {
            "type": spec.service_type.to_string(),
            "clusterIP": cluster_ip,
            "clusterIPs": [cluster_ip],
            "ports": ports,
            "selector": spec.selector,
            "sessionAffinity": "None",
        },
        "status": { "loadBalancer": {} },
    });
    if let Some(target) = &spec.external_name {
        out["spec"] =
            json!({ "type": "ExternalName", "externalName": target, "ports": out["spec"]["ports"] });
    }
    if let Some(lb) = &s.load_balancer {
        let ingress: Vec<Value> = lb.ingress.iter().map(|ip| json!({ "ip": ip })).collect();
        out["status"]["loadBalancer"] = json!({ "ingress": ingress });
        if let Some(problem) = &lb.problem {
            out["metadata"]["annotations"] = json!({ "podnet.io/problem": problem });
        }
    }
    if let SessionAffinity::ClientIp { timeout_seconds } = spec.session_affinity {
        out["spec"]["sessionAffinity"] = json!("ClientIP");
        out["spec"]["sessionAffinityConfig"] = json!({ "clientIP": { "timeoutSeconds": timeout_seconds } });
    }
    out
}

/// Endpoints as `kubectl get endpoints -o json` shows them.
pub(crate) fn endpoints(e: &Endpoints) -> Value {
    let address = |ip: &std::net::Ipv4Addr, pod: &str| json!({ "ip": ip, "targetRef": { "kind": "Pod", "name": pod, "namespace": e.namespace } });
    let subsets: Vec<Value> = e
        .subsets
        .iter()
        .map(|(a, ports)| {
            let ports: Vec<Value> = ports
                .iter()
                .map(|p| json!({ "name": p.name, "port": p.port, "protocol": p.protocol.to_string() }))
                .collect();
            json!({ "addresses": [address(&a.ip, &a.pod)], "ports": ports })
        })
        .collect();
    let not_ready: Vec<Value> = e.not_ready.iter().map(|a| address(&a.ip, &a.pod)).collect();
    let mut out = json!({
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": { "name": e.name, "namespace": e.namespace, "creationTimestamp": timestamp(e.created_at) },
        "subsets": subsets,
    });
    if !not_ready.is_empty() {
        out["notReadyAddresses"] = json!(not_ready);
    }
    if !e.problems.is_empty() {
        out["metadata"]["annotations"] = json!({ "podnet.io/problems": e.problems.join("; ") });
    }
    out
}

/// A node as `kubectl get node -o json` shows one.
pub(crate) fn node(n: &NodeInfo) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": { "name": n.name, "creationTimestamp": timestamp(n.started_at) },
        "spec": { "podCIDR": n.pod_cidr, "podCIDRs": [n.pod_cidr] },
        "status": {
            "conditions": [{ "type": "Ready", "status": if n.ready { "True" } else { "False" } }],
            "addresses": n.internal_ip.map(|ip| vec![json!({ "type": "InternalIP", "address": ip })]).unwrap_or_default(),
            "nodeInfo": { "kubeletVersion": format!("podnet-{}", n.version) },
        },
    })
}

/// Several objects as a `kind: List`.
pub(crate) fn list(items: Vec<Value>) -> Value {
    json!({ "apiVersion": "v1", "kind": "List", "metadata": { "resourceVersion": "" }, "items": items })
}
