//! The `swarm` runtime: each instance is the one task of a single-replica swarm service, so
//! the instance stays the unit wakeway controls. wakeway picks the victim of a scale-down,
//! drains it and removes its service; the swarm places tasks on nodes, enforces their limits
//! and runs them on whichever node fits.
//!
//! Requests reach each task exactly, never through the routing mesh or a virtual IP: the task's
//! port is published in host mode on a port its node picks, and wakeway connects to that node
//! (loopback for the node it talks to, the node's swarm address for the others).
//!
//! One [`SwarmEngine`] per wakeway talks to a manager for every swarm service: it follows the
//! local engine's container events (a killed task leaves the pool at once) and polls the tasks
//! (exits on other nodes, missed events), and at start finds the services a previous wakeway
//! left running. Services carry the docker runtime's labels (`wakeway.managed`,
//! `wakeway.scope`, `wakeway.service`, `wakeway.revision`, `wakeway.instance`, `wakeway.spec`)
//! plus `wakeway.image`.

mod engine;
mod runtime;
pub mod spec;

pub use engine::SwarmEngine;
pub use runtime::SwarmRuntime;
