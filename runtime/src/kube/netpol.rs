//! networking.k8s.io/v1 NetworkPolicy in the API's shape: decoded from
//! what clients send (kubectl apply, `podnet apply -f`) into a
//! [`NetworkPolicySpec`], and rendered back as Kubernetes shows one.
//! Refusals name the field, as the API server's validation does.

use serde_json::{Map, Value, json};

use super::decode::{self, Ctx, annotations, labels};
use super::status::Status;
use crate::model::policy::{
    LabelSelector, NetworkPolicy, NetworkPolicySpec, PolicyPeer, PolicyPort, PolicyRule, PolicyType,
    SelectorRequirement, parse_block,
};
use crate::model::{Protocol, TargetPort};

const KIND: &str = "NetworkPolicy";
/// The API version NetworkPolicies are served and read in.
pub const API_VERSION: &str = "networking.k8s.io/v1";

/// What a NetworkPolicy's fields take (beside decode's labels and annotations).
impl Ctx<'_> {
    fn array<'v>(&self, value: &'v Value, field: &str) -> Result<&'v [Value], Status> {
        match value {
            Value::Null => Ok(&[]),
            Value::Array(items) => Ok(items),
            _ => Err(self.invalid(field, "must be a list")),
        }
    }

    fn selector(&self, value: &Value, field: &str) -> Result<LabelSelector, Status> {
        if !value.is_object() {
            return Err(self.invalid(field, "must be a label selector (matchLabels, matchExpressions)"));
        }
        let match_labels = labels(self, &value["matchLabels"], &format!("{field}.matchLabels"))?;
        let mut match_expressions = Vec::new();
        let at = format!("{field}.matchExpressions");
        for (i, e) in self.array(&value["matchExpressions"], &at)?.iter().enumerate() {
            let at = format!("{at}[{i}]");
            let key =
                e["key"].as_str().ok_or_else(|| self.invalid(&format!("{at}.key"), "Required value"))?;
            let operator = e["operator"]
                .as_str()
                .ok_or_else(|| self.invalid(&format!("{at}.operator"), "Required value"))?
                .parse()
                .map_err(|e: crate::model::policy::PolicyError| {
                    self.invalid(&format!("{at}.operator"), e.to_string())
                })?;
            let values = self
                .array(&e["values"], &format!("{at}.values"))?
                .iter()
                .map(|v| {
                    v.as_str().map(str::to_string).ok_or_else(|| self.invalid(&at, "values are strings"))
                })
                .collect::<Result<_, _>>()?;
            match_expressions.push(SelectorRequirement { key: key.to_string(), operator, values });
        }
        Ok(LabelSelector { match_labels, match_expressions })
    }

    fn peer(&self, value: &Value, at: &str) -> Result<PolicyPeer, Status> {
        let selector = |key: &str| match &value[key] {
            Value::Null => Ok(None),
            v => self.selector(v, &format!("{at}.{key}")).map(Some),
        };
        let (pod_selector, namespace_selector) = (selector("podSelector")?, selector("namespaceSelector")?);
        let block = &value["ipBlock"];
        if block.is_null() {
            if pod_selector.is_none() && namespace_selector.is_none() {
                return Err(
                    self.invalid(at, "must specify a peer: podSelector, namespaceSelector or ipBlock")
                );
            }
            return Ok(PolicyPeer::Pods { pod_selector, namespace_selector });
        }
        if pod_selector.is_some() || namespace_selector.is_some() {
            return Err(self.invalid(
                at,
                "may not specify more than 1 peer type: make ipBlock and the selectors two peers",
            ));
        }
        let cidr_field = format!("{at}.ipBlock.cidr");
        let cidr = block["cidr"].as_str().ok_or_else(|| self.invalid(&cidr_field, "Required value"))?;
        let cidr = parse_block(cidr).map_err(|e| self.invalid(&cidr_field, e.to_string()))?;
        let except_field = format!("{at}.ipBlock.except");
        let except = self
            .array(&block["except"], &except_field)?
            .iter()
            .map(|e| {
                let text = e.as_str().ok_or_else(|| self.invalid(&except_field, "must be CIDR strings"))?;
                parse_block(text).map_err(|e| self.invalid(&except_field, e.to_string()))
            })
            .collect::<Result<_, _>>()?;
        Ok(PolicyPeer::Block { cidr, except })
    }

    fn port(&self, value: &Value, at: &str) -> Result<PolicyPort, Status> {
        let protocol = match &value["protocol"] {
            Value::Null => Protocol::Tcp,
            Value::String(p) if p == "TCP" => Protocol::Tcp,
            Value::String(p) if p == "UDP" => Protocol::Udp,
            Value::String(p) => {
                let why = if p == "SCTP" {
                    "Unsupported value: \"SCTP\": podnet's policies cover TCP and UDP".to_string()
                } else {
                    format!("Unsupported value: \"{p}\": supported values: \"TCP\", \"UDP\"")
                };
                return Err(self.invalid(&format!("{at}.protocol"), why));
            }
            _ => return Err(self.invalid(&format!("{at}.protocol"), "must be a string")),
        };
        let port = match &value["port"] {
            Value::Null => None,
            Value::Number(n) => Some(TargetPort::Number(
                n.as_u64().filter(|p| (1..=65535).contains(p)).map(|p| p as u16).ok_or_else(|| {
                    self.invalid(&format!("{at}.port"), "must be between 1 and 65535, inclusive")
                })?,
            )),
            Value::String(s) => Some(
                s.parse::<TargetPort>().map_err(|e| self.invalid(&format!("{at}.port"), e.to_string()))?,
            ),
            _ => return Err(self.invalid(&format!("{at}.port"), "must be a number or a port name")),
        };
        let end_port = match &value["endPort"] {
            Value::Null => None,
            v => Some(v.as_u64().filter(|p| (1..=65535).contains(p)).map(|p| p as u16).ok_or_else(|| {
                self.invalid(&format!("{at}.endPort"), "must be between 1 and 65535, inclusive")
            })?),
        };
        Ok(PolicyPort { protocol, port, end_port })
    }

    fn rules(&self, value: &Value, field: &str, peers_key: &str) -> Result<Vec<PolicyRule>, Status> {
        let mut rules = Vec::new();
        for (i, rule) in self.array(value, field)?.iter().enumerate() {
            let at = format!("{field}[{i}]");
            let peers_at = format!("{at}.{peers_key}");
            let peers = self
                .array(&rule[peers_key], &peers_at)?
                .iter()
                .enumerate()
                .map(|(j, p)| self.peer(p, &format!("{peers_at}[{j}]")))
                .collect::<Result<_, _>>()?;
            let ports_at = format!("{at}.ports");
            let ports = self
                .array(&rule["ports"], &ports_at)?
                .iter()
                .enumerate()
                .map(|(j, p)| self.port(p, &format!("{ports_at}[{j}]")))
                .collect::<Result<_, _>>()?;
            rules.push(PolicyRule { peers, ports });
        }
        Ok(rules)
    }
}

