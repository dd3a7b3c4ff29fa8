//! Server-side printing: the `Table` (meta.k8s.io/v1) kubectl asks for with
//! `as=Table`, with kubectl's columns for each kind (priority 1 columns are
//! the `-o wide` ones). Without it kubectl prints only NAME and AGE.

use serde_json::{Value, json};

/// What each row carries besides its cells (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Include {
    /// No object.
    None,
    /// The object's metadata (the default): kubectl's NAMESPACE column and
    /// `--show-labels` come from it.
    Metadata,
    /// The whole object (`--sort-by`).
    Object,
}

impl Include {
    /// From the `includeObject` query parameter.
    pub fn from_query(value: Option<&str>) -> Include {
        match value {
            Some("None") => Include::None,
            Some("Object") => Include::Object,
            _ => Include::Metadata,
        }
    }
}

/// How long ago, as Kubernetes prints ages (`45s`, `3m12s`, `5h`, `2d3h`).
pub fn human_duration(secs: u64) -> String {
    let (m, h, d) = (secs / 60, secs / 3600, secs / 86_400);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 600 => match s % 60 {
            0 => format!("{m}m"),
            r => format!("{m}m{r}s"),
        },
        s if s < 3 * 3600 => format!("{m}m"),
        s if s < 8 * 3600 => match m % 60 {
            0 => format!("{h}h"),
            r => format!("{h}h{r}m"),
        },
        s if s < 48 * 3600 => format!("{h}h"),
        s if s < 8 * 86_400 => match h % 24 {
            0 => format!("{d}d"),
            r => format!("{d}d{r}h"),
        },
        s if s < 2 * 365 * 86_400 => format!("{d}d"),
        s if s < 8 * 365 * 86_400 => match d % 365 {
            0 => format!("{}y", d / 365),
            r => format!("{}y{r}d", d / 365),
        },
        _ => format!("{}y", d / 365),
    }
}

fn age(object: &Value, now: u64) -> String {
    let Some(created) = object["metadata"]["creationTimestamp"].as_str() else { return "<unknown>".into() };
    match humantime::parse_rfc3339(created) {
        Ok(t) => {
            let created = t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
            human_duration(now.saturating_sub(created))
        }
        Err(_) => "<unknown>".into(),
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) if !s.is_empty() => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => "<none>".into(),
    }
}

/// Up to three of `items` and how many more, as kubectl's printers show
/// endpoints (`none` when there are none).
fn first_three(items: &[String], none: &str) -> String {
    match items.len() {
        0 => none.to_string(),
        n if n > 3 => format!("{} + {} more...", items[..3].join(","), n - 3),
        _ => items.join(","),
    }
}

fn join_labels(v: &Value) -> String {
    match v.as_object() {
        Some(map) if !map.is_empty() => {
            map.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect::<Vec<_>>().join(",")
        }
        _ => "<none>".into(),
    }
}

/// A label selector as kubectl prints one: `app=db,tier in (a,b)`, or
/// `<none>` when it selects everything.
fn selector(s: &Value) -> String {
    let mut parts: Vec<String> = s["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    for e in s["matchExpressions"].as_array().into_iter().flatten() {
        let key = text(&e["key"]);
        let values: Vec<String> = e["values"].as_array().into_iter().flatten().map(text).collect();
        parts.push(match e["operator"].as_str() {
            Some("In") => format!("{key} in ({})", values.join(",")),
            Some("NotIn") => format!("{key} notin ({})", values.join(",")),
            Some("DoesNotExist") => format!("!{key}"),
            _ => key,
        });
    }
    if parts.is_empty() { "<none>".into() } else { parts.join(",") }
}

/// Column name, type and priority (1: `-o wide` only).
type Column = (&'static str, &'static str, u8);

