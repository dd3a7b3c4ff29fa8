//! `podnet describe pod`: kubectl describe's view of one pod — what was
//! asked, its state with the reason and message, its conditions, and the
//! events its node recorded; and `podnet describe networkpolicy`.

use std::fmt::Write;
use std::path::Path;
use std::process::ExitCode;

use runtime::api::{Request, Response};
use runtime::model::policy::{NetworkPolicy, PolicyPeer, PolicyType};
use runtime::model::{Phase, Pod, PodEvent, ResourceList};

use crate::error::CliError;
use crate::table;

pub(crate) async fn run(socket: &Path, namespace: &str, name: &str) -> Result<ExitCode, CliError> {
    let Response::Pods(pods) =
        crate::call(socket, Request::GetPods { namespace: Some(namespace.into()) }).await?
    else {
        return Err(CliError::Message("the agent sent an unexpected answer".into()));
    };
    let pod = pods
        .into_iter()
        .find(|p| p.spec.name == name)
        .ok_or_else(|| format!("pod {namespace}/{name} not found"))?;
    // A node that is down cannot say what happened: describe without events.
    let request = Request::DescribePod { namespace: namespace.into(), name: name.into() };
    let events = match crate::call(socket, request).await {
        Ok(Response::PodEvents(events)) => Some(events),
        _ => None,
    };
    print!("{}", render(&pod, events.as_deref()));
    Ok(ExitCode::SUCCESS)
}

/// `podnet describe networkpolicy NAME`: kubectl describe's text.
pub(crate) async fn network_policy(socket: &Path, namespace: &str, name: &str) -> Result<ExitCode, CliError> {
    let request = Request::GetNetworkPolicies { namespace: Some(namespace.into()) };
    let Response::NetworkPolicies(list) = crate::call(socket, request).await? else {
        return Err(CliError::Unexpected);
    };
    let policy = list
        .into_iter()
        .find(|p| p.spec.name == name)
        .ok_or_else(|| format!("networkpolicy {namespace}/{name} not found"))?;
    print!("{}", render_policy(&policy));
    Ok(ExitCode::SUCCESS)
}

/// The text kubectl describe prints for a NetworkPolicy.
fn render_policy(p: &NetworkPolicy) -> String {
    let s = &p.spec;
    let mut out = String::new();
    let pairs = |m: Vec<(&String, &String)>| match m.is_empty() {
        true => "<none>".to_string(),
        false => m.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","),
    };
    let _ = writeln!(out, "Name:         {}", s.name);
    let _ = writeln!(out, "Namespace:    {}", s.namespace);
    let _ = writeln!(out, "Created on:   {}", runtime::kube::objects::timestamp(p.created_at));
    let _ = writeln!(out, "Labels:       {}", pairs(s.labels.iter().collect()));
    let _ = writeln!(out, "Annotations:  {}", pairs(s.annotations.iter().collect()));
    out.push_str("Spec:\n");
    let selector = match s.pod_selector.is_empty() {
        true => "<none> (Allowing the specific traffic to all pods in this namespace)".to_string(),
        false => s.pod_selector.to_string(),
    };
    let _ = writeln!(out, "  PodSelector:     {selector}");
    for (direction, rules, to_from, port_word) in [
        (PolicyType::Ingress, &s.ingress, "From", "To Port"),
        (PolicyType::Egress, &s.egress, "To", "To Port"),
    ] {
        let word = if direction == PolicyType::Ingress { "ingress" } else { "egress" };
        if !s.governs(direction) {
            let _ = writeln!(out, "  Not affecting {word} traffic");
            continue;
        }
        let _ = writeln!(out, "  Allowing {word} traffic:");
        if rules.is_empty() {
            let _ = writeln!(out, "    <none> (Selected pods are isolated for {word} connectivity)");
        }
        for (i, rule) in rules.iter().enumerate() {
            if i > 0 {
                out.push_str("    ----------\n");
            }
            if rule.ports.is_empty() {
                let _ = writeln!(out, "    {port_word}: <any> (traffic allowed to all ports)");
            }
            for port in &rule.ports {
                let number = match (&port.port, port.end_port) {
                    (None, _) => "<any>".to_string(),
                    (Some(p), Some(end)) => format!("{p}-{end}"),
                    (Some(p), None) => p.to_string(),
                };
                let _ = writeln!(out, "    {port_word}: {number}/{}", port.protocol);
            }
            if rule.peers.is_empty() {
                let what = if direction == PolicyType::Ingress { "source" } else { "destination" };
                let _ = writeln!(out, "    {to_from}: <any> (traffic not restricted by {what})");
                continue;
            }
            let _ = writeln!(out, "    {to_from}:");
            for peer in &rule.peers {
                match peer {
                    PolicyPeer::Pods { pod_selector, namespace_selector } => {
                        if let Some(ns) = namespace_selector {
                            let _ = writeln!(out, "      NamespaceSelector: {ns}");
                        }
                        if let Some(pods) = pod_selector {
                            let _ = writeln!(out, "      PodSelector: {pods}");
                        }
                    }
                    PolicyPeer::Block { cidr, except } => {
                        let _ = writeln!(out, "      IPBlock:");
                        let _ = writeln!(out, "        CIDR: {cidr}");
                        let except: Vec<String> = except.iter().map(ToString::to_string).collect();
                        let _ = writeln!(out, "        Except: {}", except.join(", "));
                    }
                }
            }
        }
    }
    let types: Vec<String> = s.policy_types.iter().map(ToString::to_string).collect();
    let _ = writeln!(out, "  Policy Types: {}", types.join(", "));
    out
}

