//! Programming the switch's DNS zone: service records and the pod records
//! of the whole cluster (reverse lookups), pushing only differences.
//!
//! The zone's pod table holds the cluster's pods, so it is sized by
//! `limits.max_cluster_pods`, not by this node's `limits.max_pods`. A pod
//! past it gets no records: a counted refusal (`pod_records_refused` in
//! `podnet node stats`), tried again whenever the zone changes (a removed
//! pod may have made room), never a silent loss.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use netstack::dns::{Zone, ZoneConfig, ZoneError};

use super::NodeRuntime;
use super::diff::{self, Served};
use crate::config::NodeConfig;
use crate::desired::NodeDesired;
use crate::model::services;

/// What the zone's records are made of: the Services (shared with the
/// control plane, in key order; their records are made only when they
/// change) and the pods by IP.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct ZoneContent {
    services: Vec<Served>,
    pods: BTreeMap<Ipv4Addr, String>,
}

/// What the zone was asked to hold and what it refused: it holds the rest
/// (one copy of the records here, not one asked for and one held).
#[derive(Debug, Default)]
pub(super) struct ZoneSync {
    /// The content last asked for.
    wanted: ZoneContent,
    /// Pods the full pod table refused, now.
    refused: BTreeSet<Ipv4Addr>,
    /// Pods refused since start (each counted once per refusal).
    refusals: u64,
}

impl ZoneSync {
    /// Pod records refused since start, for `podnet node stats`.
    pub(super) fn refusals(&self) -> u64 {
        self.refusals
    }
}

/// The zone's configuration for this node.
pub(super) fn zone_config(config: &NodeConfig) -> ZoneConfig {
    let (net, limits) = (&config.network, &config.limits);
    ZoneConfig {
        domain: net.cluster_domain.clone(),
        ttl: net.dns_ttl,
        max_services: usize::from(limits.max_services),
        max_pods: limits.max_cluster_pods as usize,
        cluster_cidrs: vec![net.cluster_cidr.ipv4(), net.service_cidr.ipv4()],
        ..Default::default()
    }
}

/// What takes the zone from what it holds to what is wanted: only the
/// differences cross to the data-plane thread.
#[derive(Debug, Default)]
struct Edit {
    removed_services: Vec<(String, String)>,
    removed_pods: Vec<Ipv4Addr>,
    services: Vec<netstack::dns::Service>,
    pods: Vec<(Ipv4Addr, String)>,
}

/// What applying a change to the zone gave.
#[derive(Debug, Default, PartialEq, Eq)]
struct Applied {
    /// Records refused for other reasons than room, in words.
    errors: Vec<String>,
    /// Pods the full pod table refused.
    refused: Vec<Ipv4Addr>,
}

/// Makes `edit` to `zone`: removals first, so they make room.
fn apply(zone: &mut Zone, edit: &Edit) -> Applied {
    let mut applied = Applied::default();
    for (ns, name) in &edit.removed_services {
        zone.remove_service(ns, name);
    }
    for ip in &edit.removed_pods {
        zone.remove_pod(*ip);
    }
    for record in &edit.services {
        if let Err(e) = zone.upsert_service(record) {
            applied.errors.push(format!("service {}/{}: {e}", record.namespace, record.name));
        }
    }
    for (ip, ns) in &edit.pods {
        match zone.upsert_pod(*ip, ns) {
            Ok(()) => {}
            Err(ZoneError::PodsFull) => applied.refused.push(*ip),
            Err(e) => applied.errors.push(format!("pod {ip}: {e}")),
        }
    }
    applied
}

impl ZoneSync {
    /// What takes the zone from what it holds (what was asked for, less
    /// the pods it refused) to `wanted`; refused pods are tried again.
    fn edit(&self, wanted: &ZoneContent) -> Edit {
        let held = &self.wanted;
        let (mut removed_services, mut records) = (Vec::new(), Vec::new());
        for difference in diff::differences(&held.services, &wanted.services) {
            match difference {
                (Some((old, _)), None) => {
                    removed_services.push((old.spec.namespace.clone(), old.spec.name.clone()))
                }
                (old, Some((service, endpoints))) => {
                    let record = services::dns_record(service, endpoints);
                    // A Service's endpoints change its records only when it is headless.
                    if old.is_none_or(|(s, e)| services::dns_record(s, e) != record) {
                        records.push(record);
                    }
                }
                (None, None) => {}
            }
        }
        Edit {
            removed_services,
            removed_pods: held
                .pods
                .keys()
                .filter(|ip| !self.refused.contains(*ip) && !wanted.pods.contains_key(*ip))
                .copied()
                .collect(),
            services: records,
            pods: wanted
                .pods
                .iter()
                .filter(|(ip, ns)| self.refused.contains(*ip) || held.pods.get(*ip) != Some(*ns))
                .map(|(ip, ns)| (*ip, ns.clone()))
                .collect(),
        }
    }

    /// Records what the zone holds after `applied` was made of `wanted`.
    fn record(&mut self, wanted: ZoneContent, applied: &Applied) {
        let refused: BTreeSet<Ipv4Addr> = applied.refused.iter().copied().collect();
        let new = refused.difference(&self.refused).count();
        if new > 0 {
            tracing::warn!(
                "cluster DNS: {} pods get no records, the pod table is full (raise limits.max_cluster_pods in the board config)",
                refused.len()
            );
        }
        self.refusals += new as u64;
        self.refused = refused;
        self.wanted = wanted;
    }
}