fn columns(kind: &str) -> &'static [Column] {
    match kind {
        "Pod" => &[
            ("Name", "string", 0),
            ("Ready", "string", 0),
            ("Status", "string", 0),
            ("Restarts", "string", 0),
            ("Age", "string", 0),
            ("IP", "string", 1),
            ("Node", "string", 1),
            ("Nominated Node", "string", 1),
            ("Readiness Gates", "string", 1),
        ],
        "Deployment" => &[
            ("Name", "string", 0),
            ("Ready", "string", 0),
            ("Up-to-date", "integer", 0),
            ("Available", "integer", 0),
            ("Age", "string", 0),
            ("Containers", "string", 1),
            ("Images", "string", 1),
            ("Selector", "string", 1),
        ],
        "Service" => &[
            ("Name", "string", 0),
            ("Type", "string", 0),
            ("Cluster-IP", "string", 0),
            ("External-IP", "string", 0),
            ("Port(s)", "string", 0),
            ("Age", "string", 0),
            ("Selector", "string", 1),
        ],
        "Endpoints" => &[("Name", "string", 0), ("Endpoints", "string", 0), ("Age", "string", 0)],
        "EndpointSlice" => &[
            ("Name", "string", 0),
            ("AddressType", "string", 0),
            ("Ports", "string", 0),
            ("Endpoints", "string", 0),
            ("Age", "string", 0),
        ],
        "NetworkPolicy" => &[("Name", "string", 0), ("Pod-Selector", "string", 0), ("Age", "string", 0)],
        "Node" => &[
            ("Name", "string", 0),
            ("Status", "string", 0),
            ("Roles", "string", 0),
            ("Age", "string", 0),
            ("Version", "string", 0),
            ("Internal-IP", "string", 1),
            ("External-IP", "string", 1),
            ("OS-Image", "string", 1),
            ("Kernel-Version", "string", 1),
            ("Container-Runtime", "string", 1),
        ],
        "ReplicaSet" => &[
            ("Name", "string", 0),
            ("Desired", "integer", 0),
            ("Current", "integer", 0),
            ("Ready", "integer", 0),
            ("Age", "string", 0),
            ("Containers", "string", 1),
            ("Images", "string", 1),
            ("Selector", "string", 1),
        ],
        "Event" => &[
            ("Last Seen", "string", 0),
            ("Type", "string", 0),
            ("Reason", "string", 0),
            ("Object", "string", 0),
            ("Subobject", "string", 1),
            ("Source", "string", 1),
            ("Message", "string", 0),
            ("First Seen", "string", 1),
            ("Count", "string", 1),
            ("Name", "string", 1),
        ],
        "Ingress" => &[
            ("Name", "string", 0),
            ("Class", "string", 0),
            ("Hosts", "string", 0),
            ("Address", "string", 0),
            ("Ports", "string", 0),
            ("Age", "string", 0),
        ],
        "ConfigMap" => &[("Name", "string", 0), ("Data", "integer", 0), ("Age", "string", 0)],
        "Secret" => {
            &[("Name", "string", 0), ("Type", "string", 0), ("Data", "integer", 0), ("Age", "string", 0)]
        }
        "IngressClass" => &[
            ("Name", "string", 0),
            ("Controller", "string", 0),
            ("Parameters", "string", 0),
            ("Age", "string", 0),
        ],
        _ => &[("Name", "string", 0), ("Status", "string", 0), ("Age", "string", 0)],
    }
}

fn pod_status(o: &Value) -> String {
    let state = &o["status"]["containerStatuses"][0]["state"];
    let reason = state["waiting"]["reason"].as_str().or(state["terminated"]["reason"].as_str());
    match (state.get("running"), reason) {
        (Some(_), _) => "Running".into(),
        (None, Some(r)) if !r.is_empty() => r.into(),
        _ => text(&o["status"]["phase"]),
    }
}

