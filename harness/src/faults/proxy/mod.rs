//! The network fault proxy (the `fault-proxy` crate, which runs in the lab's containers as `fortress
//! proxy`) and the harness's client of its control API.

pub use fault_proxy::*;

pub mod client;
