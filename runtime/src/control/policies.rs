//! NetworkPolicies and namespace labels: stored per namespace, checked as
//! the API server checks them (policyTypes defaulted first), numbered like
//! every object, and sent to every node with what they select (see
//! [`ControlPlane::policy_inputs`]), where `crate::policy` compiles them.

use std::collections::BTreeMap;

use super::updates::namespace_labels;
use super::{ControlError, ControlPlane, Now, key};
use crate::model::policy::{NAMESPACE_NAME_LABEL, NetworkPolicy, NetworkPolicySpec};
use crate::model::{Annotations, Labels, Namespace, check_annotations};
use crate::policy::{PolicyInputs, PolicyPod};

impl ControlPlane {
    /// Checks and stores a new NetworkPolicy.
    pub(super) fn create_policy(
        &mut self,
        now: Now,
        mut spec: NetworkPolicySpec,
    ) -> Result<NetworkPolicy, ControlError> {
        spec.default_policy_types();
        spec.check().map_err(crate::model::ModelError::from)?;
        let k = key(&spec.namespace, &spec.name);
        if self.policies.contains_key(&k) {
            return Err(ControlError::PolicyExists { namespace: spec.namespace, name: spec.name });
        }
        self.transact(|cp| {
            let policy = NetworkPolicy { uid: cp.rng.id(16), created_at: now.unix, spec };
            cp.policies.insert(k, policy.clone());
            Ok(policy)
        })
    }

    /// Replaces a NetworkPolicy's spec (its uid and age stay).
    pub(super) fn update_policy(
        &mut self,
        mut spec: NetworkPolicySpec,
    ) -> Result<NetworkPolicy, ControlError> {
        spec.default_policy_types();
        spec.check().map_err(crate::model::ModelError::from)?;
        let k = key(&spec.namespace, &spec.name);
        if !self.policies.contains_key(&k) {
            return Err(ControlError::no_policy(&spec.namespace, &spec.name));
        }
        self.transact(|cp| {
            let policy = cp.policies.get_mut(&k).expect("checked above");
            policy.spec = spec;
            Ok(policy.clone())
        })
    }

    /// Deletes a NetworkPolicy.
    pub(super) fn delete_policy(&mut self, namespace: &str, name: &str) -> Result<(), ControlError> {
        self.transact(|cp| {
            cp.policies
                .remove(&key(namespace, name))
                .ok_or_else(|| ControlError::no_policy(namespace, name))?;
            Ok(())
        })
    }

    /// Replaces the labels of an existing namespace (one that only holds
    /// objects, or `default`, is stored from now on).
    pub(super) fn update_namespace(
        &mut self,
        now: Now,
        name: String,
        labels: Labels,
        annotations: Annotations,
    ) -> Result<Namespace, ControlError> {
        if !self.namespace_exists(&name) {
            return Err(ControlError::NoNamespace(name));
        }
        let labels = namespace_labels(labels)?;
        check_annotations(&annotations)?;
        self.transact(|cp| {
            let namespace = cp.namespaces.entry(name.clone()).or_insert_with(|| Namespace {
                name,
                created_at: now.unix,
                labels: Labels::new(),
                annotations: Annotations::new(),
            });
            namespace.labels = labels;
            namespace.annotations = annotations;
            Ok(namespace.clone())
        })
    }

    /// What every node needs to compile the policies: the policies, the
    /// labels of every namespace that has pods, and every pod's address,
    /// labels and named ports. Empty when there is no policy: nothing is
    /// isolated then, and no node needs the rest.
    pub(super) fn policy_inputs(&self) -> PolicyInputs {
        if self.policies.is_empty() {
            return PolicyInputs::default();
        }
        let mut namespaces: BTreeMap<String, Labels> = BTreeMap::new();
        let pods = self
            .pods
            .values()
            .filter_map(|p| {
                // The switch's policy table is IPv4, as every pod is (inputs
                // refuse IPv6).
                let std::net::IpAddr::V4(ip) = p.record.ip else { return None };
                let spec = &p.record.spec;
                namespaces.entry(spec.namespace.clone()).or_insert_with(|| {
                    self.namespaces.get(&spec.namespace).map_or_else(
                        || Labels::from([(NAMESPACE_NAME_LABEL.to_string(), spec.namespace.clone())]),
                        Namespace::all_labels,
                    )
                });
                Some(PolicyPod {
                    ip,
                    namespace: spec.namespace.clone(),
                    labels: spec.labels.clone(),
                    ports: spec
                        .template
                        .ports
                        .iter()
                        .filter_map(|c| Some((c.name.clone()?, c.protocol, c.port)))
                        .collect(),
                })
            })
            .collect();
        PolicyInputs {
            policies: self.policies.values().map(|p| p.spec.clone()).collect(),
            namespaces: namespaces.into_iter().collect(),
            pods,
        }
    }
}