fn cells(kind: &str, o: &Value, now: u64) -> Vec<Value> {
    let name = json!(o["metadata"]["name"]);
    let age = json!(age(o, now));
    match kind {
        "Pod" => {
            let ready = o["status"]["containerStatuses"][0]["ready"].as_bool() == Some(true);
            vec![
                name,
                json!(if ready { "1/1" } else { "0/1" }),
                json!(pod_status(o)),
                json!(o["status"]["containerStatuses"][0]["restartCount"].as_u64().unwrap_or(0).to_string()),
                age,
                json!(text(&o["status"]["podIP"])),
                json!(text(&o["spec"]["nodeName"])),
                json!("<none>"),
                json!("<none>"),
            ]
        }
        "Deployment" => {
            let c = &o["spec"]["template"]["spec"]["containers"][0];
            let n = |v: &Value| v.as_u64().unwrap_or(0);
            vec![
                name,
                json!(format!("{}/{}", n(&o["status"]["readyReplicas"]), n(&o["spec"]["replicas"]))),
                json!(n(&o["status"]["updatedReplicas"])),
                json!(n(&o["status"]["availableReplicas"])),
                age,
                json!(text(&c["name"])),
                json!(text(&c["image"])),
                json!(join_labels(&o["spec"]["selector"]["matchLabels"])),
            ]
        }
        "Service" => {
            let spec = &o["spec"];
            let external = if spec["type"] == "ExternalName" {
                text(&spec["externalName"])
            } else {
                let ips: Vec<String> = o["status"]["loadBalancer"]["ingress"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|i| text(&i["ip"]))
                    .collect();
                match (ips.is_empty(), spec["type"].as_str()) {
                    (false, _) => ips.join(","),
                    (true, Some("LoadBalancer")) => "<pending>".into(),
                    _ => "<none>".into(),
                }
            };
            let ports: Vec<String> = spec["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| match p["nodePort"].as_u64() {
                    Some(np) => format!("{}:{np}/{}", p["port"], text(&p["protocol"])),
                    None => format!("{}/{}", p["port"], text(&p["protocol"])),
                })
                .collect();
            vec![
                name,
                json!(text(&spec["type"])),
                json!(text(&spec["clusterIP"])),
                json!(external),
                json!(if ports.is_empty() { "<none>".into() } else { ports.join(",") }),
                age,
                json!(join_labels(&spec["selector"])),
            ]
        }
        "NetworkPolicy" => vec![name, json!(selector(&o["spec"]["podSelector"])), age],
        "ReplicaSet" => {
            let c = &o["spec"]["template"]["spec"]["containers"][0];
            let n = |v: &Value| v.as_u64().unwrap_or(0);
            vec![
                name,
                json!(n(&o["spec"]["replicas"])),
                json!(n(&o["status"]["replicas"])),
                json!(n(&o["status"]["readyReplicas"])),
                age,
                json!(text(&c["name"])),
                json!(text(&c["image"])),
                json!(join_labels(&o["spec"]["selector"]["matchLabels"])),
            ]
        }
        "Event" => {
            let since = |field: &str| {
                let at = o[field].as_str().and_then(|t| humantime::parse_rfc3339(t).ok());
                at.and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or("<unknown>".into(), |t| human_duration(now.saturating_sub(t.as_secs())))
            };
            let involved = &o["involvedObject"];
            vec![
                json!(since("lastTimestamp")),
                json!(text(&o["type"])),
                json!(text(&o["reason"])),
                json!(format!("{}/{}", text(&involved["kind"]).to_lowercase(), text(&involved["name"]))),
                json!(text(&involved["fieldPath"]).replace("<none>", "")),
                json!(text(&o["source"]["component"])),
                json!(text(&o["message"])),
                json!(since("firstTimestamp")),
                json!(o["count"].as_u64().unwrap_or(1).to_string()),
                name,
            ]
        }
        "Endpoints" => {
            let mut eps = Vec::new();
            for subset in o["subsets"].as_array().into_iter().flatten() {
                for a in subset["addresses"].as_array().into_iter().flatten() {
                    match subset["ports"].as_array().filter(|p| !p.is_empty()) {
                        Some(ports) => {
                            eps.extend(ports.iter().map(|p| format!("{}:{}", text(&a["ip"]), p["port"])))
                        }
                        None => eps.push(text(&a["ip"])),
                    }
                }
            }
            vec![name, json!(first_three(&eps, "<none>")), age]
        }
        "EndpointSlice" => {
            let ports: Vec<String> =
                o["ports"].as_array().into_iter().flatten().map(|p| p["port"].to_string()).collect();
            let addresses: Vec<String> = o["endpoints"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|e| e["addresses"].as_array().into_iter().flatten().map(text))
                .collect();
            vec![
                name,
                json!(text(&o["addressType"])),
                json!(if ports.is_empty() { "<unset>".into() } else { ports.join(",") }),
                json!(first_three(&addresses, "<unset>")),
                age,
            ]
        }
        "Node" => {
            let ready = o["status"]["conditions"][0]["status"] == "True";
            let roles: Vec<&str> = o["metadata"]["labels"]
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(k, _)| k.strip_prefix("node-role.kubernetes.io/"))
                .collect();
            let info = &o["status"]["nodeInfo"];
            vec![
                name,
                json!(if ready { "Ready" } else { "NotReady" }),
                json!(if roles.is_empty() { "<none>".into() } else { roles.join(",") }),
                age,
                json!(text(&info["kubeletVersion"])),
                json!(text(&o["status"]["addresses"][0]["address"])),
                json!("<none>"),
                json!(if info["osImage"].as_str().is_some_and(|s| !s.is_empty()) {
                    text(&info["osImage"])
                } else {
                    "<unknown>".into()
                }),
                json!(text(&info["kernelVersion"])),
                json!(text(&info["containerRuntimeVersion"])),
            ]
        }
        "Ingress" => {
            let spec = &o["spec"];
            let mut hosts: Vec<&str> = Vec::new();
            for h in spec["rules"].as_array().into_iter().flatten().filter_map(|r| r["host"].as_str()) {
                if !hosts.contains(&h) {
                    hosts.push(h);
                }
            }
            let address: Vec<&str> = o["status"]["loadBalancer"]["ingress"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|i| i["ip"].as_str())
                .collect();
            let tls = spec["tls"].as_array().is_some_and(|t| !t.is_empty());
            vec![
                name,
                json!(spec["ingressClassName"].as_str().unwrap_or("<none>")),
                json!(if hosts.is_empty() { "*".to_string() } else { hosts.join(",") }),
                json!(address.join(",")),
                json!(if tls { "80, 443" } else { "80" }),
                age,
            ]
        }
        "Secret" => {
            vec![name, json!(text(&o["type"])), json!(o["data"].as_object().map_or(0, |d| d.len())), age]
        }
        "ConfigMap" => {
            let count = |field: &str| o[field].as_object().map_or(0, |d| d.len());
            vec![name, json!(count("data") + count("binaryData")), age]
        }
        "IngressClass" => vec![name, json!(text(&o["spec"]["controller"])), json!("<none>"), age],
        _ => vec![name, json!(text(&o["status"]["phase"])), age],
    }
}

