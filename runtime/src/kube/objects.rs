//! podnet's objects in the Kubernetes API shape (what `kubectl get -o json`
//! shows). The CLI's `-o json` (cli/src/kube.rs) renders the same objects;
//! this is the API's version of it, with what kubectl needs besides
//! (resourceVersion, container images and ports, the deployment selector).

use std::net::IpAddr;
#[cfg(test)]
use std::net::Ipv4Addr;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use crate::model::env_refs::{EnvRef, Source};
use crate::model::{
    Amount, ContainerStdin, Deployment, Endpoints, NodeInfo, Phase, Pod, PodTemplate, Probe, Resources,
    SecurityContext, Service, SessionAffinity, Strategy, TargetPort,
};

/// RFC 3339 of a Unix time, as Kubernetes writes timestamps.
pub fn timestamp(unix: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(unix)).to_string()
}

pub(super) fn metadata(name: &str, namespace: Option<&str>, uid: &str, created: u64, rv: u64) -> Value {
    let mut m = json!({
        "name": name,
        "uid": uid,
        "resourceVersion": rv.to_string(),
        "creationTimestamp": timestamp(created),
    });
    if let Some(ns) = namespace {
        m["namespace"] = json!(ns);
    }
    m
}

/// A memory amount as Kubernetes prints it (`128Mi`, or bytes).
fn memory(bytes: u64) -> String {
    for (unit, size) in [("Gi", 1u64 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)] {
        if bytes.is_multiple_of(size) {
            return format!("{}{unit}", bytes / size);
        }
    }
    bytes.to_string()
}

fn resources(r: &Resources) -> Value {
    let list = |l: &crate::model::ResourceList| {
        let mut out = Map::new();
        if let Some(m) = l.memory {
            out.insert("memory".into(), json!(memory(m)));
        }
        if let Some(c) = l.cpu_millis {
            out.insert("cpu".into(), json!(format!("{c}m")));
        }
        Value::Object(out)
    };
    let mut out = Map::new();
    if *r != Resources::default() {
        out.insert("limits".into(), list(&r.limits));
        out.insert("requests".into(), list(&r.requests));
    }
    Value::Object(out)
}

/// A pod's (or a deployment's template's) `spec`: its one container and
/// its volumes.
fn pod_spec(name: &str, t: &PodTemplate) -> Value {
    let mut spec = json!({ "containers": [container(name, t)] });
    let volumes = t.image.as_ref().map(|i| i.volumes.as_slice()).unwrap_or_default();
    if !volumes.is_empty() {
        let volumes: Vec<Value> = volumes.iter().map(volume).collect();
        spec["volumes"] = json!(volumes);
    }
    spec
}

/// A deployment's template's `spec` as the API shows it (for decode's tests).
#[cfg(test)]
pub(super) fn deployment_template_spec_for_tests(d: &crate::model::DeploymentSpec) -> Value {
    pod_spec(&d.name, &d.template)
}

/// One ConfigMap or Secret volume in the API shape.
fn volume(v: &crate::model::volumes::Volume) -> Value {
    let (field, name_field) = match v.source {
        Source::ConfigMap => ("configMap", "name"),
        Source::Secret => ("secret", "secretName"),
    };
    let mut source = json!({ name_field: v.object });
    if !v.items.is_empty() {
        let items: Vec<Value> = v
            .items
            .iter()
            .map(|i| {
                let mut item = json!({ "key": i.key, "path": i.path });
                if let Some(mode) = i.mode {
                    item["mode"] = json!(mode);
                }
                item
            })
            .collect();
        source["items"] = json!(items);
    }
    source["defaultMode"] = json!(v.default_mode);
    if v.optional {
        source["optional"] = json!(true);
    }
    json!({ "name": v.name, field: source })
}

