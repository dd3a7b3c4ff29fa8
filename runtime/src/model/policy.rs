//! NetworkPolicy (networking.k8s.io/v1) as podnet stores it: which pods a
//! policy selects, for which directions, and the rules that admit peers and
//! ports, with Kubernetes' validation. Label selectors live here too: a
//! policy's podSelector and namespaceSelector match objects' labels.
//! Compiling policies to addresses is `crate::policy`'s job.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{Annotations, Labels, Protocol, TargetPort, check_annotations, check_label, check_name};
use crate::config::Cidr;

/// The label every namespace carries with its own name.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Most items of any one list of a policy (rules, peers, ports, exceptions,
/// selector requirements and their values): what one hostile manifest can
/// make every node compile.
pub const MAX_POLICY_ITEMS: usize = 256;

/// How a selector requirement compares a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SelectorOperator {
    /// The label has one of the values.
    In,
    /// The label is absent or has none of the values.
    NotIn,
    /// The label is present.
    Exists,
    /// The label is absent.
    DoesNotExist,
}

impl std::str::FromStr for SelectorOperator {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, PolicyError> {
        match s {
            "In" => Ok(SelectorOperator::In),
            "NotIn" => Ok(SelectorOperator::NotIn),
            "Exists" => Ok(SelectorOperator::Exists),
            "DoesNotExist" => Ok(SelectorOperator::DoesNotExist),
            _ => Err(PolicyError::Operator(s.to_string())),
        }
    }
}

/// One `matchExpressions` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelectorRequirement {
    /// The label key.
    pub key: String,
    /// The comparison.
    pub operator: SelectorOperator,
    /// Values for In and NotIn (empty for the others).
    pub values: Vec<String>,
}

/// A Kubernetes label selector: every `matchLabels` pair and every
/// requirement must hold; an empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelSelector {
    /// Labels that must be present with these values.
    pub match_labels: Labels,
    /// Further requirements.
    pub match_expressions: Vec<SelectorRequirement>,
}

impl LabelSelector {
    /// Whether `labels` satisfy the selector.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| {
                let value = labels.get(&r.key);
                match r.operator {
                    SelectorOperator::In => value.is_some_and(|v| r.values.contains(v)),
                    SelectorOperator::NotIn => value.is_none_or(|v| !r.values.contains(v)),
                    SelectorOperator::Exists => value.is_some(),
                    SelectorOperator::DoesNotExist => value.is_none(),
                }
            })
    }

    /// Whether it matches everything.
    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty()
    }

    fn check(&self, field: &str) -> Result<(), PolicyError> {
        for (k, v) in &self.match_labels {
            check_label(k, v).map_err(|e| PolicyError::field(format!("{field}.matchLabels"), e))?;
        }
        bounded(&format!("{field}.matchExpressions"), self.match_expressions.len())?;
        for (i, r) in self.match_expressions.iter().enumerate() {
            let at = format!("{field}.matchExpressions[{i}]");
            check_label(&r.key, "").map_err(|e| PolicyError::field(format!("{at}.key"), e))?;
            bounded(&format!("{at}.values"), r.values.len())?;
            let wants_values = matches!(r.operator, SelectorOperator::In | SelectorOperator::NotIn);
            if wants_values == r.values.is_empty() {
                return Err(PolicyError::Values { field: at, operator: r.operator });
            }
            for v in &r.values {
                check_label(&r.key, v).map_err(|e| PolicyError::field(format!("{at}.values"), e))?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for LabelSelector {
    /// As kubectl prints a selector: `app=web,tier in (a,b)`, `<none>` when empty.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("<none>");
        }
        let mut parts: Vec<String> = self.match_labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        for r in &self.match_expressions {
            parts.push(match r.operator {
                SelectorOperator::In => format!("{} in ({})", r.key, r.values.join(",")),
                SelectorOperator::NotIn => format!("{} notin ({})", r.key, r.values.join(",")),
                SelectorOperator::Exists => r.key.clone(),
                SelectorOperator::DoesNotExist => format!("!{}", r.key),
            });
        }
        f.write_str(&parts.join(","))
    }
}

/// A direction a policy governs for the pods it selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PolicyType {
    /// Connections to the selected pods.
    Ingress,
    /// Connections from the selected pods.
    Egress,
}