/// The text kubectl describe prints, for `pod` and its node's `events`.
fn render(pod: &Pod, events: Option<&[PodEvent]>) -> String {
    let (spec, status) = (&pod.spec, &pod.status);
    let mut out = String::new();
    let labels: Vec<String> = spec.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let field = |out: &mut String, name: &str, value: &str| {
        let _ = writeln!(out, "{:<14}{value}", format!("{name}:"));
    };
    field(&mut out, "Name", &spec.name);
    field(&mut out, "Namespace", &spec.namespace);
    field(&mut out, "Node", &pod.node_name);
    field(&mut out, "Labels", &if labels.is_empty() { "<none>".into() } else { labels.join(",") });
    field(&mut out, "Status", &format!("{:?}", status.phase));
    field(&mut out, "IP", &status.pod_ip.map_or("<none>".into(), |ip| ip.to_string()));
    if let Some(owner) = &spec.owner {
        field(&mut out, "Controlled By", &format!("Deployment/{owner}"));
    }
    out.push_str("Containers:\n");
    let _ = writeln!(out, "  {}:", spec.name);
    let item = |out: &mut String, name: &str, value: &str| {
        let _ = writeln!(out, "    {:<20}{value}", format!("{name}:"));
    };
    match &spec.template.image {
        Some(image) => {
            item(&mut out, "Image", &image.image);
            item(&mut out, "Image Pull Policy", &image.pull_policy.to_string());
            if !image.command.is_empty() {
                item(&mut out, "Command", &image.command.join(" "));
            }
            if !image.args.is_empty() {
                item(&mut out, "Args", &image.args.join(" "));
            }
        }
        None => item(&mut out, "Command", &spec.template.command.join(" ")),
    }
    let (state, reason) = match (status.phase, status.ready || status.started_at.is_some()) {
        (Phase::Succeeded | Phase::Failed, _) => ("Terminated", status.reason.clone()),
        (Phase::Running, true) if status.reason.is_none() => ("Running", None),
        _ => ("Waiting", status.reason.clone().or(Some("ContainerCreating".into()))),
    };
    item(&mut out, "State", state);
    if let Some(reason) = reason {
        let _ = writeln!(out, "      {:<18}{reason}", "Reason:");
    }
    if let Some(message) = &status.message {
        let _ = writeln!(out, "      {:<18}{message}", "Message:");
    }
    if let Some(code) = status.last_exit_code {
        item(&mut out, "Last Exit Code", &code.to_string());
    }
    item(&mut out, "Ready", if status.ready { "True" } else { "False" });
    item(&mut out, "Restart Count", &status.restarts.to_string());
    for (name, list) in
        [("Limits", &spec.template.resources.limits), ("Requests", &spec.template.resources.requests)]
    {
        if let Some(text) = resource_text(list) {
            item(&mut out, name, &text);
        }
    }
    out.push_str("Conditions:\n  Type              Status\n");
    let running = status.phase == Phase::Running && status.reason.is_none();
    for (kind, ok) in [
        ("Initialized", true),
        ("Ready", status.ready),
        ("ContainersReady", status.ready),
        ("PodScheduled", !pod.node_name.is_empty()),
        ("ContainersStarted", running),
    ] {
        let _ = writeln!(out, "  {kind:<18}{}", if ok { "True" } else { "False" });
    }
    match events {
        None => out.push_str("Events:         <unknown: the pod's node did not answer>\n"),
        Some([]) => out.push_str("Events:         <none>\n"),
        Some(events) => {
            out.push_str("Events:\n");
            let rows: Vec<Vec<String>> = events
                .iter()
                .map(|e| {
                    let age = if e.count > 1 {
                        format!("{} (x{})", table::age(e.at), e.count)
                    } else {
                        table::age(e.at)
                    };
                    let kind = if e.warning { "Warning" } else { "Normal" };
                    vec![kind.into(), e.reason.clone(), age, "podnet".into(), e.message.clone()]
                })
                .collect();
            for line in table::render(&["Type", "Reason", "Age", "From", "Message"], &rows).lines() {
                let _ = writeln!(out, "  {line}");
            }
        }
    }
    out
}

