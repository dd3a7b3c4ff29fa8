//! Placing pods on nodes, and keeping deployments at their replica count.

use super::{ControlError, ControlPlane, Key, Now, key};
use crate::model::PodSpec;

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
    /// replica count of pods from its current template, as one change to
    /// save. Returns whether anything changed.
    pub fn reconcile(&mut self, now: Now) -> bool {
        let settled = self.deployments.values().all(|d| {
            let owned = self.owned(&d.spec.namespace, &d.spec.name);
            let template = d.spec.pod_template();
            owned.len() == d.spec.replicas as usize
                && owned.iter().all(|o| runs(&self.pods[&o.key].record.spec, &template))
        });
        if settled {
            return false;
        }
        // A rollout that waits for new pods to be ready changes nothing:
        // then nothing waits to be saved either.
        let was_unsaved = self.unsaved.is_some();
        let changed = self.transact(|cp| Ok(cp.reconcile_pods(now))).unwrap_or(false);
        if !changed && !was_unsaved {
            self.unsaved = None;
        }
        changed
    }

    /// The pods of a deployment.
    fn owned(&self, namespace: &str, name: &str) -> Vec<Owned> {
        self.pods
            .iter()
            .filter(|(_, p)| {
                p.record.spec.namespace == namespace && p.record.spec.owner.as_deref() == Some(name)
            })
            .map(|(k, p)| Owned { created_at: p.record.created_at, key: k.clone(), ready: p.status.ready })
            .collect()
    }

    /// [`ControlPlane::reconcile`] inside a change already under way.
    ///
    /// A deployment whose template changed is rolled as Kubernetes'
    /// RollingUpdate (by default maxSurge 25% rounded up, maxUnavailable
    /// 25% rounded down, not both 0): new pods are made while there are at
    /// most replicas + maxSurge pods, and old ones are deleted (not-ready
    /// first) while at least replicas - maxUnavailable pods stay ready. It
    /// moves on at each turn as pods become ready. Recreate is the bounds
    /// (0, replicas): the old pods go, then the new come.
    pub(super) fn reconcile_pods(&mut self, now: Now) -> bool {
        let mut changed = false;
        let specs: Vec<_> = self.deployments.values().map(|d| d.spec.clone()).collect();
        for spec in specs {
            let template = spec.pod_template();
            let (mut new, mut old): (Vec<Owned>, Vec<Owned>) = self
                .owned(&spec.namespace, &spec.name)
                .into_iter()
                .partition(|o| runs(&self.pods[&o.key].record.spec, &template));
            let want = spec.replicas as usize;
            let (surge, unavailable) = spec.strategy.bounds(spec.replicas);
            let (surge, unavailable) = (surge as usize, unavailable as usize);
            let most = if old.is_empty() { want } else { want + surge };
            while new.len() < want && new.len() + old.len() < most {
                let pod =
                    PodSpec { name: format!("{}-{}", spec.name, self.rng.suffix()), ..template.clone() };
                match self.create_pod(now, pod) {
                    Ok(pod) => {
                        let key = key(&pod.spec.namespace, &pod.spec.name);
                        new.push(Owned { created_at: pod.created_at, key, ready: false });
                        changed = true;
                    }
                    Err(e) => {
                        tracing::warn!(deployment = %spec.name, "cannot create replica: {e}");
                        break;
                    }
                }
            }
            if new.len() > want {
                // Oldest first: a scale-down removes the youngest replicas.
                new.sort_by_key(|o| (o.created_at, o.key.clone()));
                for o in new.split_off(want) {
                    self.take_pod(&o.key);
                    changed = true;
                }
            }
            // Old pods go: the not-ready ones first, the ready ones while
            // enough pods stay ready.
            let mut ready = new.iter().chain(&old).filter(|o| o.ready).count();
            let floor = want.saturating_sub(unavailable);
            old.sort_by_key(|o| (o.ready, o.created_at, o.key.clone()));
            for o in old {
                if o.ready && ready <= floor {
                    break;
                }
                ready -= o.ready as usize;
                self.take_pod(&o.key);
                changed = true;
            }
        }
        changed
    }
}

/// One pod of a deployment.
struct Owned {
    created_at: u64,
    key: Key,
    ready: bool,
}

/// Whether `pod` runs `template`: the same but for its name, and for labels
/// and annotations added to it since (`kubectl label pod`).
fn runs(pod: &PodSpec, template: &PodSpec) -> bool {
    template.labels.iter().all(|(k, v)| pod.labels.get(k) == Some(v))
        && template.annotations.iter().all(|(k, v)| pod.annotations.get(k) == Some(v))
        && PodSpec {
            name: String::new(),
            labels: template.labels.clone(),
            annotations: template.annotations.clone(),
            ..pod.clone()
        } == *template
}
