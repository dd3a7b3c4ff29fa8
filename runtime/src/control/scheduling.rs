//! Placing pods on nodes, and keeping deployments at their replica count.

use super::{ControlError, ControlPlane, Key, Now, key};
use crate::model::{PodSpec, RestartPolicy};

impl ControlPlane {
    /// The node a new pod goes to: the one it names, else the ready node
    /// with the fewest pods (the local one on a tie).
    pub(super) fn place(&self, spec: &PodSpec) -> Result<String, ControlError> {
        if let Some(node) = &spec.node_name {
            if !self.nodes.contains_key(node) {
                return Err(ControlError::NoNode(node.clone()));
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
            .ok_or(ControlError::NoReadyNode)
    }

    /// Creates or deletes deployment pods until each deployment has its
    /// replica count, as one change to save. Returns whether anything changed.
    pub fn reconcile(&mut self, now: Now) -> bool {
        if !self
            .deployments
            .values()
            .any(|d| self.owned(&d.spec.namespace, &d.spec.name).len() != d.spec.replicas as usize)
        {
            return false;
        }
        self.transact(|cp| Ok(cp.reconcile_pods(now))).unwrap_or(false)
    }

    /// The pods of a deployment.
    fn owned(&self, namespace: &str, name: &str) -> Vec<(u64, Key)> {
        self.pods
            .iter()
            .filter(|(_, p)| {
                p.record.spec.namespace == namespace && p.record.spec.owner.as_deref() == Some(name)
            })
            .map(|(k, p)| (p.record.created_at, k.clone()))
            .collect()
    }

    /// [`ControlPlane::reconcile`] inside a change already under way.
    pub(super) fn reconcile_pods(&mut self, now: Now) -> bool {
        let mut changed = false;
        let specs: Vec<_> = self.deployments.values().map(|d| d.spec.clone()).collect();
        for spec in specs {
            let mut owned = self.owned(&spec.namespace, &spec.name);
            let want = spec.replicas as usize;
            while owned.len() < want {
                let pod = PodSpec {
                    name: format!("{}-{}", spec.name, self.rng.suffix()),
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
                    image: spec.image.clone(),
                    resources: spec.resources,
                };
                match self.create_pod(now, pod) {
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
            }
        }
        changed
    }
}