/// `memory=128Mi,cpu=500m` as kubectl describe lists it.
fn resource_text(list: &ResourceList) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(cpu) = list.cpu_millis {
        parts.push(format!("cpu: {cpu}m"));
    }
    if let Some(memory) = list.memory {
        parts.push(match memory % (1 << 20) {
            0 => format!("memory: {}Mi", memory >> 20),
            _ => format!("memory: {memory}"),
        });
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtime::model::{ImageSpec, PodSpec, PodStatus, PullPolicy};

    fn pod() -> Pod {
        Pod {
            uid: "u".into(),
            created_at: 0,
            node_name: "pi1".into(),
            spec: PodSpec {
                name: "web".into(),
                namespace: "default".into(),
                labels: [("app".to_string(), "web".to_string())].into(),
                template: runtime::model::PodTemplate {
                    command: vec![],
                    ports: vec![],
                    readiness: None,
                    host_ports: vec![],
                    security: Default::default(),
                    image: Some(ImageSpec {
                        image: "nginx".into(),
                        pull_policy: PullPolicy::Always,
                        command: vec![],
                        args: vec![],
                        env: vec![],
                        env_refs: vec![],
                        env_error: None,
                        volumes: Vec::new(),
                        mounts: Vec::new(),
                        files: Vec::new(),
                        stdin_once: false,
                        stdin: Default::default(),
                    }),
                    resources: Default::default(),
                    container: None,
                },
                restart_policy: Default::default(),
                owner: None,
                node_name: None,
                annotations: Default::default(),
                attachment: None,
            },
            status: PodStatus {
                phase: Phase::Pending,
                pod_ip: Some([10, 244, 0, 5].into()),
                ready: false,
                restarts: 0,
                reason: Some("ImagePullBackOff".into()),
                last_exit_code: None,
                started_at: None,
                message: Some("registry down".into()),
            },
        }
    }

    #[test]
    fn a_waiting_pod_shows_its_reason_message_and_events() {
        let events = [PodEvent {
            at: 0,
            warning: true,
            reason: "Failed".into(),
            message: "Failed to pull image: registry down".into(),
            count: 3,
        }];
        let text = render(&pod(), Some(&events));
        assert!(text.contains("Image:              nginx\n"), "{text}");
        assert!(text.contains("State:              Waiting\n"), "{text}");
        assert!(text.contains("Reason:           ImagePullBackOff\n"), "{text}");
        assert!(text.contains("Message:          registry down\n"), "{text}");
        assert!(text.contains("Warning   Failed"), "{text}");
        assert!(text.contains("(x3)"), "{text}");
        assert!(render(&pod(), None).contains("did not answer"));
    }

    #[test]
    fn resources_read_as_kubectl_lists_them() {
        let list = ResourceList { memory: Some(128 << 20), cpu_millis: Some(500) };
        assert_eq!(resource_text(&list).as_deref(), Some("cpu: 500m, memory: 128Mi"));
        assert_eq!(resource_text(&ResourceList::default()), None);
    }
}
