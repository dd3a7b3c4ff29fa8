//! The "device" work a NIC with offloads would do, in software: finishing
//! partial checksums and cutting TSO super-frames ([`gso`]), merging
//! received segments back into super-frames ([`gro`]), and laying a
//! super-frame's segments out as VXLAN datagrams for UDP GSO sends
//! ([`vxlan_batch`]). The formats these engines read and write are in
//! [`crate::wire`].

pub mod gro;
pub mod gso;
pub mod vxlan_batch;
