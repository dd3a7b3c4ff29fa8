//! Interface configuration over rtnetlink: the calls `ip link`, `ip addr` and
//! `ip route` would make. A netlink socket belongs to the network namespace
//! it was opened in, so a [`Netlink`] opened on a thread inside a pod's
//! namespace configures that pod.

use std::io;
use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};

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

fn nl_err(e: rtnetlink::Error) -> io::Error {
    io::Error::other(format!("netlink: {e}"))
}

impl Netlink {
    /// Opens a connection in the calling thread's namespace; its driver task
    /// runs on the current tokio runtime.
    pub fn open() -> io::Result<Netlink> {
        let (connection, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(connection);
        Ok(Netlink { handle })
    }

    /// Index of the interface called `name`.
    pub async fn index(&self, name: &str) -> io::Result<u32> {
        let mut links = self.handle.link().get().match_name(name.to_string()).execute();
        match links.try_next().await.map_err(nl_err)? {
            Some(link) => Ok(link.header.index),
            None => Err(io::Error::new(io::ErrorKind::NotFound, format!("no interface {name}"))),
        }
    }

    /// Brings an interface up with no other change (used for `lo`).
    pub async fn up(&self, name: &str) -> io::Result<()> {
        let index = self.index(name).await?;
        let msg = LinkUnspec::new_with_index(index).up().build();
        self.handle.link().set(msg).execute().await.map_err(nl_err)
    }

    /// Sets MAC, MTU and queue length, adds the address, brings the link up, and adds the
    /// default route when a gateway is given.
    pub async fn configure(&self, setup: &LinkSetup) -> io::Result<()> {
        let index = self.index(&setup.name).await?;
        let msg = LinkUnspec::new_with_index(index)
            .address(setup.mac.to_vec())
            .mtu(setup.mtu)
            .txqueuelen(setup.txqueuelen)
            .build();
        self.handle.link().set(msg).execute().await.map_err(nl_err)?;
        let (ip, prefix) = setup.address;
        self.handle.address().add(index, IpAddr::V4(ip), prefix).execute().await.map_err(nl_err)?;
        let msg = LinkUnspec::new_with_index(index).up().build();
        self.handle.link().set(msg).execute().await.map_err(nl_err)?;
        if let Some(gateway) = setup.gateway {
            let route = RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(Ipv4Addr::UNSPECIFIED, 0)
                .gateway(gateway)
                .output_interface(index)
                .build();
            self.handle.route().add(route).execute().await.map_err(nl_err)?;
        }
        Ok(())
    }

    /// Adds a route to `dst/prefix` out of `name` (the node's route to a pod CIDR).
    pub async fn add_route(&self, name: &str, dst: Ipv4Addr, prefix: u8) -> io::Result<()> {
        let index = self.index(name).await?;
        let route = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(dst, prefix)
            .output_interface(index)
            .build();
        self.handle.route().add(route).execute().await.map_err(nl_err)
    }
}