/// A networking.k8s.io/v1 NetworkPolicy into a [`NetworkPolicySpec`] in
/// `namespace`, policyTypes defaulted and the whole checked.
pub fn decode(body: &Value, namespace: &str) -> Result<NetworkPolicySpec, Status> {
    let name = decode::head(body, KIND, API_VERSION, Some(namespace))?;
    let ctx = Ctx { kind: KIND, name };
    let spec = &body["spec"];
    let pod_selector = match &spec["podSelector"] {
        Value::Null => LabelSelector::default(),
        v => ctx.selector(v, "spec.podSelector")?,
    };
    let policy_types = ctx
        .array(&spec["policyTypes"], "spec.policyTypes")?
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let field = format!("spec.policyTypes[{i}]");
            t.as_str()
                .ok_or_else(|| ctx.invalid(&field, "must be a string"))?
                .parse::<PolicyType>()
                .map_err(|e| ctx.invalid(&field, e.to_string()))
        })
        .collect::<Result<_, _>>()?;
    let mut policy = NetworkPolicySpec {
        name: name.to_string(),
        namespace: namespace.to_string(),
        labels: labels(&ctx, &body["metadata"]["labels"], "metadata.labels")?,
        annotations: annotations(&ctx, body)?,
        pod_selector,
        policy_types,
        ingress: ctx.rules(&spec["ingress"], "spec.ingress", "from")?,
        egress: ctx.rules(&spec["egress"], "spec.egress", "to")?,
    };
    policy.annotations.remove(super::objects::PROBLEM_ANNOTATION);
    policy.default_policy_types();
    policy.check().map_err(|e| {
        // The check's message starts with the field it is about.
        let text = e.to_string();
        match text.split_once(": ") {
            Some((field, message)) if field.starts_with("spec") || field.starts_with("metadata") => {
                ctx.invalid(field, message)
            }
            _ => ctx.invalid("spec", text),
        }
    })?;
    Ok(policy)
}

