//! Fixtures shared by netstack's tests and the fuzz targets (feature
//! `testing`): the addresses of a test cluster ([`addr`]), frames built with
//! smoltcp's emitters ([`frames`]), and a node's switch ([`node`]). Not part
//! of the data plane: nothing here is compiled into podnet.

pub mod addr;
pub mod frames;
pub mod node;

pub use addr::*;
pub use frames::*;
pub use node::*;
