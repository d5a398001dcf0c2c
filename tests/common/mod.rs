//! Black-box test harness: spawns the real `wakeway` binary and talks to it over real sockets.
//!
//! - [`Proc`] runs any `wakeway` subcommand, drains its stdout and stderr into buffers (dumped
//!   when a test fails), and stops it on drop (SIGTERM, then SIGKILL).
//! - [`Wakeway`] runs `wakeway run -c FILE` with a config written to a temp dir and knows the
//!   proxy and admin addresses it printed.
//! - [`send`], [`get`], [`admin_json`] are small HTTP helpers on a fresh connection each.
//! - [`wait_for`] polls a condition with a deadline: tests never sleep to synchronise.
//! - [`docker`] builds the test image and gives each docker test its own scope and cleanup.
//!
//! One file per concern: [`process`] (child processes, signals), [`fixture`] (`wakeway run`),
//! [`client`] (HTTP and admin calls), [`wait`] (polling with a deadline), [`scrape`] (Prometheus
//! text), [`configs`] (config pieces, ports, paths), [`load`] (steady load and its samples),
//! [`releases`] (deployments and what a release test asserts), [`chromium`] (headless pages),
//! [`split`] (a service with a split, a failed deploy and traffic), plus [`raw`], [`h2c`], [`tls`],
//! [`docker`] (with its swarm side) for their own protocols and runtimes.

// Each test file uses a different subset of the harness.
#![allow(dead_code)]

pub mod chromium;
pub mod client;
pub mod cluster;
pub mod configs;
pub mod docker;
pub mod engine_scenarios;
pub mod failures;
pub mod fixture;
pub mod grpc;
pub mod h2c;
pub mod keepalive;
pub mod load;
pub mod pebble;
pub mod process;
pub mod python_apps;
pub mod raw;
pub mod releases;
pub mod scrape;
pub mod split;
pub mod tls;
pub mod wait;

// Re-exported flat so tests keep writing `common::get`; each test uses a subset.
#[allow(unused_imports)]
pub use client::*;
#[allow(unused_imports)]
pub use configs::*;
#[allow(unused_imports)]
pub use fixture::*;
#[allow(unused_imports)]
pub use load::*;
#[allow(unused_imports)]
pub use process::*;
#[allow(unused_imports)]
pub use releases::*;
#[allow(unused_imports)]
pub use scrape::*;
#[allow(unused_imports)]
pub use wait::*;

use std::time::Duration;

/// The deadline for anything that should happen "soon" (cold starts, scale events, exits).
/// Generous: tests run on two loaded cores.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Upper bound on any single HTTP exchange, so a broken proxy fails a test instead of hanging it.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The binary under test.
pub const WAKEWAY: &str = env!("CARGO_BIN_EXE_wakeway");

/// `[proxy]` and `[admin]` on OS-picked loopback ports; append `[[service]]` tables to it.
pub const LISTEN_ANY: &str = r#"
[proxy]
listen = "127.0.0.1:0"

[admin]
listen = "127.0.0.1:0"
"#;