fn selector(s: &LabelSelector) -> Value {
    let mut out = Map::new();
    if !s.match_labels.is_empty() {
        out.insert("matchLabels".into(), json!(s.match_labels));
    }
    if !s.match_expressions.is_empty() {
        let exprs: Vec<Value> = s
            .match_expressions
            .iter()
            .map(|r| {
                let mut e = json!({ "key": r.key, "operator": format!("{:?}", r.operator) });
                if !r.values.is_empty() {
                    e["values"] = json!(r.values);
                }
                e
            })
            .collect();
        out.insert("matchExpressions".into(), json!(exprs));
    }
    Value::Object(out)
}

fn rules(rules: &[PolicyRule], peers_key: &str) -> Value {
    let rules: Vec<Value> = rules
        .iter()
        .map(|r| {
            let mut rule = Map::new();
            if !r.ports.is_empty() {
                let ports: Vec<Value> = r
                    .ports
                    .iter()
                    .map(|p| {
                        let mut port = json!({ "protocol": p.protocol.name() });
                        match &p.port {
                            Some(TargetPort::Number(n)) => port["port"] = json!(n),
                            Some(TargetPort::Name(n)) => port["port"] = json!(n),
                            None => {}
                        }
                        if let Some(end) = p.end_port {
                            port["endPort"] = json!(end);
                        }
                        port
                    })
                    .collect();
                rule.insert("ports".into(), json!(ports));
            }
            if !r.peers.is_empty() {
                let peers: Vec<Value> = r
                    .peers
                    .iter()
                    .map(|p| match p {
                        PolicyPeer::Pods { pod_selector, namespace_selector } => {
                            let mut peer = Map::new();
                            if let Some(s) = pod_selector {
                                peer.insert("podSelector".into(), selector(s));
                            }
                            if let Some(s) = namespace_selector {
                                peer.insert("namespaceSelector".into(), selector(s));
                            }
                            Value::Object(peer)
                        }
                        PolicyPeer::Block { cidr, except } => {
                            let mut block = json!({ "cidr": cidr.to_string() });
                            if !except.is_empty() {
                                block["except"] =
                                    json!(except.iter().map(ToString::to_string).collect::<Vec<_>>());
                            }
                            json!({ "ipBlock": block })
                        }
                    })
                    .collect();
                rule.insert(peers_key.into(), json!(peers));
            }
            Value::Object(rule)
        })
        .collect();
    json!(rules)
}

