//! What the `docker` and `swarm` runtimes share: both talk to a docker engine API (the local
//! engine, or a swarm manager), label what they make the same way, adopt what a previous
//! wakeway left and follow the engine's events to notice exits. A fix to any of these lands
//! here, once; `docker/` and `swarm/` keep only what differs (containers against swarm
//! services and their tasks).

pub(crate) mod adopt;
pub(crate) mod backend;
pub(crate) mod client;
pub mod connection;
pub(crate) mod follow;
pub mod labels;
pub(crate) mod leftovers;
pub(crate) mod watch;

pub use client::DEFAULT_ENDPOINT;