/// The one container of a pod (or of a deployment's template), named
/// `name`, in the API shape.
pub fn container(name: &str, c: &PodTemplate) -> Value {
    let mut out =
        json!({ "name": c.container.as_deref().unwrap_or(name), "resources": resources(&c.resources) });
    match &c.image {
        Some(image) => {
            out["image"] = json!(image.image);
            out["imagePullPolicy"] = json!(image.pull_policy.to_string());
            if !image.command.is_empty() {
                out["command"] = json!(image.command);
            }
            if !image.args.is_empty() {
                out["args"] = json!(image.args);
            }
            let mut env: Vec<Value> =
                image.env.iter().map(|(name, value)| json!({ "name": name, "value": value })).collect();
            let mut env_from = Vec::new();
            for r in &image.env_refs {
                let field = |source: Source, key: bool| match (source, key) {
                    (Source::ConfigMap, true) => "configMapKeyRef",
                    (Source::Secret, true) => "secretKeyRef",
                    (Source::ConfigMap, false) => "configMapRef",
                    (Source::Secret, false) => "secretRef",
                };
                match r {
                    EnvRef::Key { var, source, object, key, optional } => {
                        let mut r = json!({ "name": object, "key": key });
                        if *optional {
                            r["optional"] = json!(true);
                        }
                        env.push(json!({ "name": var, "valueFrom": { field(*source, true): r } }));
                    }
                    EnvRef::Field { var, field } => env.push(json!({ "name": var, "valueFrom": {
                        "fieldRef": { "apiVersion": "v1", "fieldPath": field.to_string() } } })),
                    EnvRef::All { source, object, prefix, optional } => {
                        let mut r = json!({ "name": object });
                        if *optional {
                            r["optional"] = json!(true);
                        }
                        let mut item = json!({ field(*source, false): r });
                        if !prefix.is_empty() {
                            item["prefix"] = json!(prefix);
                        }
                        env_from.push(item);
                    }
                }
            }
            if !env.is_empty() {
                out["env"] = json!(env);
            }
            if !env_from.is_empty() {
                out["envFrom"] = json!(env_from);
            }
            if !image.mounts.is_empty() {
                let mounts: Vec<Value> = image
                    .mounts
                    .iter()
                    .map(|m| {
                        let mut out = json!({ "name": m.name, "mountPath": m.mount_path });
                        if m.read_only {
                            out["readOnly"] = json!(true);
                        }
                        out
                    })
                    .collect();
                out["volumeMounts"] = json!(mounts);
            }
            if image.stdin_once {
                out["stdinOnce"] = json!(true);
            }
            match image.stdin {
                ContainerStdin::Closed => {}
                ContainerStdin::Open => out["stdin"] = json!(true),
                ContainerStdin::Tty => {
                    out["stdin"] = json!(true);
                    out["tty"] = json!(true);
                }
            }
        }
        None => out["command"] = json!(c.command),
    }
    let mut ports: Vec<Value> = c
        .ports
        .iter()
        .map(|p| {
            let port = json!({ "containerPort": p.port, "protocol": p.protocol.to_string() });
            with_name(port, &p.name)
        })
        .collect();
    for hp in &c.host_ports {
        let mut port = json!({ "containerPort": hp.port, "hostPort": hp.host_port, "protocol": hp.protocol.to_string() });
        if let Some(ip) = hp.host_ip {
            port["hostIP"] = json!(ip);
        }
        ports.push(port);
    }
    if !ports.is_empty() {
        out["ports"] = json!(ports);
    }
    match &c.readiness {
        Some(Probe::Tcp { port }) => out["readinessProbe"] = json!({ "tcpSocket": { "port": port } }),
        Some(Probe::Http { port, path }) => {
            out["readinessProbe"] = json!({ "httpGet": { "port": port, "path": path } })
        }
        None => {}
    }
    if c.security != SecurityContext::default() {
        let mut context = json!({ "privileged": c.security.privileged });
        if let Some(run_as) = c.security.run_as {
            context["runAsUser"] = json!(run_as.uid);
            context["runAsGroup"] = json!(run_as.gid);
        }
        out["securityContext"] = context;
    }
    out
}

