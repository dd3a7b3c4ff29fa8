//! Placing pods on nodes, and keeping deployments at their replica count.

use super::{ControlPlane, Key, key};
use crate::model::{PodSpec, RestartPolicy};
use crate::sys::random;

impl ControlPlane {
    /// The node a new pod goes to: the one it names, else the ready node
    /// with the fewest pods (the local one on a tie).
    pub(super) fn place(&self, spec: &PodSpec) -> Result<String, String> {
        if let Some(node) = &spec.node_name {
            if !self.nodes.contains_key(node) {
                return Err(format!("node `{node}` not found: list nodes with `podnet get nodes`"));
            }
            return Ok(node.clone());
        }
        self.nodes
            .values()
            .filter(|n| n.ready)
            .min_by_key(|n| {
                let pods = self.pods.values().filter(|p| p.record.node == n.record.name).count();
                (pods, n.record.name != self.local)
            })
            .map(|n| n.record.name.clone())
            .ok_or_else(|| "no Ready node to run the pod on".into())
    }

    /// Creates or deletes deployment pods until each deployment has its
    /// replica count. Returns whether anything changed.
    pub fn reconcile(&mut self) -> bool {
        let mut changed = false;
        let specs: Vec<_> = self.deployments.values().map(|d| d.spec.clone()).collect();
        for spec in specs {
            let mut owned: Vec<(u64, Key)> = self
                .pods
                .iter()
                .filter(|(_, p)| {
                    p.record.spec.namespace == spec.namespace
                        && p.record.spec.owner.as_deref() == Some(&spec.name)
                })
                .map(|(k, p)| (p.record.created_at, k.clone()))
                .collect();
            let want = spec.replicas as usize;
            while owned.len() < want {
                let pod = PodSpec {
                    name: format!("{}-{}", spec.name, random::suffix()),
                    namespace: spec.namespace.clone(),
                    labels: spec.labels.clone(),
                    command: spec.command.clone(),
                    restart_policy: RestartPolicy::Always,
                    owner: Some(spec.name.clone()),
                    ports: spec.ports.clone(),
                    readiness: spec.readiness.clone(),
                    node_name: None,
                    host_ports: spec.host_ports.clone(),
                    security: spec.security,
                };
                match self.create_pod(pod) {
                    Ok(pod) => {
                        owned.push((pod.created_at, key(&pod.spec.namespace, &pod.spec.name)));
                        changed = true;
                    }
                    Err(e) => {
                        tracing::warn!(deployment = %spec.name, "cannot create replica: {e}");
                        break;
                    }
                }
            }
            if owned.len() > want {
                // Oldest first: a scale-down removes the youngest replicas.
                owned.sort();
                for (_, k) in owned.split_off(want) {
                    self.take_pod(&k);
                    changed = true;
                }
                if let Err(e) = self.save() {
                    tracing::warn!("{e}");
                }
            }
        }
        changed
    }
}