/// A Table of `objects` of `kind`, as of Unix time `now`.
pub fn table(kind: &str, objects: &[Value], include: Include, now: u64, rv: u64) -> Value {
    let rows: Vec<Value> = objects.iter().map(|o| row(kind, o, include, now)).collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": { "resourceVersion": rv.to_string() },
        "columnDefinitions": definitions(kind),
        "rows": rows,
    })
}

/// The column definitions of a Table of `kind`.
pub fn definitions(kind: &str) -> Vec<Value> {
    columns(kind)
        .iter()
        .map(|(name, ty, priority)| {
            let format = if *name == "Name" { "name" } else { "" };
            json!({ "name": name, "type": ty, "format": format, "description": "", "priority": priority })
        })
        .collect()
}

/// One row of a Table of `kind`: the object's cells and what `include` asks.
pub fn row(kind: &str, o: &Value, include: Include, now: u64) -> Value {
    let mut row = json!({ "cells": cells(kind, o, now) });
    match include {
        Include::None => {}
        Include::Metadata => {
            row["object"] = json!({ "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"] })
        }
        Include::Object => row["object"] = o.clone(),
    }
    row
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_network_policy_row_shows_its_pod_selector() {
        let policy = json!({ "metadata": { "name": "db-only", "creationTimestamp": "2026-01-01T00:00:00Z" },
            "spec": { "podSelector": { "matchLabels": { "app": "db" },
                "matchExpressions": [{ "key": "tier", "operator": "NotIn", "values": ["a", "b"] }] } } });
        let t = table(
            "NetworkPolicy",
            &[policy, json!({ "metadata": { "name": "all" }, "spec": { "podSelector": {} } })],
            Include::None,
            0,
            1,
        );
        assert_eq!(t["columnDefinitions"][1]["name"], "Pod-Selector");
        assert_eq!(t["rows"][0]["cells"][1], "app=db,tier notin (a,b)");
        assert_eq!(t["rows"][1]["cells"][1], "<none>");
    }

    #[test]
    fn ages_read_as_kubectl_prints_them() {
        for (secs, shown) in [
            (5, "5s"),
            (119, "119s"),
            (192, "3m12s"),
            (600, "10m"),
            (4 * 3600 + 60, "4h1m"),
            (30 * 3600, "30h"),
            (50 * 3600, "2d2h"),
            (40 * 86_400, "40d"),
        ] {
            assert_eq!(human_duration(secs), shown, "{secs}");
        }
    }

    #[test]
    fn a_pod_row_has_kubectls_columns_and_wide_ones_at_priority_1() {
        let pod = json!({
            "metadata": { "name": "web-1", "namespace": "default", "creationTimestamp": "1970-01-01T00:00:00Z" },
            "spec": { "nodeName": "pi1" },
            "status": { "phase": "Running", "podIP": "10.244.0.5", "containerStatuses": [{ "ready": true, "restartCount": 2, "state": { "running": {} } }] }
        });
        let t = table("Pod", &[pod], Include::Metadata, 65, 3);
        assert_eq!(
            t["rows"][0]["cells"],
            json!(["web-1", "1/1", "Running", "2", "65s", "10.244.0.5", "pi1", "<none>", "<none>"])
        );
        assert_eq!(t["columnDefinitions"][5]["name"], "IP");
        assert_eq!(t["columnDefinitions"][5]["priority"], 1);
        assert_eq!(t["rows"][0]["object"]["metadata"]["namespace"], "default");
    }

    #[test]
    fn a_service_row_shows_node_ports_and_selector() {
        let svc = json!({
            "metadata": { "name": "web" },
            "spec": { "type": "NodePort", "clusterIP": "10.43.0.10", "selector": { "app": "web" }, "ports": [{ "port": 80, "nodePort": 30080, "protocol": "TCP" }] },
            "status": { "loadBalancer": {} }
        });
        let t = table("Service", &[svc], Include::None, 0, 1);
        assert_eq!(t["rows"][0]["cells"][3], "<none>");
        assert_eq!(t["rows"][0]["cells"][4], "80:30080/TCP");
        assert_eq!(t["rows"][0]["cells"][6], "app=web");
        assert!(t["rows"][0].get("object").is_none());
    }
}