impl std::str::FromStr for PolicyType {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, PolicyError> {
        match s {
            "Ingress" => Ok(PolicyType::Ingress),
            "Egress" => Ok(PolicyType::Egress),
            _ => Err(PolicyError::PolicyType(s.to_string())),
        }
    }
}

impl fmt::Display for PolicyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Who a rule admits on the other end (`from` / `to` entries).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PolicyPeer {
    /// Pods: by `podSelector` in the policy's namespace, by
    /// `namespaceSelector` in every matching namespace, both at once
    /// meaning pods matching the first in namespaces matching the second.
    Pods {
        /// Labels of the pods (None: every pod of the chosen namespaces).
        pod_selector: Option<LabelSelector>,
        /// Labels of the namespaces (None: the policy's own namespace).
        namespace_selector: Option<LabelSelector>,
    },
    /// An address block, less its exceptions (`ipBlock`).
    Block {
        /// The block.
        cidr: Cidr,
        /// Blocks inside it that are not admitted.
        except: Vec<Cidr>,
    },
}

/// A port a rule admits (`ports` entries): a protocol, and a port by number
/// or name (None: every port), or a range with `end_port`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyPort {
    /// TCP or UDP (SCTP is refused).
    pub protocol: Protocol,
    /// The port, by number or by a container port's name.
    pub port: Option<TargetPort>,
    /// The last port of a range starting at a numbered `port`.
    pub end_port: Option<u16>,
}

/// One rule: any of its peers (none: every peer), on any of its ports
/// (none: every port).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRule {
    /// `from` (ingress) or `to` (egress).
    pub peers: Vec<PolicyPeer>,
    /// `ports`.
    pub ports: Vec<PolicyPort>,
}

/// What a user asks for in a NetworkPolicy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkPolicySpec {
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// The policy's own labels.
    pub labels: Labels,
    /// Annotations.
    pub annotations: Annotations,
    /// The pods of its namespace it applies to.
    pub pod_selector: LabelSelector,
    /// The directions it governs, defaulted as Kubernetes does (see
    /// [`NetworkPolicySpec::default_policy_types`]).
    pub policy_types: Vec<PolicyType>,
    /// Rules for connections to the selected pods.
    pub ingress: Vec<PolicyRule>,
    /// Rules for connections from the selected pods.
    pub egress: Vec<PolicyRule>,
}

impl NetworkPolicySpec {
    /// Kubernetes' default when `policyTypes` is left out: Ingress, and
    /// Egress too when egress rules are given.
    pub fn default_policy_types(&mut self) {
        if self.policy_types.is_empty() {
            self.policy_types.push(PolicyType::Ingress);
            if !self.egress.is_empty() {
                self.policy_types.push(PolicyType::Egress);
            }
        }
        self.policy_types.sort();
        self.policy_types.dedup();
    }

    /// Whether it governs `direction`.
    pub fn governs(&self, direction: PolicyType) -> bool {
        self.policy_types.contains(&direction)
    }

    /// Checks the policy as the API server validates one (after defaulting).
    pub fn check(&self) -> Result<(), PolicyError> {
        check_name("networkpolicy", &self.name, 63).map_err(|e| PolicyError::field("metadata.name", e))?;
        check_name("namespace", &self.namespace, 63)
            .map_err(|e| PolicyError::field("metadata.namespace", e))?;
        for (k, v) in &self.labels {
            check_label(k, v).map_err(|e| PolicyError::field("metadata.labels", e))?;
        }
        check_annotations(&self.annotations).map_err(|e| PolicyError::field("metadata.annotations", e))?;
        self.pod_selector.check("spec.podSelector")?;
        for (list, field) in [(&self.ingress, "spec.ingress"), (&self.egress, "spec.egress")] {
            bounded(field, list.len())?;
            let peers = if field == "spec.ingress" { "from" } else { "to" };
            for (i, rule) in list.iter().enumerate() {
                let at = format!("{field}[{i}]");
                bounded(&format!("{at}.{peers}"), rule.peers.len())?;
                bounded(&format!("{at}.ports"), rule.ports.len())?;
                for (j, peer) in rule.peers.iter().enumerate() {
                    check_peer(peer, &format!("{at}.{peers}[{j}]"))?;
                }
                for (j, port) in rule.ports.iter().enumerate() {
                    check_port(port, &format!("{at}.ports[{j}]"))?;
                }
            }
        }
        Ok(())
    }
}