/// A NetworkPolicy as the API shows it.
pub fn render(p: &NetworkPolicy, rv: u64) -> Value {
    let s = &p.spec;
    let mut meta = json!({
        "name": s.name,
        "namespace": s.namespace,
        "uid": p.uid,
        "resourceVersion": rv.to_string(),
        "creationTimestamp": super::objects::timestamp(p.created_at),
        "generation": 1,
    });
    if !s.labels.is_empty() {
        meta["labels"] = json!(s.labels);
    }
    if !s.annotations.is_empty() {
        meta["annotations"] = json!(s.annotations);
    }
    let mut spec = json!({
        "podSelector": selector(&s.pod_selector),
        "policyTypes": s.policy_types.iter().map(ToString::to_string).collect::<Vec<_>>(),
    });
    if !s.ingress.is_empty() {
        spec["ingress"] = rules(&s.ingress, "from");
    }
    if !s.egress.is_empty() {
        spec["egress"] = rules(&s.egress, "to");
    }
    json!({ "apiVersion": API_VERSION, "kind": KIND, "metadata": meta, "spec": spec })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Value {
        serde_yaml_ng::from_str(text).unwrap()
    }

    const POLICY: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-only, namespace: shop}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from:
    - podSelector: {matchLabels: {app: web}}
      namespaceSelector: {matchExpressions: [{key: team, operator: In, values: [a, b]}]}
    - ipBlock: {cidr: 192.168.0.0/16, except: [192.168.1.0/24]}
    ports:
    - {port: 5432}
    - {protocol: UDP, port: 80, endPort: 90}
    - {port: http}
  egress:
  - to: [{podSelector: {}}]
"#;

    #[test]
    fn a_policy_decodes_defaults_and_renders_back() {
        let spec = decode(&yaml(POLICY), "shop").unwrap();
        assert_eq!(spec.policy_types, [PolicyType::Ingress, PolicyType::Egress], "egress rules add Egress");
        assert_eq!(spec.ingress[0].peers.len(), 2);
        assert!(matches!(
            &spec.ingress[0].peers[0],
            PolicyPeer::Pods { pod_selector: Some(_), namespace_selector: Some(_) }
        ));
        assert_eq!(
            spec.ingress[0].ports[1],
            PolicyPort { protocol: Protocol::Udp, port: Some(TargetPort::Number(80)), end_port: Some(90) }
        );
        assert_eq!(spec.ingress[0].ports[2].port, Some(TargetPort::Name("http".into())));
        let policy = NetworkPolicy { uid: "u".into(), created_at: 0, spec: spec.clone() };
        let shown = render(&policy, 7);
        assert_eq!(shown["spec"]["ingress"][0]["from"][1]["ipBlock"]["except"][0], "192.168.1.0/24");
        assert_eq!(decode(&shown, "shop").unwrap(), spec, "what the API shows decodes to the same policy");
    }

    #[test]
    fn refusals_name_the_field() {
        let err =
            |from: &str, to: &str| decode(&yaml(&POLICY.replace(from, to)), "shop").unwrap_err().message;
        let e = err("{protocol: UDP, port: 80", "{protocol: SCTP, port: 80");
        assert!(e.contains("spec.ingress[0].ports[1].protocol: Unsupported value: \"SCTP\""), "{e}");
        let e = err("endPort: 90", "endPort: 70");
        assert!(e.contains("spec.ingress[0].ports[1].endPort: endPort 70 is below port 80"), "{e}");
        let e = err("{port: http}", "{port: http, endPort: 90}");
        assert!(e.contains("endPort cannot be used with a named port"), "{e}");
        let e = err("cidr: 192.168.0.0/16", "cidr: 192.168.0.0/33");
        assert!(e.contains("ipBlock.cidr: `192.168.0.0/33` is not an IPv4 CIDR"), "{e}");
        let e = err("except: [192.168.1.0/24]", "except: [10.0.0.0/24]");
        assert!(e.contains("is not strictly inside"), "{e}");
        let e = err("- ipBlock: {cidr", "- podSelector: {}\n      ipBlock: {cidr");
        assert!(e.contains("may not specify more than 1 peer type"), "{e}");
        let e = err("operator: In", "operator: Near");
        assert!(e.contains("matchExpressions[0].operator: selector operator `Near`"), "{e}");
    }
}
