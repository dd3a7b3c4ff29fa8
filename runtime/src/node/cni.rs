//! CNI containers on this node: the interface podnet makes in the network
//! namespace another runtime (podman, containerd) made for a container —
//! a TAP the agent holds, as a pod's `eth0` is, with the address, MAC, MTU
//! and default route of a pod — plugged into the switch as a pod port, so
//! the container gets a pod's anti-spoofing, Services and DNS. The TAP is
//! persistent: a restarted agent opens it again by name, and only DEL (or
//! GC) deletes it. The namespace and the container stay the runtime's.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use netstack::switch::{PortKind, PortSpec};
use netstack::wire::EthernetAddress;

use super::pods::LocalPod;
use super::{NodeError, NodeRuntime};
use crate::api::CniAttached;
use crate::dataplane::tap;
use crate::model::unix_now;
use crate::node::pod::log::RotatingLog;
use crate::node::pod::mac_for;
use crate::store::PodRecord;
use crate::sys::netlink::{LinkSetup, Netlink};
use crate::sys::{SysError, netns};

impl NodeRuntime {
    /// Makes (or, after an agent restart, opens again) the container's
    /// interface and plugs it into the switch as the pod's port.
    pub(super) async fn start_attachment(&mut self, record: PodRecord) -> Result<(), NodeError> {
        let attachment = record.spec.attachment.clone().expect("caller checked");
        let pod_name = format!("{}/{}", record.spec.namespace, record.spec.name);
        let ip = record.ipv4()?;
        let setup = LinkSetup {
            name: attachment.ifname.clone(),
            mac: mac_for(ip),
            mtu: self.options.config.pod_mtu(),
            txqueuelen: tap::QUEUE_LEN,
            address: (ip, self.options.subnet.prefix_len()),
            gateway: Some(self.gateway),
        };
        let path = attachment.netns.clone();
        let queues = self.dataplane.threads();
        let fd =
            tokio::task::spawn_blocking(move || plug(&path, setup, queues)).await?.map_err(|source| {
                NodeError::Plug {
                    what: format!(
                        "interface {} in {} for pod {pod_name}",
                        attachment.ifname,
                        attachment.netns.display()
                    ),
                    source,
                }
            })?;
        let port_spec = PortSpec { kind: PortKind::Pod, mac: EthernetAddress(mac_for(ip)), ip: ip.into() };
        let port = match self.dataplane.attach(port_spec, fd).await {
            Ok(port) => port,
            Err(source) => {
                unplug_off_loop(attachment.netns.clone(), attachment.ifname.clone()).await;
                return Err(NodeError::AttachPod { pod: pod_name, source });
            }
        };
        let log = RotatingLog::shared(self.log_paths(&record.spec), self.log_limits());
        let netns = attachment.netns.display().to_string();
        let mut pod = LocalPod::new(record, netns, port, log);
        // Nothing of podnet's runs in it: the container is up once plugged.
        pod.started(unix_now());
        pod.events.normal(
            unix_now(),
            "Attached",
            format!(
                "Interface {} in {} plugged into the switch",
                attachment.ifname,
                attachment.netns.display()
            ),
        );
        self.pods.insert(pod.record.uid.clone(), pod);
        Ok(())
    }

    /// Unplugs a CNI container's port; when it is gone for good (DEL, GC,
    /// `podnet delete pod`) its interface is deleted too, while an agent that
    /// stops leaves it for the next one.
    pub(super) async fn teardown_attachment(&self, pod: LocalPod, forget: bool) {
        if let Some(port) = pod.port {
            let _ = self.dataplane.detach(port).await;
        }
        if let Ok(ip) = pod.record.ipv4() {
            self.egress.forget_pod(ip);
        }
        if forget && let Some(attachment) = &pod.record.spec.attachment {
            unplug_off_loop(attachment.netns.clone(), attachment.ifname.clone()).await;
            pod.log.lock().unwrap_or_else(|e| e.into_inner()).close();
            self.log_paths(&pod.record.spec).remove();
        }
    }