/// A pod as `kubectl get pod -o json` shows one.
pub fn pod(pod: &Pod, rv: u64) -> Value {
    let spec = &pod.spec;
    let status = &pod.status;
    let mut meta = metadata(&spec.name, Some(&spec.namespace), &pod.uid, pod.created_at, rv);
    // A deployment's pod: its ReplicaSet's hash label and owner reference.
    meta["labels"] = super::replicasets::pod_labels(spec);
    annotate(&mut meta, &spec.annotations);
    if let Some(owner) = super::replicasets::owner_of(spec) {
        meta["ownerReferences"] = owner;
    }
    let state = match (status.ready, status.phase) {
        (true, _) => json!({ "running": { "startedAt": status.started_at.map(timestamp) } }),
        // Why it waits (ErrImagePull, CreateContainerError, CrashLoopBackOff…)
        // with the one-line message, as the kubelet reports it.
        (false, Phase::Pending | Phase::Running) => json!({ "waiting": {
            "reason": status.reason.as_deref().unwrap_or("ContainerCreating"),
            "message": status.message,
        } }),
        (false, _) => json!({ "terminated": {
            "exitCode": status.last_exit_code,
            "reason": status.reason,
            "message": status.message,
        } }),
    };
    let ready = if status.ready { "True" } else { "False" };
    let mut pod_spec = pod_spec(&spec.name, &spec.template);
    pod_spec["nodeName"] = json!(pod.node_name);
    pod_spec["restartPolicy"] = json!(spec.restart_policy.to_string());
    let mut object = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": pod_spec,
        "status": {
            "phase": format!("{:?}", status.phase),
            "conditions": [{ "type": "Ready", "status": ready }],
            "podIP": status.pod_ip,
            "podIPs": status.pod_ip.map(|ip| vec![json!({ "ip": ip })]).unwrap_or_default(),
            "startTime": status.started_at.map(timestamp),
            "containerStatuses": [{
                "name": spec.template.container.as_deref().unwrap_or(&spec.name),
                "ready": status.ready,
                "restartCount": status.restarts,
                "state": state,
                "image": spec.template.image.as_ref().map(|i| i.image.clone()).unwrap_or_default(),
                // Required by the clients; the resolved digest does not
                // travel in a pod's status yet (the kubelet too leaves it
                // empty until it knows it).
                "imageID": "",
            }],
        },
    });
    // A container another runtime runs, networked by podnet as its CNI
    // plugin: the runtime's container id, as the kubelet reports it.
    if let Some(attachment) = &spec.attachment {
        object["status"]["containerStatuses"][0]["containerID"] =
            json!(format!("cni://{}", attachment.container_id));
    }
    object
}

/// A deployment as `kubectl get deployment -o json` shows one.
pub fn deployment(d: &Deployment, rv: u64) -> Value {
    let spec = &d.spec;
    let mut meta = metadata(&spec.name, Some(&spec.namespace), &d.uid, d.created_at, rv);
    meta["labels"] = json!(spec.object_labels());
    annotate(&mut meta, &spec.annotations);
    meta["generation"] = json!(1);
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": spec.replicas,
            "selector": { "matchLabels": spec.selector() },
            "strategy": strategy(&spec.strategy),
            "template": {
                "metadata": template_metadata(spec),
                "spec": pod_spec(&spec.name, &spec.template),
            },
        },
        "status": {
            "observedGeneration": 1,
            "replicas": d.replicas,
            "updatedReplicas": d.replicas,
            "readyReplicas": d.ready_replicas,
            "availableReplicas": d.ready_replicas,
        },
    })
}

/// A deployment's pod template's metadata: its labels, and annotations
/// when it has any.
fn template_metadata(spec: &crate::model::DeploymentSpec) -> Value {
    let mut meta = json!({ "labels": spec.labels });
    annotate(&mut meta, &spec.template_annotations);
    meta
}

/// spec.strategy as Kubernetes shows it (`"25%"`, or a count).
fn strategy(strategy: &Strategy) -> Value {
    let amount = |a: Amount| match a {
        Amount::Count(n) => json!(n),
        Amount::Percent(p) => json!(format!("{p}%")),
    };
    match *strategy {
        Strategy::RollingUpdate { max_surge, max_unavailable } => json!({
            "type": "RollingUpdate",
            "rollingUpdate": { "maxSurge": amount(max_surge), "maxUnavailable": amount(max_unavailable) },
        }),
        Strategy::Recreate => json!({ "type": "Recreate" }),
    }
}

/// A deployment's scale subresource (autoscaling/v1 Scale).
pub fn scale(d: &Deployment, rv: u64) -> Value {
    let spec = &d.spec;
    let selector: Vec<String> = spec.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    json!({
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": metadata(&spec.name, Some(&spec.namespace), &d.uid, d.created_at, rv),
        "spec": { "replicas": spec.replicas },
        "status": { "replicas": d.replicas, "selector": selector.join(",") },
    })
}

