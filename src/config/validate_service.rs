//! Semantic checks on `[[service.traffic]]` and `[service.scaling.idle_ignore]`. Both apply only
//! to services wakeway starts and stops (`command`, `image`): a static service has neither
//! revisions to split between nor instances to stop.

use std::collections::BTreeMap;

use super::ConfigError;
use super::types_service::*;

type Result<T = ()> = std::result::Result<T, ConfigError>;

fn fail(key: impl Into<String>, message: impl Into<String>) -> Result {
    Err(ConfigError::at_key(key, message))
}

/// A tag becomes part of a host name (`canary--web.example.com`): one DNS label, kept short.
const MAX_TAG_LEN: usize = 40;

pub(super) fn validate(svc: &ServiceConfig, i: usize) -> Result {
    validate_traffic(svc, i)?;
    validate_wake(svc, i)?;
    validate_idle_ignore(svc, i)
}

/// `idle_action = "freeze"` and `socket_activation` need instances wakeway runs itself.
fn validate_wake(svc: &ServiceConfig, i: usize) -> Result {
    let at = |k: &str| format!("service[{i}].{k}");
    let swarm = matches!(&svc.source, Source::Image(img) if img.runtime == ImageRuntime::Swarm);
    let stat = matches!(svc.source, Source::Upstreams(_));
    if svc.scaling.idle_action == IdleAction::Freeze && stat {
        return fail(
            at("scaling.idle_action"),
            format!(
                "service `{}` is static (`upstreams`): wakeway does not run its instances, so it \
                 cannot freeze them; idle_action = \"freeze\" needs a `command` or an `image`",
                svc.name
            ),
        );
    }
    if svc.scaling.frozen_timeout.is_zero() {
        return fail(
            at("scaling.frozen_timeout"),
            "frozen_timeout must be greater than 0",
        );
    }
    if svc.socket_activation && !matches!(svc.source, Source::Command(_)) {
        let what = match (stat, swarm) {
            (true, _) => "static upstreams",
            (_, true) => "swarm",
            _ => {
                "docker (the engine publishes the container's port itself, so a socket wakeway \
                 binds cannot be the one the app listens on)"
            }
        };
        return fail(
            at("socket_activation"),
            format!(
                "service `{}`: socket_activation works with the process runtime (`command`), \
                 not with {what}",
                svc.name
            ),
        );
    }
    Ok(())
}

/// `section` applies only to services wakeway starts: a static one fails at `key`, saying `why`.
fn not_static(svc: &ServiceConfig, key: String, why: &str, section: &str) -> Result {
    if matches!(svc.source, Source::Upstreams(_)) {
        return fail(
            key,
            format!(
                "service `{}` is static (`upstreams`): {why}; {section} applies to services with \
                 a `command` or an `image`",
                svc.name
            ),
        );
    }
    Ok(())
}

fn validate_traffic(svc: &ServiceConfig, i: usize) -> Result {
    if svc.traffic.is_empty() {
        return Ok(());
    }
    let at = |k: &str| format!("service[{i}].traffic{k}");
    let why = "it has no revisions to split traffic between";
    not_static(svc, at(""), why, "[[service.traffic]]")?;
    check_traffic(&svc.name, &svc.traffic).or_else(|(k, why)| fail(at(&k), why))
}

