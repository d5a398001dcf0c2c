//! The admin-client verbs of the CLI: thin wrappers over the admin API that print what a person
//! wants to see and exit non-zero when the operation failed.

pub mod args;
pub mod certificates;
pub mod cluster;
pub mod fdlimit;
mod logs;
pub mod reads;
pub mod replay;
pub mod serve;
mod words;

pub use logs::{LogsArgs, logs};

use std::process::ExitCode;
use std::time::Duration;

use http::Method;
use serde_json::{Value, json};
use wakeway::client::{
    AdminClient, DeployProgress, EVENT_HEADER, Outcome, RolloutState, RolloutWatch, check_tag,
    deploy_outcome, format_changes, format_event, format_pause, format_reload, format_status,
    format_traffic, traffic_body,
};

/// How a read verb prints what it read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// The API's own JSON, pretty, for `-o json`.
pub(crate) fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

pub(crate) fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::FAILURE
}

/// What a read verb does with the API's answer: its JSON with `-o json`, else the text `format`
/// makes of it; an error goes to stderr.
pub(crate) fn show(
    answer: Result<Value, String>,
    output: Output,
    format: impl FnOnce(Value) -> String,
) -> ExitCode {
    match answer {
        Ok(v) if output == Output::Json => print_json(&v),
        Ok(v) => print!("{}", format(v)),
        Err(e) => return fail(e),
    }
    ExitCode::SUCCESS
}

pub async fn status(client: AdminClient, service: Option<String>, output: Output) -> ExitCode {
    let path = match &service {
        Some(s) => format!("/v1/services/{s}"),
        None => "/v1/services".into(),
    };
    show(client.ok(Method::GET, &path, None).await, output, |v| {
        let list = if v.is_array() { v } else { json!([v]) };
        format_status(&list)
    })
}