fn check_peer(peer: &PolicyPeer, at: &str) -> Result<(), PolicyError> {
    match peer {
        PolicyPeer::Pods { pod_selector: None, namespace_selector: None } => {
            Err(PolicyError::EmptyPeer(at.to_string()))
        }
        PolicyPeer::Pods { pod_selector, namespace_selector } => {
            if let Some(s) = pod_selector {
                s.check(&format!("{at}.podSelector"))?;
            }
            if let Some(s) = namespace_selector {
                s.check(&format!("{at}.namespaceSelector"))?;
            }
            Ok(())
        }
        PolicyPeer::Block { cidr, except } => {
            bounded(&format!("{at}.ipBlock.except"), except.len())?;
            for e in except {
                // Strictly inside: an exception as wide as the block (or
                // wider) would leave nothing, which Kubernetes refuses.
                if e.prefix_len() <= cidr.prefix_len() || !cidr.contains(e.address()) {
                    return Err(PolicyError::ExceptOutside {
                        field: format!("{at}.ipBlock.except"),
                        except: *e,
                        cidr: *cidr,
                    });
                }
            }
            Ok(())
        }
    }
}

fn check_port(port: &PolicyPort, at: &str) -> Result<(), PolicyError> {
    match (&port.port, port.end_port) {
        (Some(TargetPort::Name(name)), _) => {
            super::check_port_name(name).map_err(|e| PolicyError::field(format!("{at}.port"), e))?;
            if port.end_port.is_some() {
                return Err(PolicyError::EndPortNamed(format!("{at}.endPort")));
            }
            Ok(())
        }
        (Some(TargetPort::Number(first)), Some(last)) if last < *first => {
            Err(PolicyError::EndPortBelow { field: format!("{at}.endPort"), port: *first, end_port: last })
        }
        (None, Some(_)) => Err(PolicyError::EndPortAlone(format!("{at}.endPort"))),
        _ => Ok(()),
    }
}

fn bounded(field: &str, len: usize) -> Result<(), PolicyError> {
    match len <= MAX_POLICY_ITEMS {
        true => Ok(()),
        false => Err(PolicyError::TooMany { field: field.to_string(), len }),
    }
}

/// A NetworkPolicy as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkPolicy {
    /// Unique id.
    pub uid: String,
    /// Unix time of creation.
    pub created_at: u64,
    /// What the user asked for.
    pub spec: NetworkPolicySpec,
}

/// Parses an `ipBlock` CIDR strictly: `a.b.c.d/n` with no host bits set,
/// as Kubernetes requires (`10.0.0.1/24` is refused with the fix).
pub fn parse_block(text: &str) -> Result<Cidr, PolicyError> {
    let bad = || PolicyError::Cidr(text.to_string());
    let (addr, prefix) = text.split_once('/').ok_or_else(bad)?;
    let addr: IpAddr = addr.parse().map_err(|_| bad())?;
    let addr = super::address::ipv4_only("ipBlock.cidr", addr)?;
    let prefix: u8 = prefix.parse().ok().filter(|p| *p <= 32).ok_or_else(bad)?;
    let cidr = Cidr::new(addr, prefix);
    if cidr.address() != addr {
        return Err(PolicyError::HostBits { given: text.to_string(), network: cidr });
    }
    Ok(cidr)
}