/// What is wrong with `traffic` for service `service` on its own (which revisions exist is the
/// controller's to say): the key under `traffic` (`[1].tag`, or empty for the whole list) and
/// why. Shared by the file and the admin API.
pub fn check_traffic(
    service: &str,
    traffic: &[TrafficTarget],
) -> std::result::Result<(), (String, String)> {
    if traffic.is_empty() {
        return Ok(());
    }
    let fail = |k: String, why: String| Err((k, why));
    let mut revisions: BTreeMap<Option<&str>, usize> = BTreeMap::new();
    let mut tags: BTreeMap<&str, usize> = BTreeMap::new();
    for (j, t) in traffic.iter().enumerate() {
        let key = |k: &str| format!("[{j}].{k}");
        if t.percent > 100 {
            return fail(
                key("percent"),
                format!("percent must be 0-100 (got {})", t.percent),
            );
        }
        if let Some(rev) = &t.revision
            && !is_revision_of(rev, service)
        {
            return fail(
                key("revision"),
                format!(
                    "invalid revision {rev:?}: revisions of service `{0}` are named `{0}-NNNNN` \
                     with 5 digits, such as \"{0}-00002\", as the admin API lists them",
                    service
                ),
            );
        }
        if let Some(prev) = revisions.insert(t.revision.as_deref(), j) {
            let (k, what) = match &t.revision {
                Some(rev) => ("revision", format!("revision {rev}")),
                None => ("latest", "`latest = true`".to_string()),
            };
            return fail(
                key(k),
                format!(
                    "{what} already has traffic[{prev}]; give each revision one entry with its whole percent"
                ),
            );
        }
        if let Some(tag) = &t.tag {
            check_tag(tag).or_else(|why| fail(key("tag"), why))?;
            if let Some(prev) = tags.insert(tag, j) {
                return fail(
                    key("tag"),
                    format!("tag `{tag}` is already used by traffic[{prev}]; tags must be unique"),
                );
            }
        }
    }
    let sum: u32 = traffic.iter().map(|t| t.percent).sum();
    if sum != 100 {
        let terms: Vec<String> = traffic.iter().map(|t| t.percent.to_string()).collect();
        return fail(
            String::new(),
            format!(
                "the traffic percents sum to {sum} ({}); they must sum to exactly 100",
                terms.join(" + ")
            ),
        );
    }
    Ok(())
}

/// `web-00002` for service `web`: the name, a dash, five digits, not all zero.
fn is_revision_of(rev: &str, service: &str) -> bool {
    let Some(number) = rev
        .strip_prefix(service)
        .and_then(|rest| rest.strip_prefix('-'))
    else {
        return false;
    };
    number.len() == 5 && number.bytes().all(|b| b.is_ascii_digit()) && number != "00000"
}

/// A tag becomes part of a host name (`TAG--HOST`): one lower-case DNS label.
pub fn check_tag(tag: &str) -> std::result::Result<(), String> {
    let rule = "a tag is one lower-case DNS label: letters, digits and '-', starting with a letter";
    if !tag.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(format!("invalid tag {tag:?}: {rule}"));
    }
    if let Some(c) = tag
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!("invalid tag {tag:?}: {c:?} is not allowed; {rule}"));
    }
    if tag.ends_with('-') {
        return Err(format!("invalid tag {tag:?}: it may not end with '-'"));
    }
    if tag.contains("--") {
        return Err(format!(
            "invalid tag {tag:?}: \"--\" is not allowed (DNS reserves it, as in xn--)"
        ));
    }
    if tag.len() > MAX_TAG_LEN {
        return Err(format!(
            "invalid tag {tag:?}: {} characters, at most {MAX_TAG_LEN}",
            tag.len()
        ));
    }
    Ok(())
}

fn validate_idle_ignore(svc: &ServiceConfig, i: usize) -> Result {
    let ig = &svc.scaling.idle_ignore;
    if ig.is_empty() {
        return Ok(());
    }
    let at = |k: &str| format!("service[{i}].scaling.idle_ignore{k}");
    let why = "wakeway never stops it, so there is no idleness to protect";
    not_static(svc, at(""), why, "idle_ignore")?;
    for (k, ua) in ig.user_agents.iter().enumerate() {
        let key = at(&format!(".user_agents[{k}]"));
        if ua.trim().is_empty() {
            return fail(
                key,
                "an empty pattern matches every request: nothing would count as activity",
            );
        }
        if let Some(c) = ua.chars().find(|c| !(c.is_ascii_graphic() || *c == ' ')) {
            return fail(
                key,
                format!(
                    "invalid user agent pattern {ua:?}: {c:?} is not allowed; give printable ASCII, as User-Agent values are"
                ),
            );
        }
    }
    for (k, net) in ig.networks.iter().enumerate() {
        if net.prefix() == 0 {
            return fail(
                at(&format!(".networks[{k}]")),
                format!(
                    "{net} matches every client: nothing would count as activity and the service would scale to zero under any traffic"
                ),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