impl NodeRuntime {
    /// Brings the switch's DNS zone in line with `desired`.
    pub(super) async fn sync_zone(&mut self, desired: &NodeDesired) {
        let mut wanted = ZoneContent { services: diff::in_order(&desired.services), ..Default::default() };
        // A records only: IPv6 is refused where addresses come in.
        wanted.pods = desired
            .pod_ips
            .iter()
            .filter_map(|(ip, ns)| match ip {
                IpAddr::V4(ip) => Some((*ip, ns.clone())),
                IpAddr::V6(_) => None,
            })
            .collect();
        if wanted == self.zone.wanted {
            return;
        }
        let edit = self.zone.edit(&wanted);
        let applied = self.dataplane.update(move |switch| apply(switch.zone_mut(), &edit)).await;
        match applied {
            Ok(applied) => {
                applied.errors.iter().for_each(|e| tracing::warn!("cannot add DNS records for {e}"));
                self.zone.record(wanted, &applied);
            }
            Err(e) => tracing::warn!("cannot update DNS records: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pods(ips: &[u8]) -> ZoneContent {
        ZoneContent {
            services: Vec::new(),
            pods: ips.iter().map(|i| (Ipv4Addr::new(10, 244, 1, *i), "default".to_string())).collect(),
        }
    }

    #[test]
    fn the_pod_table_is_sized_for_the_cluster() {
        let config = NodeConfig::parse("[limits]\nmax_pods = 30\nmax_cluster_pods = 2000\n").unwrap();
        assert_eq!(zone_config(&config).max_pods, 2000);
        assert_eq!(zone_config(&NodeConfig::default()).max_pods, 4096, "not the node's 110");
    }

    #[test]
    fn pods_past_the_table_are_counted_and_get_in_once_there_is_room() {
        let mut zone = Zone::new(ZoneConfig { max_pods: 2, ..ZoneConfig::default() }).unwrap();
        let mut sync = ZoneSync::default();

        let wanted = pods(&[1, 2, 3]);
        let applied = apply(&mut zone, &sync.edit(&wanted));
        assert_eq!(applied.refused, [Ipv4Addr::new(10, 244, 1, 3)]);
        sync.record(wanted.clone(), &applied);
        assert_eq!((sync.refusals(), zone.pod_count()), (1, 2));

        // Asked again with the table still full: the same pod, counted once.
        let wanted = pods(&[1, 2, 3, 4]);
        let applied = apply(&mut zone, &sync.edit(&wanted));
        assert_eq!(applied.refused.len(), 2);
        sync.record(wanted, &applied);
        assert_eq!(sync.refusals(), 2, "only pod .4 is a new refusal");

        // A pod goes: the refused ones are tried again and one fits.
        let wanted = pods(&[2, 3, 4]);
        let applied = apply(&mut zone, &sync.edit(&wanted));
        assert_eq!(applied.refused.len(), 1);
        sync.record(wanted, &applied);
        assert_eq!((sync.refusals(), zone.pod_count()), (2, 2));
        assert!(applied.errors.is_empty());
    }

    #[test]
    fn only_differences_cross_to_the_zone() {
        let mut zone = Zone::new(ZoneConfig::default()).unwrap();
        let mut sync = ZoneSync::default();
        let wanted = pods(&[1, 2, 3]);
        let applied = apply(&mut zone, &sync.edit(&wanted));
        sync.record(wanted, &applied);

        let edit = sync.edit(&pods(&[2, 3, 4]));
        assert_eq!(edit.removed_pods, [Ipv4Addr::new(10, 244, 1, 1)]);
        assert_eq!(
            edit.pods,
            [(Ipv4Addr::new(10, 244, 1, 4), "default".to_string())],
            "not the held .2 and .3"
        );
        assert!(edit.services.is_empty() && edit.removed_services.is_empty());
        apply(&mut zone, &edit);
        assert_eq!(zone.pod_count(), 3);
    }

    #[test]
    fn only_changed_services_cross_to_the_zone() {
        use super::super::diff::served;
        let mut zone = Zone::new(ZoneConfig::default()).unwrap();
        let mut sync = ZoneSync::default();
        let (a, b) = (served("a", 1, &[1]), served("b", 2, &[2]));
        let wanted = ZoneContent { services: vec![a.clone(), b.clone()], pods: BTreeMap::new() };
        let edit = sync.edit(&wanted);
        assert_eq!(edit.services.len(), 2);
        let applied = apply(&mut zone, &edit);
        sync.record(wanted, &applied);

        // b's endpoints change: a ClusterIP's records do not; a is the same Arcs.
        let b2 = (b.0.clone(), served("b", 2, &[2, 3]).1);
        let edit = sync.edit(&ZoneContent { services: vec![a.clone(), b2.clone()], pods: BTreeMap::new() });
        assert!(edit.services.is_empty() && edit.removed_services.is_empty(), "{edit:?}");

        // b goes, c comes: one removal, one record.
        let c = served("c", 3, &[4]);
        let edit = sync.edit(&ZoneContent { services: vec![a, c], pods: BTreeMap::new() });
        assert_eq!(edit.removed_services, [("default".to_string(), "b".to_string())]);
        assert_eq!(edit.services.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["c"]);
    }
}