/// `pause` or `resume` a service; prints what happened as a sentence.
pub async fn pause(client: AdminClient, service: String, verb: &str) -> ExitCode {
    match client
        .ok(
            Method::POST,
            &format!("/v1/services/{service}/{verb}"),
            None,
        )
        .await
    {
        Ok(v) => {
            println!("{}", format_pause(verb, &v));
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// Reloads the config file; prints what changed.
pub async fn reload(client: AdminClient) -> ExitCode {
    match client.ok(Method::POST, "/v1/reload", None).await {
        Ok(v) => {
            println!("{}", format_reload(&v));
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// What `wakeway deploy` sends beside the service name.
#[derive(clap::Args)]
pub struct DeployArgs {
    /// New image (docker services).
    #[arg(long)]
    pub image: Option<String>,
    /// New command (process services), split into words as a shell would: quotes group
    /// words, a backslash escapes; no variables, globs or pipes.
    #[arg(long)]
    pub command: Option<String>,
    /// Set or change an environment variable, keeping the others: `KEY=VALUE` (repeatable).
    #[arg(long = "update-env", visible_alias = "env", value_name = "KEY=VALUE")]
    pub update_env: Vec<String>,
    /// Replace the whole environment with these variables: `KEY=VALUE` (repeatable).
    #[arg(long = "set-env", value_name = "KEY=VALUE", conflicts_with_all = ["update_env", "remove_env"])]
    pub set_env: Vec<String>,
    /// Remove an environment variable (repeatable); naming one that is not set is an error.
    #[arg(long = "remove-env", value_name = "KEY")]
    pub remove_env: Vec<String>,
    /// Print what would change (source and environment) and deploy nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Start the new revision beside the live one and give it no traffic (see `traffic`
    /// and `promote`); the follow ends once it is ready.
    #[arg(long)]
    pub no_traffic: bool,
    /// Give the new revision a tag: its own host name, `TAG--HOST`.
    #[arg(long, value_name = "TAG")]
    pub tag: Option<String>,
    /// Return once the deployment began instead of following it.
    #[arg(long)]
    pub no_wait: bool,
}

pub async fn deploy(client: AdminClient, service: String, args: DeployArgs) -> ExitCode {
    let mut body = serde_json::Map::new();
    if let Some(i) = args.image {
        body.insert("image".into(), json!(i));
    }
    if let Some(c) = args.command {
        match words::split(&c) {
            Ok(w) => body.insert("command".into(), json!(w)),
            Err(e) => return fail(format!("--command: {e}")),
        };
    }
    for (flag, key, pairs) in [
        ("--update-env", "update_env", &args.update_env),
        ("--set-env", "env", &args.set_env),
    ] {
        if pairs.is_empty() {
            continue;
        }
        let mut m = serde_json::Map::new();
        for kv in pairs {
            let Some((k, v)) = kv.split_once('=') else {
                return fail(format!("{flag} `{kv}`: expected KEY=VALUE"));
            };
            m.insert(k.into(), json!(v));
        }
        body.insert(key.into(), Value::Object(m));
    }
    if !args.remove_env.is_empty() {
        body.insert("remove_env".into(), json!(args.remove_env));
    }
    if args.no_traffic {
        body.insert("no_traffic".into(), json!(true));
    }
    if let Some(tag) = &args.tag {
        if let Err(e) = check_tag(tag) {
            return fail(format!("--tag: {e}"));
        }
        body.insert("tag".into(), json!(tag));
    }
    let path = format!("/v1/services/{service}/deployments");
    // The diff first, from the same body: what this deployment changes, before it is applied.
    let mut dry = body.clone();
    dry.insert("dry_run".into(), json!(true));
    match client
        .ok(Method::POST, &path, Some(Value::Object(dry)))
        .await
    {
        Ok(v) => print!("{}", format_changes(&v["changes"])),
        Err(e) => return fail(e),
    }
    if args.dry_run {
        return ExitCode::SUCCESS;
    }
    let since = last_seq(&client, &service).await;
    let started = match client
        .ok(Method::POST, &path, Some(Value::Object(body)))
        .await
    {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    let follow = Follow {
        since,
        no_wait: args.no_wait,
        no_traffic: args.no_traffic,
        tagged: args.tag.is_some(),
    };
    follow.run(client, service, started).await
}

pub async fn rollback(client: AdminClient, service: String, no_wait: bool) -> ExitCode {
    let since = last_seq(&client, &service).await;
    // What a rollback moves away from is what had the traffic, not the latest revision (after
    // a halted canary the latest has none).
    let holders = traffic_holders(&client, &service).await;
    let path = format!("/v1/services/{service}/rollback");
    match client.ok(Method::POST, &path, None).await {
        Ok(mut v) => {
            if let Some(h) = holders {
                v["previous_revision"] = json!(h);
            }
            let follow = Follow {
                since,
                no_wait,
                no_traffic: false,
                tagged: false,
            };
            follow.run(client, service, v).await
        }
        Err(e) => fail(e),
    }
}

/// The revisions that take traffic, with their shares when there are several:
/// `web-00002` or `web-00002 90%, web-00003 10%`.
async fn traffic_holders(client: &AdminClient, service: &str) -> Option<String> {
    let v = client
        .ok(Method::GET, &format!("/v1/services/{service}"), None)
        .await
        .ok()?;
    let shares: Vec<(String, u64)> = v["traffic"]
        .as_array()?
        .iter()
        .filter(|t| t["percent"].as_u64().unwrap_or(0) > 0)
        .map(|t| {
            let revision = t["revision"].as_str().unwrap_or("?").to_string();
            (revision, t["percent"].as_u64().unwrap_or(0))
        })
        .collect();
    match shares.as_slice() {
        [] => None,
        [(one, _)] => Some(one.clone()),
        many => Some(
            many.iter()
                .map(|(r, p)| format!("{r} {p}%"))
                .collect::<Vec<_>>()
                .join(", "),
        ),
    }
}

/// How a deployment is followed once it began.
struct Follow {
    /// The newest event before it began.
    since: u64,
    no_wait: bool,
    no_traffic: bool,
    /// The new revision has a tag, so a host name of its own.
    tagged: bool,
}

impl Follow {
    /// Prints a line per new instance as it starts, turns ready or fails, until the deployment
    /// switched or failed; the exit code says which.
    async fn run(self, client: AdminClient, service: String, started: Value) -> ExitCode {
        let id = started["id"].as_str().unwrap_or_default().to_string();
        let revision = started["revision"].as_str().unwrap_or("?").to_string();
        match started["previous_revision"].as_str().unwrap_or("?") {
            // A rollback after a halted canary: the traffic never left the old revision.
            from if from == revision => println!(
                "deployment {id}: {revision} keeps the traffic and is the latest revision again"
            ),
            from => println!("deployment {id}: {from} -> {revision}"),
        }
        if self.no_wait {
            return ExitCode::SUCCESS;
        }
        let mut progress = DeployProgress::new(&id, &revision);
        let mut seen = self.since;
        let deployment = format!("/v1/services/{service}/deployments/{id}");
        loop {
            let d = match client.ok(Method::GET, &deployment, None).await {
                Ok(d) => d,
                Err(e) => return fail(e),
            };
            // Read after the state, so the events that led to an end are printed before it.
            if let Ok(events) = client
                .ok(
                    Method::GET,
                    &format!("/v1/events?service={service}&after={seen}"),
                    None,
                )
                .await
            {
                for e in events.as_array().into_iter().flatten() {
                    seen = seen.max(e["seq"].as_u64().unwrap_or(seen));
                    if let Some(line) = progress.line(e) {
                        println!("{line}");
                    }
                }
            }
            let host = if self.no_traffic && self.tagged && d["state"] == "succeeded" {
                tag_host(&client, &service, &revision).await
            } else {
                None
            };
            match deploy_outcome(&d, self.no_traffic, host.as_deref()) {
                Outcome::InProgress => tokio::time::sleep(Duration::from_millis(250)).await,
                Outcome::Succeeded(s) => {
                    println!("{s}");
                    return ExitCode::SUCCESS;
                }
                Outcome::Failed(reason) => {
                    logs::print_last_output(&client, &service, &revision).await;
                    return fail(reason);
                }
            }
        }
    }
}

/// The host name of `revision`'s tag, if it has one.
async fn tag_host(client: &AdminClient, service: &str, revision: &str) -> Option<String> {
    let v = client
        .ok(
            Method::GET,
            &format!("/v1/services/{service}/traffic"),
            None,
        )
        .await
        .ok()?;
    v["traffic"]
        .as_array()?
        .iter()
        .find(|t| t["revision"] == revision)?["host"]
        .as_str()
        .map(str::to_string)
}

/// `wakeway traffic SERVICE [REVISION=PERCENT ...] [--tag TAG=REVISION ...]`: shows the split,
/// or sets it and shows the result.
pub async fn traffic(
    client: AdminClient,
    service: String,
    shares: Vec<String>,
    tags: Vec<String>,
    output: Output,
) -> ExitCode {
    let path = format!("/v1/services/{service}/traffic");
    let answer = if shares.is_empty() && tags.is_empty() {
        client.ok(Method::GET, &path, None).await
    } else {
        match traffic_body(&shares, &tags) {
            Ok(body) => client.ok(Method::PUT, &path, Some(body)).await,
            Err(e) => return fail(e),
        }
    };
    show(answer, output, |v| format_traffic(&v))
}

/// `wakeway promote SERVICE [REVISION] [--steps ..] [--interval ..]`: starts a rollout and
/// prints each step as it is applied; exits non-zero when it halts.
pub async fn promote(
    client: AdminClient,
    service: String,
    revision: Option<String>,
    steps: Option<Vec<u8>>,
    interval: Option<String>,
) -> ExitCode {
    let mut body = serde_json::Map::new();
    if let Some(r) = revision {
        body.insert("revision".into(), json!(r));
    }
    if let Some(s) = steps {
        body.insert("steps".into(), json!(s));
    }
    if let Some(i) = interval {
        body.insert("interval".into(), json!(i));
    }
    let path = format!("/v1/services/{service}/promote");
    let rollout = match client
        .ok(Method::POST, &path, Some(Value::Object(body)))
        .await
    {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    println!("{}", RolloutWatch::intro(&rollout));
    let mut watch = RolloutWatch::new(&rollout);
    let (mut rollout, mut traffic) = (rollout, Value::Null);
    let path = format!("/v1/services/{service}/traffic");
    loop {
        let (lines, state) = watch.update(&rollout, &traffic);
        for line in lines {
            println!("{line}");
        }
        match state {
            RolloutState::Running => {}
            RolloutState::Done(s) => {
                println!("{s}");
                return ExitCode::SUCCESS;
            }
            RolloutState::Halted(s) => {
                if traffic.is_object() {
                    print!("{}", format_traffic(&traffic));
                }
                return fail(s);
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        traffic = match client.ok(Method::GET, &path, None).await {
            Ok(v) => v,
            Err(e) => {
                return fail(format!(
                    "{e} (the rollout goes on; `wakeway traffic {service}` shows it)"
                ));
            }
        };
        rollout = traffic["rollout"].clone();
    }
}

/// The newest event's sequence number, so following shows only what comes next.
async fn last_seq(client: &AdminClient, service: &str) -> u64 {
    client
        .ok(Method::GET, &format!("/v1/events?service={service}"), None)
        .await
        .ok()
        .and_then(|v| {
            v.as_array()
                .and_then(|a| a.last())
                .map(|e| e["seq"].as_u64().unwrap_or(0))
        })
        .unwrap_or(0)
}

pub async fn events(
    client: AdminClient,
    service: Option<String>,
    follow: bool,
    output: Output,
) -> ExitCode {
    if let Some(s) = &service {
        // An unknown name is an error, not an empty list.
        if let Err(e) = client
            .ok(Method::GET, &format!("/v1/services/{s}"), None)
            .await
        {
            return fail(e);
        }
    }
    let mut seen = 0u64;
    if output == Output::Text {
        println!("{EVENT_HEADER}");
    }
    let mut all = Vec::new();
    loop {
        let mut path = format!("/v1/events?after={seen}");
        if let Some(s) = &service {
            path.push_str(&format!("&service={s}"));
        }
        match client.ok(Method::GET, &path, None).await {
            Ok(v) => {
                for e in v.as_array().into_iter().flatten() {
                    seen = seen.max(e["seq"].as_u64().unwrap_or(seen));
                    match (output, follow) {
                        (Output::Text, _) => println!("{}", format_event(e)),
                        // Following, one JSON object per line, as they come (`jq -c` reads it).
                        (Output::Json, true) => println!("{e}"),
                        (Output::Json, false) => all.push(e.clone()),
                    }
                }
            }
            Err(e) => return fail(e),
        }
        if !follow {
            if output == Output::Json {
                print_json(&Value::Array(all));
            }
            return ExitCode::SUCCESS;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
