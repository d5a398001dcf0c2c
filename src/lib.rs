//! Wakeway: a request-driven autoscaling reverse proxy. `App::build` binds every listener and
//! returns the real addresses; `App::run` serves until the shutdown future resolves, then drains.

pub mod admin;
pub mod app;
pub mod client;
pub mod cluster;
pub mod config;
pub mod events;
pub mod history;
pub mod metrics;
pub mod proxy;
pub mod replay;
pub mod runtime;
pub mod service;
pub mod tls;
pub mod whoami;
pub mod whoami_grpc;

pub use app::{App, BuildError, State};
