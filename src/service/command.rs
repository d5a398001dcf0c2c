//! What the admin API, the reloader and the request path ask of a service's controller.

use std::sync::Arc;

use tokio::sync::oneshot;

use super::instance::Instance;
use crate::config::{ServiceConfig, TrafficTarget};

/// What asked for a deployment or a traffic change: said in events and deployments, and some
/// decisions hang on it (a rollback is not undone by its own failure, a rollout's own steps do not
/// end it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    /// The admin API (or the CLI through it).
    Api,
    /// A config reload.
    Reload,
    /// `deploy.auto`: the source changed underneath.
    Auto,
    Rollback,
    /// A step of a gradual rollout.
    Rollout,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Api => "api",
            Trigger::Reload => "reload",
            Trigger::Auto => "auto",
            Trigger::Rollback => "rollback",
            Trigger::Rollout => "rollout",
        }
    }
}

impl std::fmt::Display for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a deployment treats the traffic.
#[derive(Debug, Clone, Default)]
pub struct DeployOptions {
    /// Start and gate the new revision, make it the latest, but move no traffic to it.
    pub no_traffic: bool,
    /// Give the new revision this tag (moved from any revision that had it).
    pub tag: Option<String>,
}

/// A gradual rollout as asked.
#[derive(Debug, Clone)]
pub struct RolloutPlan {
    /// `None`: the latest revision.
    pub revision: Option<String>,
    /// Percentages the revision gets, in order; the last is normally 100.
    pub steps: Vec<u32>,
    pub interval: std::time::Duration,
    /// Halt when more than this share of the revision's answers in a step are 5xx.
    pub max_error_rate: f64,
    /// Halt after this many failed probes, failed starts or exits of its instances.
    pub max_probe_failures: u32,
}

pub use super::controller::RolloutView;

pub type Reply<T> = oneshot::Sender<Result<T, String>>;

pub enum Command {
    /// Make a new revision from `config`'s source and switch to it blue/green. Replies with the
    /// deployment id once the deployment has begun.
    Deploy {
        config: Box<ServiceConfig>,
        trigger: Trigger,
        options: DeployOptions,
        reply: Reply<String>,
    },
    /// Share the traffic among revisions as `traffic` says (validated by the controller).
    SetTraffic {
        traffic: Vec<TrafficTarget>,
        trigger: Trigger,
        reply: Reply<()>,
    },
    /// Move traffic to a revision in steps, halting and going back when it fails.
    Promote {
        plan: RolloutPlan,
        reply: Reply<RolloutView>,
    },
    /// Deploy the revision before the current one, the same way.
    Rollback {
        reply: Reply<String>,
    },
    /// Drain every instance and answer 503 until resumed.
    Pause {
        reply: Reply<()>,
    },
    Resume {
        reply: Reply<()>,
    },
    /// Settings that are not part of a revision (scaling, health, queue, deploy, hosts); the
    /// running source, env and traffic stay. Replies whether anything changed.
    Update {
        config: Box<ServiceConfig>,
        reply: Reply<bool>,
    },
    /// The service left the config: drain and stop everything, then end the controller.
    Remove,
    /// What the request path saw go wrong at an instance; the controller decides what it means.
    Upstream {
        instance: Arc<Instance>,
        seen: Report,
    },
}

/// An upstream failure as the request path reports it, whatever the protocol (h1, h2, gRPC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// The connect was refused: nothing listens there any more.
    Refused,
    /// The connect timed out: perhaps only a full accept backlog under a burst.
    ConnectTimeout,
    /// The connection was reset or closed before any answer: a crash, or a connection the app
    /// dropped.
    Reset,
    /// No first response byte within `response_timeout`: a wedged or frozen app, or a slow one.
    FirstByteTimeout,
}
