//! Programming this node's switch from the control plane's view: the service
//! table (ClusterIPs and their ready backends), the DNS zone (`zone.rs`), the
//! overlay peers and the NetworkPolicy table (`crate::policy`). Only differences are pushed to the data-plane thread.

use netstack::Protocol;
use netstack::overlay::OverlayPeer;
use netstack::service::{Affinity, Backend, ServiceKey};

use super::NodeRuntime;
use super::diff;
use crate::desired::{NodeDesired, overlay_peers};
use crate::model::services::{self, SwitchEntry};

impl NodeRuntime {
    /// Brings the switch's service table and DNS zone in line with `desired`.
    pub async fn apply_tables(&mut self, desired: &NodeDesired) {
        self.sync_services(desired).await;
        self.sync_zone(desired).await;
        self.sync_peers(desired).await;
        self.sync_proxies(desired).await;
        self.ingress.sync(desired).await;
        self.sync_policy(desired).await;
    }

    /// The switch's NetworkPolicy table, compiled again whenever what it is
    /// made of (policies, namespace labels, pods' addresses, labels and
    /// named ports) changed, and swapped in whole: new connections are
    /// judged by it at once, and flows it no longer admits are closed.
    async fn sync_policy(&mut self, desired: &NodeDesired) {
        if self.policy_pushed.as_ref() == Some(&desired.policy) {
            return;
        }
        let table = crate::policy::compile(&desired.policy, self.gateway);
        match self.dataplane.update(move |switch| switch.set_policy(table.clone())).await {
            Ok(closed) => {
                if closed > 0 {
                    tracing::info!(closed, "NetworkPolicy changed: closed the flows it no longer admits");
                }
                self.policy_pushed = Some(desired.policy.clone());
            }
            Err(e) => tracing::warn!("cannot program NetworkPolicy: {e}"),
        }
    }

    /// The overlay's peers: the config's static ones and the cluster's
    /// nodes, less records the overlay would refuse (checked, and warned
    /// about, only when the records change).
    async fn sync_peers(&mut self, desired: &NodeDesired) {
        let config = &self.options.config;
        if !config.overlay_enabled() {
            return;
        }
        if self.peers_usable.as_ref().is_none_or(|(seen, _)| *seen != desired.peers) {
            let fixed: Vec<OverlayPeer> =
                config.cluster.peers.iter().map(crate::config::PeerConfig::to_netstack).collect();
            let wanted =
                overlay_peers(&desired.peers, &fixed, config.network.cluster_cidr, self.options.subnet);
            self.peers_usable = Some((desired.peers.clone(), wanted));
        }
        let Some((_, wanted)) = &self.peers_usable else { return };
        if *wanted == self.peers_pushed {
            return;
        }
        let peers = wanted.clone();
        match self.dataplane.update(move |switch| switch.set_overlay_peers(&peers)).await {
            Ok(Ok(())) => self.peers_pushed = wanted.clone(),
            Ok(Err(e)) => tracing::warn!("cannot set overlay peers: {e}"),
            Err(e) => tracing::warn!("cannot set overlay peers: {e}"),
        }
    }

    /// The switch's service table: only the entries of Services that
    /// changed since the last call are made and pushed (the table is not
    /// rebuilt, nor held here a second time).
    async fn sync_services(&mut self, desired: &NodeDesired) {
        let wanted = diff::in_order(&desired.services);
        let (mut removed, mut changed): (Vec<ServiceKey>, Vec<SwitchEntry>) = (Vec::new(), Vec::new());
        for (old, new) in diff::differences(&self.services_pushed, &wanted) {
            let old = old.map_or_else(Vec::new, |(s, e)| services::switch_entries(s, e));
            let new = new.map_or_else(Vec::new, |(s, e)| services::switch_entries(s, e));
            removed.extend(old.iter().filter(|(k, ..)| !new.iter().any(|(n, ..)| n == k)).map(|(k, ..)| *k));
            changed.extend(new.into_iter().filter(|entry| !old.contains(entry)));
        }
        if !self.dns_tcp_pushed {
            // DNS over TCP to the cluster DNS address reaches the agent's listener.
            let dns_tcp = ServiceKey {
                vip: self.options.config.network.cluster_dns.into(),
                port: 53,
                proto: Protocol::Tcp,
            };
            let listener = Backend { ip: self.gateway.into(), port: self.dns_tcp_port };
            changed.push((dns_tcp, vec![listener], Affinity::None));
        }
        self.services_pushed = wanted;
        if removed.is_empty() && changed.is_empty() {
            return;
        }
        self.dns_tcp_pushed = true;
        let applied = self
            .dataplane
            .update(move |switch| {
                for key in &removed {
                    let _ = switch.remove_service(key);
                }
                changed
                    .iter()
                    .filter_map(|(key, backends, affinity)| {
                        switch
                            .upsert_service(*key, backends, *affinity)
                            .err()
                            .map(|e| format!("{}:{}: {e}", key.vip, key.port))
                    })
                    .collect::<Vec<_>>()
            })
            .await;
        match applied {
            Ok(errors) => errors.iter().for_each(|e| tracing::warn!("cannot program service {e}")),
            Err(e) => tracing::warn!("cannot program services: {e}"),
        }
    }
}
