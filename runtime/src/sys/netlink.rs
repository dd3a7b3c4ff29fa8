//! Interface configuration over rtnetlink: the calls `ip link`, `ip addr` and
//! `ip route` would make. A netlink socket belongs to the network namespace
//! it was opened in, so a [`Netlink`] opened on a thread inside a pod's
//! namespace configures that pod.

use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};

use super::SysError;

/// A netlink connection bound to the namespace it was opened in.
pub struct Netlink {
    handle: Handle,
}

/// How one interface should be set up.
#[derive(Debug, Clone)]
pub struct LinkSetup {
    /// Interface name.
    pub name: String,
    /// MAC address.
    pub mac: [u8; 6],
    /// MTU.
    pub mtu: u32,
    /// Frames the device queues (`ip link set ... txqueuelen`).
    pub txqueuelen: u32,
    /// Address and prefix length.
    pub address: (Ipv4Addr, u8),
    /// Default gateway, if any.
    pub gateway: Option<Ipv4Addr>,
}

impl Netlink {
    /// Opens a connection in the calling thread's namespace; its driver task
    /// runs on the current tokio runtime.
    pub fn open() -> Result<Netlink, SysError> {
        let (connection, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(connection);
        Ok(Netlink { handle })
    }

    /// Index of the interface called `name`.
    pub async fn index(&self, name: &str) -> Result<u32, SysError> {
        let mut links = self.handle.link().get().match_name(name.to_string()).execute();
        match links.try_next().await? {
            Some(link) => Ok(link.header.index),
            None => Err(SysError::NoInterface(name.to_string())),
        }
    }

    /// Deletes the interface called `name` (a CNI container's, on DEL).
    pub async fn delete(&self, name: &str) -> Result<(), SysError> {
        let index = self.index(name).await?;
        Ok(self.handle.link().del(index).execute().await?)
    }

    /// Brings an interface up with no other change (used for `lo`).
    pub async fn up(&self, name: &str) -> Result<(), SysError> {
        let index = self.index(name).await?;
        let msg = LinkUnspec::new_with_index(index).up().build();
        Ok(self.handle.link().set(msg).execute().await?)
    }

    /// Sets MAC, MTU and queue length, adds the address, brings the link up, and adds the
    /// default route when a gateway is given.
    pub async fn configure(&self, setup: &LinkSetup) -> Result<(), SysError> {
        let index = self.index(&setup.name).await?;
        let msg = LinkUnspec::new_with_index(index)
            .address(setup.mac.to_vec())
            .mtu(setup.mtu)
            .txqueuelen(setup.txqueuelen)
            .build();
        self.handle.link().set(msg).execute().await?;
        let (ip, prefix) = setup.address;
        self.handle.address().add(index, IpAddr::V4(ip), prefix).execute().await?;
        let msg = LinkUnspec::new_with_index(index).up().build();
        self.handle.link().set(msg).execute().await?;
        if let Some(gateway) = setup.gateway {
            let route = RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(Ipv4Addr::UNSPECIFIED, 0)
                .gateway(gateway)
                .output_interface(index)
                .build();
            self.handle.route().add(route).execute().await?;
        }
        Ok(())
    }

    /// Adds a route to `dst/prefix` out of `name` (the node's route to a pod CIDR).
    pub async fn add_route(&self, name: &str, dst: Ipv4Addr, prefix: u8) -> Result<(), SysError> {
        let index = self.index(name).await?;
        let route = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(dst, prefix)
            .output_interface(index)
            .build();
        Ok(self.handle.route().add(route).execute().await?)
    }
}
