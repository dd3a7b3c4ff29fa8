//! CNI attachments as the control plane keeps them: a container another
//! runtime runs, networked by podnet as its CNI plugin, is a pod placed on
//! the node whose plugin was called, with an address from that node's
//! subnet. It runs nothing (the runtime does); the node plugs the
//! container's namespace into its switch. ADD fails for an attachment that
//! exists, DEL of an unknown one succeeds, GC frees what the runtime no
//! longer lists.

use super::{ControlError, ControlPlane, Key, Now, key};
use crate::api::{CniAdd, Request, Response};
use crate::model::cni::{self, CniAttachment};
use crate::model::{PodSpec, RestartPolicy, check_name};

/// The namespace of a container the runtime gave none for.
const DEFAULT_NAMESPACE: &str = "default";

impl ControlPlane {
    /// Answers a CNI request made on `node` at `now`.
    pub fn cni(&mut self, now: Now, node: &str, request: Request) -> Result<Response, ControlError> {
        match request {
            Request::CniAdd(add) => self.cni_add(now, node, add).map(Response::Pod),
            Request::CniDel { container_id, ifname } => {
                let Some(k) = self.attachment(node, &container_id, &ifname) else {
                    return Ok(Response::Done);
                };
                self.transact(|cp| {
                    cp.take_pod(&k);
                    Ok(Response::Done)
                })
            }
            Request::CniCheck { container_id, ifname } => Ok(Response::Pods(
                self.attachment(node, &container_id, &ifname)
                    .map(|k| self.pod(&self.pods[&k]))
                    .into_iter()
                    .collect(),
            )),
            Request::CniGc { network, valid } => {
                let stale: Vec<Key> = self
                    .pods
                    .iter()
                    .filter(|(_, p)| p.record.node == node)
                    .filter(|(_, p)| {
                        p.record.spec.attachment.as_ref().is_some_and(|a| {
                            a.network == network
                                && !valid
                                    .iter()
                                    .any(|(id, ifname)| *id == a.container_id && *ifname == a.ifname)
                        })
                    })
                    .map(|(k, _)| k.clone())
                    .collect();
                if stale.is_empty() {
                    return Ok(Response::Done);
                }
                self.transact(|cp| {
                    for k in &stale {
                        cp.take_pod(k);
                    }
                    Ok(Response::Done)
                })
            }
            Request::CniStatus => Ok(Response::Done),
            _ => Err(ControlError::NodeLocal),
        }
    }

    /// Makes the pod of a new attachment on `node`.
    fn cni_add(&mut self, now: Now, node: &str, add: CniAdd) -> Result<crate::model::Pod, ControlError> {
        let CniAdd { attachment, name, namespace } = add;
        attachment.check()?;
        if let Some(k) = self.attachment(node, &attachment.container_id, &attachment.ifname) {
            return Err(ControlError::AttachmentExists {
                container_id: attachment.container_id,
                ifname: attachment.ifname,
                pod: format!("{}/{}", k.0, k.1),
            });
        }
        let max = self.config.limits.max_pods;
        if self.pods.values().filter(|p| p.record.node == node).count() >= max as usize {
            return Err(ControlError::NodeFull { node: node.into(), max });
        }
        let name = match name {
            Some(name) => cni::with_ifname(&name, &attachment.ifname),
            None => attachment.default_pod_name(),
        };
        let namespace = namespace.unwrap_or_else(|| DEFAULT_NAMESPACE.into());
        check_name("pod", &name, 63)?;
        check_name("namespace", &namespace, 63)?;
        let spec = PodSpec {
            name,
            namespace,
            restart_policy: RestartPolicy::Never,
            node_name: Some(node.into()),
            attachment: Some(attachment),
            ..Default::default()
        };
        self.transact(|cp| cp.create_pod(now, spec))
    }

    /// The pod of attachment (container id, interface) on `node`.
    fn attachment(&self, node: &str, container_id: &str, ifname: &str) -> Option<Key> {
        self.pods
            .iter()
            .find(|(_, p)| {
                p.record.node == node
                    && p.record
                        .spec
                        .attachment
                        .as_ref()
                        .is_some_and(|a: &CniAttachment| a.container_id == container_id && a.ifname == ifname)
            })
            .map(|(k, _)| key(&k.0, &k.1))
    }
}
