//! The admin-client verbs of the CLI: thin wrappers over the admin API that print what a person
//! wants to see and exit non-zero when the operation failed.

use std::process::ExitCode;
use std::time::Duration;

use http::Method;
use serde_json::{Value, json};
use wakeway::client::{
    AdminClient, EVENT_HEADER, format_event, format_pause, format_reload, format_status,
};

fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::FAILURE
}

pub async fn status(client: AdminClient, service: Option<String>) -> ExitCode {
    let path = match &service {
        Some(s) => format!("/v1/services/{s}"),
        None => "/v1/services".into(),
    };
    match client.ok(Method::GET, &path, None).await {
        Ok(v) => {
            let list = if v.is_array() { v } else { json!([v]) };
            print!("{}", format_status(&list));
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
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

pub async fn deploy(
    client: AdminClient,
    service: String,
    image: Option<String>,
    command: Option<String>,
    env: Vec<String>,
    no_wait: bool,
) -> ExitCode {
    let mut body = serde_json::Map::new();
    if let Some(i) = image {
        body.insert("image".into(), json!(i));
    }
    if let Some(c) = command {
        body.insert(
            "command".into(),
            json!(c.split_whitespace().collect::<Vec<_>>()),
        );
    }
    if !env.is_empty() {
        let mut m = serde_json::Map::new();
        for kv in env {
            let Some((k, v)) = kv.split_once('=') else {
                return fail(format!("--env `{kv}`: expected KEY=VALUE"));
            };
            m.insert(k.into(), json!(v));
        }
        body.insert("env".into(), Value::Object(m));
    }
    let since = last_seq(&client, &service).await;
    let path = format!("/v1/services/{service}/deployments");
    let started = match client
        .ok(Method::POST, &path, Some(Value::Object(body)))
        .await
    {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    follow(client, service, started, since, no_wait).await
}

pub async fn rollback(client: AdminClient, service: String, no_wait: bool) -> ExitCode {
    let since = last_seq(&client, &service).await;
    let path = format!("/v1/services/{service}/rollback");
    match client.ok(Method::POST, &path, None).await {
        Ok(v) => follow(client, service, v, since, no_wait).await,
        Err(e) => fail(e),
    }
}

/// Prints the deployment's events until it switched or failed; the exit code says which.
async fn follow(
    client: AdminClient,
    service: String,
    started: Value,
    since: u64,
    no_wait: bool,
) -> ExitCode {
    let id = started["id"].as_str().unwrap_or_default().to_string();
    println!(
        "deployment {id}: {} -> {}",
        started["previous_revision"].as_str().unwrap_or("?"),
        started["revision"].as_str().unwrap_or("?")
    );
    if no_wait {
        return ExitCode::SUCCESS;
    }
    let mut seen = since;
    loop {
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
                println!("{}", format_event(e));
            }
        }
        let d = match client
            .ok(
                Method::GET,
                &format!("/v1/services/{service}/deployments/{id}"),
                None,
            )
            .await
        {
            Ok(d) => d,
            Err(e) => return fail(e),
        };
        match d["state"].as_str() {
            Some("succeeded") => {
                println!(
                    "deployment {id} succeeded: {} is live",
                    d["revision"].as_str().unwrap_or("?")
                );
                return ExitCode::SUCCESS;
            }
            Some("rolled_back") => {
                println!("deployment {id} succeeded and has since been rolled back");
                return ExitCode::SUCCESS;
            }
            Some("failed") => {
                return fail(format!(
                    "deployment {id} failed: {}",
                    d["reason"].as_str().unwrap_or("no reason given")
                ));
            }
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
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

pub async fn events(client: AdminClient, service: Option<String>, follow: bool) -> ExitCode {
    let mut seen = 0u64;
    println!("{EVENT_HEADER}");
    loop {
        let mut path = format!("/v1/events?after={seen}");
        if let Some(s) = &service {
            path.push_str(&format!("&service={s}"));
        }
        match client.ok(Method::GET, &path, None).await {
            Ok(v) => {
                for e in v.as_array().into_iter().flatten() {
                    seen = seen.max(e["seq"].as_u64().unwrap_or(seen));
                    println!("{}", format_event(e));
                }
            }
            Err(e) => return fail(e),
        }
        if !follow {
            return ExitCode::SUCCESS;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
