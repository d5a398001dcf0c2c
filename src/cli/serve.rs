//! `wakeway run` and `wakeway sidecar`: logging set up, the app built, its listeners announced
//! on stdout, SIGHUP turned into a reload and SIGTERM/SIGINT into a drain.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use wakeway::config::{self, Config, ServiceConfig, Source};

/// wakeway's own log on stderr: `log.format` text or JSON lines, `log.level` unless `RUST_LOG`
/// says otherwise, a timestamp on every line, colour only when stderr is a terminal (and
/// `NO_COLOR` is unset) so log files get no escape codes. Takes effect at start, not on reload.
pub fn init_logging(log: &config::LogConfig) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| EnvFilter::new(&log.level));
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match log.format {
        config::LogFormat::Text => {
            let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            builder.with_ansi(colour).init()
        }
        config::LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .init(),
    }
}

/// The `NAME listening on ADDR` line on stdout, where scripts and the access log (when it goes to
/// stdout) read it: with `log.format = "json"` a JSON object like every other line there, so
/// `wakeway run | jq` parses the whole stream.
fn announce(format: config::LogFormat, listener: &str, addr: SocketAddr) {
    let message = format!("{listener} listening on {addr}");
    match format {
        config::LogFormat::Text => println!("{message}"),
        config::LogFormat::Json => {
            use tracing_subscriber::fmt::time::FormatTime;
            let mut timestamp = String::new();
            let _ = tracing_subscriber::fmt::time::SystemTime.format_time(
                &mut tracing_subscriber::fmt::format::Writer::new(&mut timestamp),
            );
            let line = serde_json::json!({
                "timestamp": timestamp,
                "level": "INFO",
                "message": message,
                "listener": listener,
                "addr": addr.to_string(),
            });
            println!("{line}");
        }
    }
}

pub async fn run(config: Config) -> ExitCode {
    // Before anything else: a SIGHUP's default action would kill the process.
    let mut hup = signal(SignalKind::hangup()).expect("SIGHUP handler");
    if let Err(e) = super::fdlimit::raise() {
        tracing::warn!("{e}");
    }
    let app = match wakeway::App::build(config).await {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let format = app.state().config.load().log.format;
    for addr in app.proxy_addrs() {
        announce(format, "proxy", addr);
    }
    for addr in app.tls_addrs() {
        announce(format, "https", addr);
    }
    if let Some(addr) = app.admin_addr() {
        announce(format, "admin", addr);
    }
    let state = app.state();
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            match state.reload().await {
                Ok(r) => tracing::info!(
                    "reloaded: added {:?}, removed {:?}, updated {:?}, deployed {:?}, needs restart {:?}",
                    r.added,
                    r.removed,
                    r.updated,
                    r.deployed.iter().map(|d| &d.service).collect::<Vec<_>>(),
                    r.needs_restart
                ),
                Err(e) => tracing::error!("reload rejected, nothing changed: {e}"),
            }
        }
    });
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    app.run(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
    .await;
    ExitCode::SUCCESS
}

/// What `wakeway sidecar` runs: one service on one fixed upstream, at most `max_concurrency`
/// requests at it and the rest queued, on one listener.
#[derive(clap::Args)]
pub struct Sidecar {
    /// Address clients connect to, e.g. 0.0.0.0:8080.
    #[arg(long)]
    pub listen: SocketAddr,
    /// The app's address, `host:port`.
    #[arg(long)]
    pub upstream: String,
    /// Requests at the app at once, at most; the rest wait in the queue.
    #[arg(long)]
    pub max_concurrency: u32,
    /// Serve the admin API (metrics, status) on this address; off when not given.
    #[arg(long)]
    pub admin: Option<SocketAddr>,
    /// Bearer token for the admin API's /v1 calls; needed when --admin is not loopback.
    #[arg(long, env = "WAKEWAY_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Requests that may wait for a free slot; more get 503.
    #[arg(long, default_value_t = 1000)]
    pub max_pending: usize,
    /// Longest a request waits for a free slot before a 504, e.g. 30s.
    #[arg(long, default_value = "30s", value_parser = config::parse_duration)]
    pub queue_timeout: Duration,
}

impl Sidecar {
    /// The config a file would have said the same with.
    pub fn config(self) -> Config {
        let mut svc = ServiceConfig::new(
            "sidecar",
            vec!["*".into()],
            Source::Upstreams(vec![self.upstream]),
        );
        svc.scaling.max_concurrency = self.max_concurrency;
        svc.scaling.target_concurrency = self.max_concurrency as f64;
        svc.scaling.min_instances = 1;
        svc.scaling.max_instances = 1;
        svc.queue.max_pending = self.max_pending;
        svc.queue.timeout = self.queue_timeout;
        let mut c = Config {
            path: None,
            state_file: None,
            proxy: Default::default(),
            admin: config::AdminConfig {
                listen: self.admin,
                token: self.admin_token.filter(|t| !t.is_empty()),
                ..Default::default()
            },
            docker: Default::default(),
            swarm: Default::default(),
            cluster: None,
            log: Default::default(),
            services: vec![svc],
            scaling: Default::default(),
        };
        c.proxy.listen = vec![self.listen];
        c
    }
}