/// Why a NetworkPolicy is refused; each message names the field and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// An IPv6 ipBlock.
    #[error(transparent)]
    Ipv6(#[from] super::address::Ipv6Unsupported),
    /// A name, label or port name in a field.
    #[error("{field}: {source}")]
    Field {
        /// The field.
        field: String,
        /// What is wrong.
        source: Box<super::ModelError>,
    },
    /// A selector operator.
    #[error("selector operator `{0}` is not one of In, NotIn, Exists, DoesNotExist")]
    Operator(String),
    /// In/NotIn without values, Exists/DoesNotExist with some.
    #[error("{field}: operator {operator:?} {}", if matches!(operator, SelectorOperator::In | SelectorOperator::NotIn) { "needs at least one value" } else { "takes no values" })]
    Values {
        /// The requirement.
        field: String,
        /// Its operator.
        operator: SelectorOperator,
    },
    /// A policy type.
    #[error("policy type `{0}` is not Ingress or Egress")]
    PolicyType(String),
    /// A peer with neither selector nor block.
    #[error("{0}: a peer needs a podSelector, a namespaceSelector or an ipBlock")]
    EmptyPeer(String),
    /// Not a CIDR.
    #[error("`{0}` is not an IPv4 CIDR like 192.168.0.0/16 (podnet is IPv4 only)")]
    Cidr(String),
    /// A CIDR with host bits.
    #[error("`{given}` has host bits set: write its network, {network}")]
    HostBits {
        /// As written.
        given: String,
        /// Its network.
        network: Cidr,
    },
    /// An exception outside its block.
    #[error(
        "{field}: {except} is not strictly inside the ipBlock's cidr {cidr}: except lists parts of the block"
    )]
    ExceptOutside {
        /// The field.
        field: String,
        /// The exception.
        except: Cidr,
        /// The block.
        cidr: Cidr,
    },
    /// endPort below port.
    #[error("{field}: endPort {end_port} is below port {port}: it must be at least the port")]
    EndPortBelow {
        /// The field.
        field: String,
        /// The first port.
        port: u16,
        /// The last port.
        end_port: u16,
    },
    /// endPort with a named port.
    #[error("{0}: endPort cannot be used with a named port: give the port by number")]
    EndPortNamed(String),
    /// endPort without port.
    #[error("{0}: endPort needs a port to start the range")]
    EndPortAlone(String),
    /// A list past [`MAX_POLICY_ITEMS`].
    #[error("{field} has {len} items: at most {MAX_POLICY_ITEMS} are allowed, split the policy")]
    TooMany {
        /// The field.
        field: String,
        /// Its length.
        len: usize,
    },
}

