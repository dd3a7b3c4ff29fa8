//! kubectl-style tables: upper-case headers, columns padded by three spaces.

use std::time::{SystemTime, UNIX_EPOCH};

use runtime::model::{Deployment, Endpoints, NodeInfo, Phase, Pod, Service};

/// Renders rows under headers with kubectl's spacing.
pub(crate) fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}   "));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out += &line(row.iter().map(String::as_str).collect());
    }
    out
}

/// kubectl's AGE: the largest unit, e.g. 42s, 5m, 3h, 2d.
pub(crate) fn age(unix: u64) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let secs = now.saturating_sub(unix);
    match secs {
        0..120 => format!("{secs}s"),
        120..7200 => format!("{}m", secs / 60),
        7200..172_800 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

/// The STATUS column: the waiting or terminated reason, else the phase.
pub(crate) fn pod_status(pod: &Pod) -> String {
    match (&pod.status.reason, pod.status.phase) {
        (Some(reason), _) => reason.clone(),
        (None, Phase::Pending) => "ContainerCreating".into(),
        (None, phase) => format!("{phase:?}"),
    }
}

/// `get pods`.
pub(crate) fn pods(pods: &[Pod], wide: bool, all_namespaces: bool) -> String {
    let mut headers = vec!["NAME", "READY", "STATUS", "RESTARTS", "AGE"];
    if wide {
        // RUNTIME is podnet's: who runs the pod's process (podnet, or the
        // runtime that called podnet as its CNI plugin).
        headers.extend(["IP", "NODE", "NOMINATED NODE", "READINESS GATES", "RUNTIME"]);
    }
    if all_namespaces {
        headers.insert(0, "NAMESPACE");
    }
    let rows: Vec<Vec<String>> = pods
        .iter()
        .map(|p| {
            let mut row = vec![
                p.spec.name.clone(),
                format!("{}/1", p.status.ready as u8),
                pod_status(p),
                p.status.restarts.to_string(),
                age(p.created_at),
            ];
            if wide {
                let ip = p.status.pod_ip.map_or("<none>".into(), |ip| ip.to_string());
                let runtime = match &p.spec.attachment {
                    Some(_) => "cni",
                    None => "podnet",
                };
                row.extend([ip, p.node_name.clone(), "<none>".into(), "<none>".into(), runtime.into()]);
            }
            if all_namespaces {
                row.insert(0, p.spec.namespace.clone());
            }
            row
        })
        .collect();
    render(&headers, &rows)
}

/// `get deployments`.
pub(crate) fn deployments(list: &[Deployment], wide: bool, all_namespaces: bool) -> String {
    let mut headers = vec!["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"];
    if wide {
        headers.extend(["COMMAND", "SELECTOR"]);
    }
    if all_namespaces {
        headers.insert(0, "NAMESPACE");
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|d| {
            let mut row = vec![
                d.spec.name.clone(),
                format!("{}/{}", d.ready_replicas, d.spec.replicas),
                d.replicas.to_string(),
                d.ready_replicas.to_string(),
                age(d.created_at),
            ];
            if wide {
                let selector = d.spec.labels.get("app").map_or(String::new(), |app| format!("app={app}"));
                row.extend([d.spec.template.command.join(" "), selector]);
            }
            if all_namespaces {
                row.insert(0, d.spec.namespace.clone());
            }
            row
        })
        .collect();
    render(&headers, &rows)
}

/// `get nodes`.
pub(crate) fn nodes(list: &[NodeInfo], wide: bool) -> String {
    let mut headers = vec!["NAME", "STATUS", "ROLES", "AGE", "VERSION"];
    if wide {
        headers.extend(["INTERNAL-IP", "POD-CIDR", "PODS"]);
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|n| {
            let mut row = vec![
                n.name.clone(),
                if n.ready { "Ready" } else { "NotReady" }.into(),
                n.roles.clone(),
                age(n.started_at),
                format!("v{}", n.version),
            ];
            if wide {
                let ip = n.internal_ip.map_or("<none>".into(), |ip| ip.to_string());
                row.extend([ip, n.pod_cidr.clone(), n.pods.to_string()]);
            }
            row
        })
        .collect();
    render(&headers, &rows)
}

/// `get services`.
pub(crate) fn services(list: &[Service], wide: bool, all_namespaces: bool) -> String {
    let mut headers = vec!["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"];
    if wide {
        headers.push("SELECTOR");
    }
    if all_namespaces {
        headers.insert(0, "NAMESPACE");
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|s| {
            let ports: Vec<String> = s
                .spec
                .ports
                .iter()
                .map(|p| match p.node_port {
                    Some(n) => format!("{}:{n}/{}", p.port, p.protocol),
                    None => format!("{}/{}", p.port, p.protocol),
                })
                .collect();
            let (kind, cluster_ip, external) = match &s.spec.external_name {
                Some(target) => ("ExternalName".to_string(), "<none>".to_string(), target.clone()),
                None => (
                    s.spec.service_type.to_string(),
                    s.cluster_ip.map_or("None".into(), |ip| ip.to_string()),
                    external_ip(s),
                ),
            };
            let mut row = vec![
                s.spec.name.clone(),
                kind,
                cluster_ip,
                external,
                if ports.is_empty() { "<none>".into() } else { ports.join(",") },
                age(s.created_at),
            ];
            if wide {
                let selector: Vec<String> = s.spec.selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
                row.push(selector.join(","));
            }
            if all_namespaces {
                row.insert(0, s.spec.namespace.clone());
            }
            row
        })
        .collect();
    render(&headers, &rows)
}

/// `get networkpolicies`: NAME, POD-SELECTOR, AGE as kubectl prints them.
pub(crate) fn network_policies(
    list: &[runtime::model::policy::NetworkPolicy],
    all_namespaces: bool,
) -> String {
    let mut headers = vec!["NAME", "POD-SELECTOR", "AGE"];
    if all_namespaces {
        headers.insert(0, "NAMESPACE");
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|p| {
            let mut row = vec![p.spec.name.clone(), p.spec.pod_selector.to_string(), age(p.created_at)];
            if all_namespaces {
                row.insert(0, p.spec.namespace.clone());
            }
            row
        })
        .collect();
    render(&headers, &rows)
}

/// EXTERNAL-IP: a LoadBalancer's node addresses, or why it has none.
pub(crate) fn external_ip(s: &Service) -> String {
    match &s.load_balancer {
        Some(lb) => match (&lb.problem, lb.ingress.is_empty()) {
            (Some(problem), _) => format!("<pending: {problem}>"),
            (None, true) => "<pending>".into(),
            (None, false) => lb.ingress.iter().map(|ip| ip.to_string()).collect::<Vec<_>>().join(","),
        },
        None => "<none>".into(),
    }
}

/// `get endpoints`: up to three addresses, then "+ N more...", as kubectl;
/// a Service without endpoints says why.
pub(crate) fn endpoints(list: &[Endpoints], all_namespaces: bool) -> String {
    let mut headers = vec!["NAME", "ENDPOINTS", "AGE"];
    if all_namespaces {
        headers.insert(0, "NAMESPACE");
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|e| {
            let all: Vec<String> = e
                .subsets
                .iter()
                .flat_map(|(a, ports)| ports.iter().map(move |p| format!("{}:{}", a.ip, p.port)))
                .collect();
            let mut cell = all.iter().take(3).cloned().collect::<Vec<_>>().join(",");
            if all.len() > 3 {
                cell += &format!(" + {} more...", all.len() - 3);
            }
            if all.is_empty() {
                cell = "<none>".into();
            }
            if !e.problems.is_empty() {
                cell += &format!(" ({})", e.problems.join("; "));
            }
            let mut row = vec![e.name.clone(), cell, age(e.created_at)];
            if all_namespaces {
                row.insert(0, e.namespace.clone());
            }
            row
        })
        .collect();
    render(&headers, &rows)
}

/// `node stats`.
pub(crate) fn stats(report: &runtime::api::StatsReport) -> String {
    let rows: Vec<Vec<String>> = report
        .ports
        .iter()
        .map(|p| {
            let drops = p.drops.iter().map(|(r, n)| format!("{r}={n}")).collect::<Vec<_>>().join(",");
            vec![
                p.port.clone(),
                p.ip.to_string(),
                p.rx_packets.to_string(),
                p.rx_bytes.to_string(),
                p.tx_packets.to_string(),
                p.tx_bytes.to_string(),
                p.tx_errors.to_string(),
                if drops.is_empty() { "-".into() } else { drops },
            ]
        })
        .collect();
    let line =
        |pairs: &[(String, u64)]| pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ");
    let mut out = render(
        &["PORT", "IP", "RX-PACKETS", "RX-BYTES", "TX-PACKETS", "TX-BYTES", "TX-ERRORS", "DROPS"],
        &rows,
    ) + &format!(
        "\nDNS:    {}\nFLOWS:  {}\nIMAGES: {}\n",
        line(&report.dns),
        line(&report.flows),
        line(&report.images)
    );
    // Connections each listener holds, and what it refused or closed.
    let listeners: Vec<Vec<String>> = report
        .listeners
        .iter()
        .map(|l| {
            let counts = line(&l.counts);
            vec![l.listener.clone(), l.open.to_string(), if counts.is_empty() { "-".into() } else { counts }]
        })
        .collect();
    out += "\n";
    out += &render(&["LISTENER", "OPEN", "REFUSED/CLOSED"], &listeners);
    // Each data-plane thread's share of the frames, and what it passed on.
    let threads: Vec<Vec<String>> = report
        .threads
        .iter()
        .enumerate()
        .map(|(i, t)| {
            [i as u64, t.frames, t.handed_off, t.handoff_full, t.redirect_full]
                .map(|n| n.to_string())
                .to_vec()
        })
        .collect();
    out += "\n";
    out += &render(&["THREAD", "FRAMES", "HANDED-OFF", "HANDOFF-FULL", "REDIRECT-FULL"], &threads);
    out += &format!(
        "\nINGRESS: {}\n",
        line(&report.ingress.iter().filter(|(k, _)| !k.contains(' ')).cloned().collect::<Vec<_>>())
    );
    let rules: Vec<Vec<String>> = report
        .ingress
        .iter()
        .filter_map(|(k, v)| {
            k.rsplit_once(' ').map(|(rule, class)| vec![rule.to_string(), class.to_string(), v.to_string()])
        })
        .collect();
    if !rules.is_empty() {
        out += &render(&["INGRESS RULE", "STATUS", "REQUESTS"], &rules);
    }
    if !report.kubernetes.is_empty() {
        out += &format!("KUBERNETES: {}\n", line(&report.kubernetes));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_padded_like_kubectl() {
        let out = render(&["NAME", "READY"], &[vec!["web-abcde".into(), "1/1".into()]]);
        assert_eq!(out, "NAME        READY\nweb-abcde   1/1\n");
    }
}
