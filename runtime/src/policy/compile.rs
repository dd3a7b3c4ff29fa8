//! The compiler: each pod some policy selects gets, per direction the
//! policy governs, the union of the policies' rules with their peers
//! resolved to addresses and their ports to numbers.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use netstack::policy::{Isolation, PortRange, ResolvedPeer, Rule};
use netstack::wire::Ipv4Cidr;

use super::{PolicyInputs, PolicyPod, PolicyTable};
use crate::model::policy::{NetworkPolicySpec, PolicyPeer, PolicyPort, PolicyRule, PolicyType};
use crate::model::{Labels, Protocol, TargetPort};

/// The policy table of the node whose gateway is `gateway`: every isolated
/// pod of the cluster (the switch judges egress on the source's node and
/// ingress on the destination's; a remote pod's entry is simply not used
/// for the other direction).
pub fn compile(inputs: &PolicyInputs, gateway: Ipv4Addr) -> PolicyTable {
    let namespaces: BTreeMap<&str, &Labels> =
        inputs.namespaces.iter().map(|(n, l)| (n.as_str(), l)).collect();
    let ctx = Ctx { inputs, namespaces };
    // What does not depend on the selected pod is compiled once per policy:
    // every rule's peers, and egress rules whole (their named ports resolve
    // on the peers).
    let per_policy: Vec<(Vec<Vec<ResolvedPeer>>, Vec<Rule>)> = inputs
        .policies
        .iter()
        .map(|p| {
            let ingress = p.ingress.iter().map(|r| ctx.peers(p, r)).collect();
            let egress = p.egress.iter().flat_map(|r| ctx.rule(r, &ctx.peers(p, r), None)).collect();
            (ingress, egress)
        })
        .collect();
    let mut table = Vec::new();
    for pod in &inputs.pods {
        let mut isolation = Isolation::default();
        let selecting = inputs
            .policies
            .iter()
            .zip(&per_policy)
            .filter(|(p, _)| p.namespace == pod.namespace && p.pod_selector.matches(&pod.labels));
        for (policy, (ingress_peers, egress)) in selecting {
            if policy.governs(PolicyType::Ingress) {
                let compiled = isolation.ingress.get_or_insert_with(Vec::new);
                for (rule, peers) in policy.ingress.iter().zip(ingress_peers) {
                    compiled.extend(ctx.rule(rule, peers, Some(pod)));
                }
            }
            if policy.governs(PolicyType::Egress) {
                isolation.egress.get_or_insert_with(Vec::new).extend(egress.iter().cloned());
            }
        }
        table.push((pod.ip, isolation));
    }
    PolicyTable::new(gateway, table)
}

struct Ctx<'a> {
    inputs: &'a PolicyInputs,
    namespaces: BTreeMap<&'a str, &'a Labels>,
}

impl Ctx<'_> {
    /// One rule with its resolved `peers`: an ingress rule for the selected
    /// pod `Some(pod)`, an egress rule for any (None). One switch rule for
    /// its peers and numbered ports, and for named ports one per number
    /// they resolve to. A rule whose ports all fail to resolve admits
    /// nothing, and so gives no switch rule (an empty port list would
    /// admit every port).
    fn rule(&self, rule: &PolicyRule, peers: &[ResolvedPeer], pod: Option<&PolicyPod>) -> Vec<Rule> {
        if rule.ports.is_empty() {
            return vec![Rule { peers: peers.to_vec(), ports: Vec::new() }];
        }
        let mut numbered = Vec::new();
        let mut named: Vec<(&str, Protocol)> = Vec::new();
        for port in &rule.ports {
            match port {
                PolicyPort { protocol, port: None, .. } => {
                    numbered.push(PortRange { protocol: *protocol, first: 0, last: u16::MAX })
                }
                PolicyPort { protocol, port: Some(TargetPort::Number(n)), end_port } => {
                    numbered.push(PortRange { protocol: *protocol, first: *n, last: end_port.unwrap_or(*n) })
                }
                PolicyPort { protocol, port: Some(TargetPort::Name(name)), .. } => {
                    named.push((name.as_str(), *protocol))
                }
            }
        }
        let mut out = Vec::new();
        match pod {
            // Ingress: the named port is the selected pod's own, one number each.
            Some(pod) => {
                numbered.extend(named.iter().filter_map(|(name, protocol)| {
                    let n = port_number(pod, name, *protocol)?;
                    Some(PortRange { protocol: *protocol, first: n, last: n })
                }));
            }
            // Egress: the named port is each peer pod's; pods that give it
            // the same number share a rule.
            None => {
                let mut groups: BTreeMap<(Protocol, u16), Vec<Ipv4Addr>> = BTreeMap::new();
                for candidate in &self.inputs.pods {
                    let addr = candidate.ip;
                    if !peers.is_empty() && !peers.iter().any(|p| p.admits(addr)) {
                        continue;
                    }
                    for (name, protocol) in &named {
                        if let Some(n) = port_number(candidate, name, *protocol) {
                            groups.entry((*protocol, n)).or_default().push(candidate.ip);
                        }
                    }
                }
                for ((protocol, n), addrs) in groups {
                    out.push(Rule {
                        peers: vec![ResolvedPeer::pods(addrs)],
                        ports: vec![PortRange { protocol, first: n, last: n }],
                    });
                }
            }
        }
        if !numbered.is_empty() {
            out.insert(0, Rule { peers: peers.to_vec(), ports: numbered });
        }
        out
    }

    /// A rule's peers, resolved.
    fn peers(&self, policy: &NetworkPolicySpec, rule: &PolicyRule) -> Vec<ResolvedPeer> {
        rule.peers.iter().map(|p| self.peer(policy, p)).collect()
    }

    /// A peer resolved to pod addresses (or kept as an address block).
    fn peer(&self, policy: &NetworkPolicySpec, peer: &PolicyPeer) -> ResolvedPeer {
        match peer {
            PolicyPeer::Block { cidr, except } => ResolvedPeer::Block {
                cidr: cidr.ipv4(),
                except: except.iter().map(|e| e.ipv4()).collect::<Vec<Ipv4Cidr>>(),
            },
            PolicyPeer::Pods { pod_selector, namespace_selector } => {
                let namespaces: BTreeSet<&str> = match namespace_selector {
                    None => BTreeSet::from([policy.namespace.as_str()]),
                    Some(s) => {
                        self.namespaces.iter().filter(|(_, l)| s.matches(l)).map(|(n, _)| *n).collect()
                    }
                };
                ResolvedPeer::pods(
                    self.inputs
                        .pods
                        .iter()
                        .filter(|p| namespaces.contains(p.namespace.as_str()))
                        .filter(|p| pod_selector.as_ref().is_none_or(|s| s.matches(&p.labels)))
                        .map(|p| p.ip)
                        .collect(),
                )
            }
        }
    }
}

/// The number `pod` gives the port named `name` for `protocol`.
fn port_number(pod: &PolicyPod, name: &str, protocol: Protocol) -> Option<u16> {
    pod.ports.iter().find(|(n, p, _)| n == name && *p == protocol).map(|(_, _, number)| *number)
}