/// A Service as `kubectl get svc -o json` shows one.
pub fn service(s: &Service, rv: u64) -> Value {
    let spec = &s.spec;
    let ports: Vec<Value> = spec
        .ports
        .iter()
        .map(|p| {
            let target = match &p.target_port {
                TargetPort::Number(n) => json!(n),
                TargetPort::Name(name) => json!(name),
            };
            let port = json!({ "port": p.port, "targetPort": target, "protocol": p.protocol.to_string() });
            let mut port = with_name(port, &p.name);
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
        "metadata": metadata(&spec.name, Some(&spec.namespace), &s.uid, s.created_at, rv),
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
        out["spec"] = json!({ "type": "ExternalName", "externalName": target, "ports": out["spec"]["ports"], "sessionAffinity": "None" });
    }
    if !spec.labels.is_empty() {
        out["metadata"]["labels"] = json!(spec.labels);
    }
    annotate(&mut out["metadata"], &spec.annotations);
    if let Some(lb) = &s.load_balancer {
        let ingress: Vec<Value> = lb.ingress.iter().map(|ip| json!({ "ip": ip })).collect();
        out["status"]["loadBalancer"] = json!({ "ingress": ingress });
        if let Some(problem) = &lb.problem {
            out["metadata"]["annotations"][PROBLEM_ANNOTATION] = json!(problem);
        }
    }
    if let SessionAffinity::ClientIp { timeout_seconds } = spec.session_affinity {
        out["spec"]["sessionAffinity"] = json!("ClientIP");
        out["spec"]["sessionAffinityConfig"] = json!({ "clientIP": { "timeoutSeconds": timeout_seconds } });
    }
    out
}

/// The annotation podnet shows a LoadBalancer's problem in (not stored).
pub const PROBLEM_ANNOTATION: &str = "podnet.io/problem";

/// Adds `metadata.annotations` when there are any (Kubernetes omits an
/// empty map).
pub(super) fn annotate(meta: &mut Value, annotations: &crate::model::Annotations) {
    if !annotations.is_empty() {
        meta["annotations"] = json!(annotations);
    }
}

/// A port object with its `name` when it has one (Kubernetes omits an
/// empty name).
fn with_name(mut port: Value, name: &Option<String>) -> Value {
    if let Some(name) = name {
        port["name"] = json!(name);
    }
    port
}

/// Endpoints as `kubectl get endpoints -o json` shows them: addresses with
/// the same ports share a subset.
pub fn endpoints(e: &Endpoints, rv: u64) -> Value {
    let address = |ip: &IpAddr, pod: &str| json!({ "ip": ip, "targetRef": { "kind": "Pod", "name": pod, "namespace": e.namespace } });
    let mut subsets: Vec<(Value, Vec<Value>)> = Vec::new();
    for (a, ports) in &e.subsets {
        let ports: Value = ports
            .iter()
            .map(|p| with_name(json!({ "port": p.port, "protocol": p.protocol.to_string() }), &p.name))
            .collect();
        match subsets.iter_mut().find(|(p, _)| *p == ports) {
            Some((_, addresses)) => addresses.push(address(&a.ip, &a.pod)),
            None => subsets.push((ports, vec![address(&a.ip, &a.pod)])),
        }
    }
    let mut subsets: Vec<Value> = subsets
        .into_iter()
        .map(|(ports, addresses)| json!({ "addresses": addresses, "ports": ports }))
        .collect();
    let not_ready: Vec<Value> = e.not_ready.iter().map(|a| address(&a.ip, &a.pod)).collect();
    if !not_ready.is_empty() {
        match subsets.first_mut() {
            Some(first) => first["notReadyAddresses"] = json!(not_ready),
            None => subsets.push(json!({ "notReadyAddresses": not_ready })),
        }
    }
    let mut out = json!({
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": metadata(&e.name, Some(&e.namespace), "", e.created_at, rv),
        "subsets": subsets,
    });
    if !e.problems.is_empty() {
        out["metadata"]["annotations"] = json!({ "podnet.io/problems": e.problems.join("; ") });
    }
    out
}

/// The host's kernel release, for the node's nodeInfo.
fn kernel() -> String {
    nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default()
}

/// A node as `kubectl get node -o json` shows one.
pub fn node(n: &NodeInfo, rv: u64) -> Value {
    let mut meta = metadata(&n.name, None, &n.name, n.started_at, rv);
    let mut labels = json!({ "kubernetes.io/hostname": n.name, "kubernetes.io/os": "linux" });
    for role in n.roles.split(',').filter(|r| !r.is_empty() && *r != "<none>") {
        labels[format!("node-role.kubernetes.io/{role}")] = json!("");
    }
    meta["labels"] = labels;
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": meta,
        "spec": { "podCIDR": n.pod_cidr, "podCIDRs": [n.pod_cidr] },
        "status": {
            "conditions": [{ "type": "Ready", "status": if n.ready { "True" } else { "False" } }],
            "addresses": n.internal_ip.map(|ip| vec![json!({ "type": "InternalIP", "address": ip })]).unwrap_or_default(),
            // Every field the clients require (the Python client refuses a
            // Node without bootID); what podnet does not know is empty.
            "nodeInfo": {
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
                "kubeletVersion": format!("podnet-{}", n.version),
                "kubeProxyVersion": format!("podnet-{}", n.version),
                "kernelVersion": kernel(),
                "osImage": "",
                "containerRuntimeVersion": format!("podnet://{}", n.version),
                "operatingSystem": "linux",
                "architecture": super::discovery::version()["platform"].as_str().unwrap_or("").trim_start_matches("linux/"),
            },
        },
    })
}

