//! `[cluster]`: several wakeway replicas running one fleet, coordinated through etcd (see
//! `src/cluster/` and docs/cluster.md). Its raw shape, its canonical one and its checks.

use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;
use super::types::Config;
use super::types_service::Source;
use super::values::Dur;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCluster {
    etcd: Option<Vec<String>>,
    name: Option<String>,
    advertise: Option<String>,
    prefix: Option<String>,
    lease: Option<Dur>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    /// etcd endpoints (`http://host:port`); a call that cannot reach one tries the next.
    pub etcd: Vec<String>,
    /// This replica's name among the members; by default the host name.
    pub name: String,
    /// `host:port` where the other replicas reach this one (its internal endpoint, which it
    /// also listens on).
    pub advertise: String,
    /// Every key lives under it, so several clusters can share one etcd.
    pub prefix: String,
    /// The TTL of this replica's lease: a leader that dies is replaced within it.
    pub lease: Duration,
}

impl ClusterConfig {
    pub const DEFAULT_PREFIX: &str = "/wakeway";
    pub const DEFAULT_LEASE: Duration = Duration::from_secs(5);
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "wakeway".into())
}

pub(super) fn convert(raw: RawCluster) -> Result<ClusterConfig, ConfigError> {
    let etcd = raw.etcd.unwrap_or_default();
    if etcd.is_empty() {
        return Err(ConfigError::at_key(
            "cluster.etcd",
            "[cluster] needs at least one etcd endpoint, e.g. etcd = [\"http://127.0.0.1:2379\"]",
        ));
    }
    for (i, e) in etcd.iter().enumerate() {
        crate::cluster::etcd::authority_of(e)
            .map_err(|m| ConfigError::at_key(format!("cluster.etcd[{i}]"), m))?;
    }
    let Some(advertise) = raw.advertise else {
        return Err(ConfigError::at_key(
            "cluster.advertise",
            "[cluster] needs `advertise`: the host:port where the other replicas reach this one",
        ));
    };
    if !advertise
        .rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0))
    {
        return Err(ConfigError::at_key(
            "cluster.advertise",
            format!("`{advertise}` is not host:port"),
        ));
    }
    let prefix = raw
        .prefix
        .unwrap_or_else(|| ClusterConfig::DEFAULT_PREFIX.into());
    if !prefix.starts_with('/') || prefix.len() < 2 || prefix.ends_with('/') {
        return Err(ConfigError::at_key(
            "cluster.prefix",
            format!(
                "`{prefix}`: a prefix starts with `/` and does not end with one, e.g. \"/wakeway\""
            ),
        ));
    }
    let lease = raw.lease.map_or(ClusterConfig::DEFAULT_LEASE, |d| d.0);
    if lease < Duration::from_secs(2) || lease.subsec_nanos() != 0 {
        return Err(ConfigError::at_key(
            "cluster.lease",
            format!("{lease:?}: the lease is whole seconds, at least \"2s\" (etcd's smallest)"),
        ));
    }
    let name = raw.name.unwrap_or_else(hostname);
    if name.is_empty() || name.contains('/') {
        return Err(ConfigError::at_key(
            "cluster.name",
            format!("`{name}`: a member name is not empty and has no `/`"),
        ));
    }
    Ok(ClusterConfig {
        etcd,
        name,
        advertise,
        prefix,
        lease,
    })
}

/// A process service runs on one machine only: a fleet spread over replicas cannot run it.
pub(super) fn validate(config: &Config) -> Result<(), ConfigError> {
    if config.cluster.is_none() {
        return Ok(());
    }
    for (i, svc) in config.services.iter().enumerate() {
        if matches!(svc.source, Source::Command(_)) {
            return Err(ConfigError::at_key(
                format!("service[{i}].command"),
                format!(
                    "service `{}` runs a command (process runtime), whose instances live on one \
                     machine; with [cluster] every service runs an `image` (docker or swarm) or \
                     names `upstreams`",
                    svc.name
                ),
            ));
        }
    }
    Ok(())
}
