//! Ingresses and Secrets in the control plane: checked, stored with the
//! rest of the state (so with revisions, saved before they are
//! acknowledged, undone if saving fails), and handed to every node in its
//! desired state — the TLS Secrets podnet's Ingresses name, and no other.
//! An Ingress's status is derived, as a pod's: podnet's class is served on
//! every Ready node, so `status.loadBalancer.ingress` lists the addresses
//! of those that bound the Ingress ports (each node reports a port another
//! socket holds, members with their heartbeat), and a node going NotReady,
//! Ready again or losing its port is a change watchers see.

use std::net::IpAddr;

use super::{ControlError, ControlPlane, Now, key};
use crate::api::{Request, Response};
use crate::model::LoadBalancerStatus;
use crate::model::ingress::{Ingress, IngressSpec, check_ingress};
use crate::model::secret::{Secret, SecretSpec, SecretType, check_secret};

/// Most Ingresses a cluster holds.
pub(super) const MAX_INGRESSES: usize = 1000;
/// Most Secrets a cluster holds.
pub(super) const MAX_SECRETS: usize = 1000;

impl ControlPlane {
    /// Answers the Ingress and Secret requests.
    pub(super) fn ingress_request(&mut self, now: Now, request: Request) -> Result<Response, ControlError> {
        match request {
            Request::CreateIngress(spec) => self.put_ingress(now, spec, false).map(Response::Ingress),
            Request::UpdateIngress(spec) => self.put_ingress(now, spec, true).map(Response::Ingress),
            Request::GetIngresses { namespace } => {
                let status = self.ingress_status();
                Ok(Response::Ingresses {
                    items: self
                        .ingresses
                        .values()
                        .filter(|i| namespace.as_deref().is_none_or(|n| n == i.spec.namespace))
                        .map(|i| ingress_view(i, &status))
                        .collect(),
                    ports: Vec::new(),
                })
            }
            Request::DeleteIngress { namespace, name } => self.transact(|cp| {
                cp.ingresses.remove(&key(&namespace, &name)).ok_or(ControlError::NotFound {
                    kind: "ingress",
                    namespace,
                    name,
                })?;
                Ok(Response::Done)
            }),
            Request::CreateSecret(spec) => self.put_secret(now, spec, false).map(Response::Secret),
            Request::UpdateSecret(spec) => self.put_secret(now, spec, true).map(Response::Secret),
            Request::GetSecrets { namespace } => Ok(Response::Secrets(
                self.secrets
                    .values()
                    .filter(|s| namespace.as_deref().is_none_or(|n| n == s.spec.namespace))
                    .map(Secret::info)
                    .collect(),
            )),
            Request::DeleteSecret { namespace, name } => self.transact(|cp| {
                cp.secrets.remove(&key(&namespace, &name)).ok_or(ControlError::NotFound {
                    kind: "secret",
                    namespace,
                    name,
                })?;
                Ok(Response::Done)
            }),
            _ => unreachable!("only Ingress and Secret requests come here"),
        }
    }

    /// Creates an Ingress, or replaces one's spec (`replace`).
    fn put_ingress(&mut self, now: Now, spec: IngressSpec, replace: bool) -> Result<Ingress, ControlError> {
        check_ingress(&spec)?;
        let k = key(&spec.namespace, &spec.name);
        let ingress = match (self.ingresses.get(&k), replace) {
            (Some(_), false) => {
                return Err(ControlError::Exists {
                    kind: "ingress",
                    namespace: spec.namespace,
                    name: spec.name,
                });
            }
            (None, true) => {
                return Err(ControlError::NotFound {
                    kind: "ingress",
                    namespace: spec.namespace,
                    name: spec.name,
                });
            }
            (Some(old), true) => Ingress { spec, ..old.clone() },
            (None, false) => {
                if self.ingresses.len() >= MAX_INGRESSES {
                    return Err(ControlError::TooMany { kind: "ingress", max: MAX_INGRESSES });
                }
                Ingress { uid: self.rng.id(16), created_at: now.unix, spec, load_balancer: None }
            }
        };
        self.transact(|cp| {
            cp.ingresses.insert(k, ingress.clone());
            Ok(ingress_view(&ingress, &cp.ingress_status()))
        })
    }

    /// Where podnet's Ingresses are served: the addresses of the Ready
    /// nodes that bound the Ingress ports, in order, and which Ready nodes
    /// could not and why (worked out once per listing, not per Ingress).
    pub(super) fn ingress_status(&self) -> LoadBalancerStatus {
        let ready = || self.nodes.iter().filter(|(_, n)| n.ready);
        let mut ingress: Vec<IpAddr> = ready()
            .filter(|(_, n)| n.ingress_problem.is_none())
            .filter_map(|(_, n)| n.record.address)
            .collect();
        ingress.sort();
        ingress.dedup();
        let problems: Vec<String> = ready()
            .filter_map(|(name, n)| n.ingress_problem.as_ref().map(|p| format!("{p} ({name})")))
            .collect();
        LoadBalancerStatus { ingress, problem: (!problems.is_empty()).then(|| problems.join("; ")) }
    }

    /// Creates a Secret, or replaces one's data (`replace`).
    fn put_secret(
        &mut self,
        now: Now,
        spec: SecretSpec,
        replace: bool,
    ) -> Result<crate::model::secret::SecretInfo, ControlError> {
        check_secret(&spec)?;
        let k = key(&spec.namespace, &spec.name);
        let secret = match (self.secrets.get(&k), replace) {
            (Some(_), false) => {
                return Err(ControlError::Exists {
                    kind: "secret",
                    namespace: spec.namespace,
                    name: spec.name,
                });
            }
            (None, true) => {
                return Err(ControlError::NotFound {
                    kind: "secret",
                    namespace: spec.namespace,
                    name: spec.name,
                });
            }
            (Some(old), true) => Secret { spec, ..old.clone() },
            (None, false) => {
                if self.secrets.len() >= MAX_SECRETS {
                    return Err(ControlError::TooMany { kind: "secret", max: MAX_SECRETS });
                }
                Secret { uid: self.rng.id(16), created_at: now.unix, spec }
            }
        };
        self.transact(|cp| {
            cp.secrets.insert(k, secret.clone());
            Ok(secret.info())
        })
    }

    /// The TLS Secrets podnet's Ingresses name: what nodes need to serve
    /// HTTPS, and nothing more.
    pub(super) fn ingress_secrets(&self) -> Vec<Secret> {
        self.secrets
            .values()
            .filter(|s| s.spec.secret_type == SecretType::Tls)
            .filter(|s| {
                self.ingresses.values().any(|i| {
                    i.spec.is_podnet()
                        && i.spec.namespace == s.spec.namespace
                        && i.spec.tls.iter().any(|t| t.secret_name == s.spec.name)
                })
            })
            .cloned()
            .collect()
    }
}

/// An Ingress as the API shows it: podnet's class with `status`
/// ([`ControlPlane::ingress_status`]) as its status.
pub(super) fn ingress_view(ingress: &Ingress, status: &LoadBalancerStatus) -> Ingress {
    let mut out = ingress.clone();
    if ingress.spec.is_podnet() {
        out.load_balancer = Some(status.clone());
    }
    out
}
