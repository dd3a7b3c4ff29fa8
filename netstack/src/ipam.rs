//! Address allocation inside one node's pod subnet.
//!
//! A bitmap sized once from the subnet. Allocation walks forward from the last
//! address handed out (as the CNI host-local plugin does) so a just-freed IP is
//! not reused at once while peers may still hold it in ARP or flow tables.

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use crate::wire::{Ipv4Address, Ipv4Cidr};

/// Why an address could not be allocated or reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpamError {
    /// Every usable address of the subnet is taken.
    Exhausted,
    /// The address is not a usable host address of the subnet.
    OutOfRange,
    /// The address is already allocated.
    InUse,
    /// The subnet is too small (shorter than /30) or too large (wider than /16).
    BadSubnet,
}

impl fmt::Display for IpamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IpamError::Exhausted => "pod subnet exhausted",
            IpamError::OutOfRange => "address outside the pod subnet",
            IpamError::InUse => "address already in use",
            IpamError::BadSubnet => "pod subnet must be between /16 and /30",
        })
    }
}

impl core::error::Error for IpamError {}

/// The pool of host addresses of one subnet; the network address, the first
/// host (the gateway) and the broadcast address are never handed out.
#[derive(Debug, Clone)]
pub struct Pool {
    subnet: Ipv4Cidr,
    used: Vec<u64>,
    size: u32,
    next: u32,
    free: u32,
}

impl Pool {
    /// A pool over `subnet`, with its gateway (first host) reserved.
    pub fn new(subnet: Ipv4Cidr) -> Result<Pool, IpamError> {
        if !(16..=30).contains(&subnet.prefix_len()) {
            return Err(IpamError::BadSubnet);
        }
        let size = 1u32 << (32 - subnet.prefix_len());
        let mut pool = Pool {
            subnet: Ipv4Cidr::new(subnet.network().address(), subnet.prefix_len()),
            used: vec![0; size.div_ceil(64) as usize],
            size,
            next: 2,
            free: size,
        };
        for offset in [0, 1, size - 1] {
            pool.mark(offset);
        }
        Ok(pool)
    }

    /// The subnet this pool serves.
    pub fn subnet(&self) -> Ipv4Cidr {
        self.subnet
    }

    /// The gateway: the subnet's first host address.
    pub fn gateway(&self) -> Ipv4Address {
        self.address_at(1)
    }

    /// How many addresses are still free.
    pub fn free(&self) -> u32 {
        self.free
    }

    /// Hands out the next free address.
    pub fn allocate(&mut self) -> Result<Ipv4Address, IpamError> {
        if self.free == 0 {
            return Err(IpamError::Exhausted);
        }
        for step in 0..self.size {
            let offset = (self.next + step) % self.size;
            if !self.is_used(offset) {
                self.mark(offset);
                self.next = (offset + 1) % self.size;
                return Ok(self.address_at(offset));
            }
        }
        Err(IpamError::Exhausted)
    }

    /// Takes a specific address, as when restoring state after a restart.
    pub fn reserve(&mut self, address: Ipv4Address) -> Result<(), IpamError> {
        let offset = self.offset_of(address)?;
        if self.is_used(offset) {
            return Err(IpamError::InUse);
        }
        self.mark(offset);
        Ok(())
    }

    /// Gives an address back; releasing a free or foreign address does nothing.
    pub fn release(&mut self, address: Ipv4Address) {
        if let Ok(offset) = self.offset_of(address)
            && self.is_used(offset)
        {
            self.used[(offset / 64) as usize] &= !(1 << (offset % 64));
            self.free += 1;
        }
    }

    /// Offset of a usable host address within the subnet.
    fn offset_of(&self, address: Ipv4Address) -> Result<u32, IpamError> {
        if !self.subnet.contains_addr(&address) {
            return Err(IpamError::OutOfRange);
        }
        let offset = u32::from(address) - u32::from(self.subnet.network().address());
        if offset < 2 || offset == self.size - 1 {
            return Err(IpamError::OutOfRange);
        }
        Ok(offset)
    }

    fn address_at(&self, offset: u32) -> Ipv4Address {
        Ipv4Address::from(u32::from(self.subnet.network().address()) + offset)
    }

    fn is_used(&self, offset: u32) -> bool {
        self.used[(offset / 64) as usize] & (1 << (offset % 64)) != 0
    }

    fn mark(&mut self, offset: u32) {
        self.used[(offset / 64) as usize] |= 1 << (offset % 64);
        self.free -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(prefix: u8) -> Pool {
        Pool::new(Ipv4Cidr::new(Ipv4Address::new(10, 244, 0, 0), prefix)).unwrap()
    }

    #[test]
    fn first_address_follows_the_gateway() {
        let mut pool = pool(24);
        assert_eq!(pool.gateway(), Ipv4Address::new(10, 244, 0, 1));
        assert_eq!(pool.allocate(), Ok(Ipv4Address::new(10, 244, 0, 2)));
        assert_eq!(pool.allocate(), Ok(Ipv4Address::new(10, 244, 0, 3)));
        assert_eq!(pool.free(), 256 - 3 - 2);
    }

    #[test]
    fn a_released_address_is_not_reused_at_once() {
        let mut pool = pool(24);
        let a = pool.allocate().unwrap();
        pool.release(a);
        assert_ne!(pool.allocate().unwrap(), a);
    }

    #[test]
    fn exhaustion_is_reported_and_recovers() {
        let mut pool = pool(30); // .0 net, .1 gw, .2 host, .3 broadcast
        let only = pool.allocate().unwrap();
        assert_eq!(only, Ipv4Address::new(10, 244, 0, 2));
        assert_eq!(pool.allocate(), Err(IpamError::Exhausted));
        pool.release(only);
        assert_eq!(pool.allocate(), Ok(only));
    }

    #[test]
    fn reserve_rejects_reserved_taken_and_foreign_addresses() {
        let mut pool = pool(24);
        assert_eq!(pool.reserve(Ipv4Address::new(10, 244, 0, 1)), Err(IpamError::OutOfRange));
        assert_eq!(pool.reserve(Ipv4Address::new(10, 244, 0, 255)), Err(IpamError::OutOfRange));
        assert_eq!(pool.reserve(Ipv4Address::new(10, 244, 1, 9)), Err(IpamError::OutOfRange));
        assert_eq!(pool.reserve(Ipv4Address::new(10, 244, 0, 9)), Ok(()));
        assert_eq!(pool.reserve(Ipv4Address::new(10, 244, 0, 9)), Err(IpamError::InUse));
    }

    #[test]
    fn double_release_keeps_the_count_right() {
        let mut pool = pool(24);
        let a = pool.allocate().unwrap();
        let before = pool.free();
        pool.release(a);
        pool.release(a);
        assert_eq!(pool.free(), before + 1);
    }

    #[test]
    fn subnet_sizes_are_bounded() {
        let net = Ipv4Address::new(10, 0, 0, 0);
        assert_eq!(Pool::new(Ipv4Cidr::new(net, 8)).unwrap_err(), IpamError::BadSubnet);
        assert_eq!(Pool::new(Ipv4Cidr::new(net, 31)).unwrap_err(), IpamError::BadSubnet);
    }
}
