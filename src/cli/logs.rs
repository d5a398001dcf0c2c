//! `wakeway logs`: what a service's instances wrote, as `fly logs` or `kubectl logs` print it,
//! and the last lines of a revision that failed to deploy.

use std::process::ExitCode;
use std::time::Duration;

use http::Method;
use serde_json::Value;
use wakeway::client::{AdminClient, format_access, items};

use super::{Output, fail, print_json};

#[derive(clap::Args)]
pub struct LogsArgs {
    /// The service.
    pub service: String,
    /// One instance only, e.g. web-00002-a.
    #[arg(long)]
    pub instance: Option<String>,
    /// One revision only, e.g. web-00002.
    #[arg(long)]
    pub revision: Option<String>,
    /// How many of the last lines to print first.
    #[arg(short = 'n', long, default_value_t = 100)]
    pub tail: u64,
    /// Keep printing new lines.
    #[arg(short, long)]
    pub follow: bool,
    /// The service's access-log lines (the requests it answered) instead of its output.
    #[arg(long, conflicts_with_all = ["instance", "revision"])]
    pub access: bool,
    /// With --access: only these statuses, a class (`5xx`), a code (`404`) or `errors`.
    #[arg(long, requires = "access")]
    pub status: Option<String>,
    #[command(flatten)]
    pub output: super::args::OutputArgs,
}

pub async fn logs(client: AdminClient, args: LogsArgs) -> ExitCode {
    if args.access {
        return access(client, &args).await;
    }
    let mut filter = String::new();
    if let Some(i) = &args.instance {
        filter.push_str(&format!("&instance={i}"));
    }
    if let Some(r) = &args.revision {
        filter.push_str(&format!("&revision={r}"));
    }
    let path = |after: u64, tail: u64| {
        format!(
            "/v1/services/{}/logs?after={after}&tail={tail}{filter}",
            args.service
        )
    };
    read_lines(&client, &args, path, |_| {}, |v| v, format_line).await
}

/// `wakeway logs --access`: the service's last access-log lines (as its access log wrote them),
/// and with `-f` each new one.
async fn access(client: AdminClient, args: &LogsArgs) -> ExitCode {
    let status = args.status.as_deref().unwrap_or("");
    let path = |after: u64, tail: u64| {
        format!(
            "/v1/services/{}/access?after={after}&tail={tail}&status={status}",
            args.service
        )
    };
    let mut first = true;
    let warn_off = |answer: &Value| {
        if first && answer["access_log"] == "off" {
            eprintln!(
                "the access log is off (log.access = \"off\"): wakeway keeps no request lines"
            );
        }
        first = false;
    };
    read_lines(
        &client,
        args,
        path,
        warn_off,
        |a| &a["lines"],
        format_access,
    )
    .await
}

/// Reads `path(after, tail)` and prints the lines `lines` picks out of the answer: once, or with
/// `--follow` every half second from where the last read ended. `seen` looks at each answer.
async fn read_lines(
    client: &AdminClient,
    args: &LogsArgs,
    path: impl Fn(u64, u64) -> String,
    mut seen: impl FnMut(&Value),
    lines: fn(&Value) -> &Value,
    format: fn(&Value) -> String,
) -> ExitCode {
    let mut after = 0u64;
    let mut tail = args.tail;
    loop {
        let answer = match client.ok(Method::GET, &path(after, tail), None).await {
            Ok(v) => v,
            Err(e) => return fail(e),
        };
        seen(&answer);
        let list = items(lines(&answer));
        match (args.output.output, args.follow) {
            (Output::Json, false) => print_json(&answer),
            // Following, one JSON object per line, as they come.
            (Output::Json, true) => list.iter().for_each(|l| println!("{l}")),
            (Output::Text, _) => list.iter().for_each(|l| println!("{}", format(l))),
        }
        after = list.last().and_then(|l| l["seq"].as_u64()).unwrap_or(after);
        if !args.follow {
            return ExitCode::SUCCESS;
        }
        // Everything new since the last read, however much.
        tail = u64::MAX >> 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `2026-12-02T09:00:00.123Z web-00002-a stderr| the line`.
fn format_line(l: &Value) -> String {
    format!(
        "{} {} {}| {}",
        l["time"].as_str().unwrap_or("?"),
        l["instance"].as_str().unwrap_or("?"),
        l["stream"].as_str().unwrap_or("?"),
        l["line"].as_str().unwrap_or("")
    )
}

/// The last lines `revision`'s instances wrote, on stderr, before a failed deploy's reason.
pub async fn print_last_output(client: &AdminClient, service: &str, revision: &str) {
    let path = format!("/v1/services/{service}/logs?revision={revision}&tail=20");
    let Ok(lines) = client.ok(Method::GET, &path, None).await else {
        return;
    };
    let list = items(&lines);
    if list.is_empty() {
        eprintln!("{revision} printed nothing before it failed");
        return;
    }
    eprintln!("the last lines {revision} printed:");
    for l in list {
        eprintln!("  {}", format_line(l));
    }
}