    /// What a CNI ADD reports for pod `uid`, once it is plugged in.
    pub fn cni_attached(&self, uid: &str) -> Option<CniAttached> {
        let pod = self.pods.get(uid).filter(|p| p.port.is_some())?;
        let net = &self.options.config.network;
        let domain = net.cluster_domain.clone();
        let namespace = &pod.record.spec.namespace;
        Some(CniAttached {
            pod: format!("{namespace}/{}", pod.record.spec.name),
            ip: pod.record.ip,
            prefix: self.options.subnet.prefix_len(),
            gateway: self.gateway,
            mac: mac_for(pod.record.ipv4().ok()?),
            mtu: self.options.config.pod_mtu(),
            nameserver: net.cluster_dns,
            search: vec![format!("{namespace}.svc.{domain}"), format!("svc.{domain}"), domain.clone()],
            domain,
        })
    }

    /// CNI CHECK on this node: pod `uid` is plugged into the switch and its
    /// interface is in the container's namespace.
    pub async fn check_attachment(&self, uid: &str) -> Result<(), NodeError> {
        let pod = self.pods.get(uid);
        let name =
            pod.map_or_else(String::new, |p| format!("{}/{}", p.record.spec.namespace, p.record.spec.name));
        let not = |why: String| NodeError::NotAttached { pod: name.clone(), why };
        let pod = pod
            .filter(|p| p.port.is_some())
            .ok_or_else(|| not("it is not plugged into the switch".into()))?;
        let attachment =
            pod.record.spec.attachment.clone().ok_or_else(|| not("it is no CNI container".into()))?;
        let (path, ifname) = (attachment.netns.clone(), attachment.ifname.clone());
        let found = tokio::task::spawn_blocking(move || {
            netns::run_in(&path, move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                runtime.block_on(async { Netlink::open()?.index(&ifname).await })
            })
        })
        .await?;
        found.map(drop).map_err(|e| {
            not(format!("no interface {} in {}: {e}", attachment.ifname, attachment.netns.display()))
        })
    }
}

/// In the namespace at `netns`: opens the TAP `setup.name` — attaching to
/// the persistent one a previous agent made, else creating, configuring and
/// persisting it. An existing interface of another kind is refused by the
/// kernel (the spec's ADD must fail when the interface exists).
fn plug(netns: &Path, setup: LinkSetup, queues: usize) -> Result<Vec<OwnedFd>, SysError> {
    netns::run_in(netns, move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        runtime.block_on(async {
            let netlink = Netlink::open()?;
            let existed = netlink.index(&setup.name).await.is_ok();
            let fd = tap::open(&setup.name, queues).map_err(|e| match existed {
                // Not a TAP (the kernel's EINVAL): the runtime or another
                // plugin made it, and the spec's ADD must fail.
                true => std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    format!(
                        "the namespace already has an interface {} that is not podnet's ({e})",
                        setup.name
                    ),
                ),
                false => e,
            })?;
            if existed {
                return Ok(fd);
            }
            // The switch carries IPv4 only; per-namespace sysctls resolve
            // against the writer's namespace.
            let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", setup.name), "1");
            netlink.configure(&setup).await?;
            // Persistent last: a failed setup goes with the fd.
            tap::persist(&fd)?;
            Ok(fd)
        })
    })
}

/// Deletes a CNI container's interface, on a blocking thread; a namespace
/// or interface already gone is what DEL wants.
async fn unplug_off_loop(netns: PathBuf, ifname: String) {
    let result = tokio::task::spawn_blocking(move || {
        if !netns.exists() {
            return Ok(());
        }
        netns::run_in(&netns, move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async {
                match Netlink::open()?.delete(&ifname).await {
                    Err(SysError::NoInterface(_)) => Ok(()),
                    other => other,
                }
            })
        })
    })
    .await;
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!("cannot delete a CNI container's interface: {e}"),
        Err(e) => tracing::warn!("cannot delete a CNI container's interface: {e}"),
    }
}
