//! Connections to instances, owned by one worker each: HTTP/1.1 (`h1`) and h2c (`h2`), each
//! protocol in its own file, and the pooled client (`client`) h2 requests use for HTTP/1.1.

pub mod client;
pub mod h1;
pub mod h2;
mod request_body;

use std::sync::Weak;

use crate::service::instance::{Instance, InstanceState};

/// Whether connections kept for `instance` may still be used: it is alive and in the pool.
fn routable(instance: &Weak<Instance>) -> bool {
    instance
        .upgrade()
        .is_some_and(|i| i.state() == InstanceState::Ready)
}

pub use h1::*;
pub use request_body::RequestBody;