impl PolicyError {
    fn field(field: impl Into<String>, e: super::ModelError) -> PolicyError {
        PolicyError::Field { field: field.into(), source: Box::new(e) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn spec() -> NetworkPolicySpec {
        NetworkPolicySpec { name: "p".into(), namespace: "x".into(), ..Default::default() }
    }

    #[test]
    fn selectors_match_labels_and_expressions() {
        let s = LabelSelector {
            match_labels: labels(&[("app", "web")]),
            match_expressions: vec![
                SelectorRequirement {
                    key: "tier".into(),
                    operator: SelectorOperator::In,
                    values: vec!["a".into(), "b".into()],
                },
                SelectorRequirement {
                    key: "canary".into(),
                    operator: SelectorOperator::DoesNotExist,
                    values: vec![],
                },
            ],
        };
        assert!(s.matches(&labels(&[("app", "web"), ("tier", "b")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("tier", "c")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("tier", "a"), ("canary", "1")])));
        assert!(!s.matches(&labels(&[("tier", "a")])));
        assert!(LabelSelector::default().matches(&Labels::new()));
        let not_in = LabelSelector {
            match_labels: Labels::new(),
            match_expressions: vec![SelectorRequirement {
                key: "k".into(),
                operator: SelectorOperator::NotIn,
                values: vec!["v".into()],
            }],
        };
        assert!(not_in.matches(&Labels::new()), "NotIn holds for an absent label");
        assert!(!not_in.matches(&labels(&[("k", "v")])));
        assert_eq!(s.to_string(), "app=web,tier in (a,b),!canary");
    }

    #[test]
    fn policy_types_default_as_kubernetes_does() {
        let mut p = spec();
        p.default_policy_types();
        assert_eq!(p.policy_types, [PolicyType::Ingress]);
        let mut p = spec();
        p.egress.push(PolicyRule::default());
        p.default_policy_types();
        assert_eq!(p.policy_types, [PolicyType::Ingress, PolicyType::Egress]);
        let mut p = spec();
        p.policy_types = vec![PolicyType::Egress];
        p.default_policy_types();
        assert_eq!(p.policy_types, [PolicyType::Egress], "given types are kept");
    }

    #[test]
    fn invalid_policies_are_refused_naming_the_field() {
        let cidr = parse_block("10.0.0.0/8").unwrap();
        assert!(parse_block("10.0.0.1/8").unwrap_err().to_string().contains("write its network, 10.0.0.0/8"));
        assert!(matches!(parse_block("10.0.0.0"), Err(PolicyError::Cidr(_))));
        assert!(matches!(parse_block("10.0.0.0/33"), Err(PolicyError::Cidr(_))));
        assert_eq!(
            parse_block("fd00::/8").unwrap_err().to_string(),
            "IPv6 is not supported yet: ipBlock.cidr = fd00::; use an IPv4 address"
        );
        let with = |peer: PolicyPeer, port: Option<PolicyPort>| {
            let mut p = spec();
            p.ingress.push(PolicyRule { peers: vec![peer], ports: port.into_iter().collect() });
            p.check()
        };
        let outside = PolicyPeer::Block { cidr, except: vec![parse_block("192.168.0.0/16").unwrap()] };
        let e = with(outside, None).unwrap_err().to_string();
        assert!(
            e.starts_with("spec.ingress[0].from[0].ipBlock.except: 192.168.0.0/16 is not strictly inside"),
            "{e}"
        );
        let same = PolicyPeer::Block { cidr, except: vec![cidr] };
        assert!(matches!(with(same, None), Err(PolicyError::ExceptOutside { .. })));
        let inside = PolicyPeer::Block { cidr, except: vec![parse_block("10.1.0.0/16").unwrap()] };
        assert!(with(inside.clone(), None).is_ok());
        let port = |port, end_port| Some(PolicyPort { protocol: Protocol::Tcp, port, end_port });
        let e = with(inside.clone(), port(Some(TargetPort::Number(90)), Some(80))).unwrap_err().to_string();
        assert_eq!(
            e,
            "spec.ingress[0].ports[0].endPort: endPort 80 is below port 90: it must be at least the port"
        );
        let named = port(Some(TargetPort::Name("http".into())), Some(90));
        assert!(matches!(with(inside.clone(), named), Err(PolicyError::EndPortNamed(_))));
        assert!(matches!(with(inside.clone(), port(None, Some(90))), Err(PolicyError::EndPortAlone(_))));
        assert!(with(inside.clone(), port(Some(TargetPort::Number(80)), Some(90))).is_ok());
        let empty = PolicyPeer::Pods { pod_selector: None, namespace_selector: None };
        assert!(matches!(with(empty, None), Err(PolicyError::EmptyPeer(_))));
        let bad_values = PolicyPeer::Pods {
            pod_selector: Some(LabelSelector {
                match_labels: Labels::new(),
                match_expressions: vec![SelectorRequirement {
                    key: "a".into(),
                    operator: SelectorOperator::In,
                    values: vec![],
                }],
            }),
            namespace_selector: None,
        };
        let e = with(bad_values, None).unwrap_err().to_string();
        assert!(e.contains("podSelector.matchExpressions[0]: operator In needs at least one value"), "{e}");
        let mut many = spec();
        many.egress = vec![PolicyRule::default(); MAX_POLICY_ITEMS + 1];
        assert!(matches!(many.check(), Err(PolicyError::TooMany { .. })));
        let mut bad_name = spec();
        bad_name.name = "Bad_Name".into();
        assert!(
            bad_name
                .check()
                .unwrap_err()
                .to_string()
                .starts_with("metadata.name: invalid networkpolicy name")
        );
    }
}