/// A namespace (podnet's namespaces exist while objects are in them).
pub fn namespace(ns: &crate::model::Namespace, rv: u64) -> Value {
    let mut meta = metadata(&ns.name, None, &ns.name, ns.created_at, rv);
    meta["labels"] = json!(ns.all_labels());
    if !ns.annotations.is_empty() {
        meta["annotations"] = json!(ns.annotations);
    }
    json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": meta, "status": { "phase": "Active" } })
}

/// A typed list (`PodList`) of `items`.
pub fn list(kind: &str, api_version: &str, items: Vec<Value>, rv: u64) -> Value {
    json!({
        "apiVersion": api_version,
        "kind": format!("{kind}List"),
        "metadata": { "resourceVersion": rv.to_string() },
        "items": items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ImageSpec;
    use crate::model::{PodSpec, PodStatus, PullPolicy, RestartPolicy};

    #[test]
    fn an_image_pod_shows_its_image_command_args_and_ports() {
        let spec = PodSpec {
            name: "web".into(),
            namespace: "default".into(),
            labels: [("app".to_string(), "web".to_string())].into(),
            template: crate::model::PodTemplate {
                command: vec![],
                ports: vec!["http:8080".parse().unwrap()],
                readiness: None,
                host_ports: vec![],
                security: Default::default(),
                image: Some(ImageSpec {
                    image: "nginx:1.27".into(),
                    pull_policy: PullPolicy::IfNotPresent,
                    command: vec![],
                    args: vec!["-g".into()],
                    env: vec![("MODE".into(), "test".into())],
                    env_refs: vec![],
                    env_error: None,
                    volumes: Vec::new(),
                    mounts: Vec::new(),
                    files: Vec::new(),
                    stdin_once: false,
                    stdin: Default::default(),
                }),
                resources: Resources {
                    limits: "memory=128Mi,cpu=500m".parse().unwrap(),
                    ..Default::default()
                },
                container: None,
            },
            restart_policy: RestartPolicy::Always,
            owner: Some("web".into()),
            node_name: None,
            annotations: Default::default(),
            attachment: None,
        };
        let status = PodStatus {
            phase: Phase::Running,
            pod_ip: Some(Ipv4Addr::new(10, 244, 0, 5).into()),
            ready: true,
            restarts: 0,
            reason: None,
            last_exit_code: None,
            started_at: Some(0),
            message: None,
        };
        let p = Pod { uid: "u1".into(), created_at: 0, node_name: "pi1".into(), spec, status };
        let v = pod(&p, 7);
        let c = &v["spec"]["containers"][0];
        assert_eq!(c["image"], "nginx:1.27");
        assert_eq!(c["args"], json!(["-g"]));
        assert!(c.get("command").is_none());
        assert_eq!(c["ports"][0], json!({ "containerPort": 8080, "name": "http", "protocol": "TCP" }));
        assert_eq!(c["resources"]["limits"], json!({ "memory": "128Mi", "cpu": "500m" }));
        assert_eq!(v["metadata"]["resourceVersion"], "7");
        assert_eq!(v["metadata"]["creationTimestamp"], "1970-01-01T00:00:00Z");
        assert_eq!(v["metadata"]["ownerReferences"][0]["kind"], "ReplicaSet");
        assert!(v["metadata"]["labels"]["pod-template-hash"].is_string());
    }
}
