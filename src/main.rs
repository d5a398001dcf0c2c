use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tokio::signal::unix::{SignalKind, signal};
use wakeway::config::{self, Config, ServiceConfig, Source};

mod cli;

#[derive(Parser)]
#[command(
    name = "wakeway",
    version,
    about = "A request-driven autoscaling reverse proxy"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy with a config file.
    Run {
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Validate a config file and print a summary of services and routes.
    Check {
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Front one fixed upstream with a hard concurrency limit and a queue.
    Sidecar {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long)]
        upstream: String,
        #[arg(long)]
        max_concurrency: u32,
        #[arg(long)]
        admin: Option<SocketAddr>,
        #[arg(long, default_value_t = 1000)]
        max_pending: usize,
        #[arg(long, default_value = "30s", value_parser = config::parse_duration)]
        queue_timeout: Duration,
    },
    /// Services, their revisions and instances, from a running wakeway.
    Status {
        #[command(flatten)]
        admin: AdminArgs,
        /// One service only.
        service: Option<String>,
    },
    /// Deploy a new revision blue/green and follow it until the switch or the failure.
    Deploy {
        #[command(flatten)]
        admin: AdminArgs,
        service: String,
        /// New image (docker services).
        #[arg(long)]
        image: Option<String>,
        /// New command (process services), as one shell-style string split on spaces.
        #[arg(long)]
        command: Option<String>,
        /// Set an environment variable: `--env KEY=VALUE` (repeatable; replaces the env).
        #[arg(long = "env")]
        env: Vec<String>,
        /// Return once the deployment began instead of following it.
        #[arg(long)]
        no_wait: bool,
    },
    /// Redeploy the previous revision blue/green.
    Rollback {
        #[command(flatten)]
        admin: AdminArgs,
        service: String,
        #[arg(long)]
        no_wait: bool,
    },
    /// Drain every instance of a service and answer 503 until resumed.
    Pause {
        #[command(flatten)]
        admin: AdminArgs,
        service: String,
    },
    Resume {
        #[command(flatten)]
        admin: AdminArgs,
        service: String,
    },
    /// Reload the config file of a running wakeway (like SIGHUP).
    Reload {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// The event log: what the control loops decided and why.
    Events {
        #[command(flatten)]
        admin: AdminArgs,
        service: Option<String>,
        /// Keep printing new events.
        #[arg(short, long)]
        follow: bool,
    },
    /// A tiny diagnostic upstream that answers with who it is and what it received.
    Whoami {
        #[arg(long, env = "PORT", default_value_t = 8080)]
        port: u16,
        #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
        bind: IpAddr,
        #[arg(long, default_value = "0s", value_parser = config::parse_duration)]
        startup_delay: Duration,
    },
}

#[derive(clap::Args)]
struct AdminArgs {
    /// The admin API of the running wakeway.
    #[arg(long, env = "WAKEWAY_ADMIN", default_value = "127.0.0.1:9180")]
    admin: String,
    /// The admin bearer token, if `admin.token` is set.
    #[arg(long, env = "WAKEWAY_TOKEN")]
    token: Option<String>,
}

impl AdminArgs {
    fn client(&self) -> wakeway::client::AdminClient {
        wakeway::client::AdminClient::new(&self.admin, self.token.clone())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    match cli.command {
        Command::Check { config } => match config::load(&config) {
            Ok(c) => {
                print!("{}", config::summary(&c));
                print!(
                    "{}",
                    rt.block_on(wakeway::runtime::docker::check_images(&c))
                );
                println!("{}: ok", config.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Run { config } => match config::load(&config) {
            Ok(c) => rt.block_on(run(c)),
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Sidecar {
            listen,
            upstream,
            max_concurrency,
            admin,
            max_pending,
            queue_timeout,
        } => {
            let mut svc = ServiceConfig {
                name: "sidecar".into(),
                hosts: vec!["*".into()],
                source: Source::Upstreams(vec![upstream]),
                env: Default::default(),
                scaling: Default::default(),
                health: Default::default(),
                queue: Default::default(),
                deploy: Default::default(),
            };
            svc.scaling.max_concurrency = max_concurrency;
            svc.scaling.target_concurrency = max_concurrency as f64;
            svc.scaling.min_instances = 1;
            svc.scaling.max_instances = 1;
            svc.queue.max_pending = max_pending;
            svc.queue.timeout = queue_timeout;
            let mut c = Config {
                path: None,
                proxy: Default::default(),
                admin: config::AdminConfig {
                    listen: admin,
                    token: None,
                },
                docker: Default::default(),
                swarm: Default::default(),
                services: vec![svc],
            };
            c.proxy.listen = vec![listen];
            rt.block_on(run(c))
        }
        Command::Status { admin, service } => rt.block_on(cli::status(admin.client(), service)),
        Command::Deploy {
            admin,
            service,
            image,
            command,
            env,
            no_wait,
        } => rt.block_on(cli::deploy(
            admin.client(),
            service,
            image,
            command,
            env,
            no_wait,
        )),
        Command::Rollback {
            admin,
            service,
            no_wait,
        } => rt.block_on(cli::rollback(admin.client(), service, no_wait)),
        Command::Pause { admin, service } => rt.block_on(cli::post(
            admin.client(),
            format!("/v1/services/{service}/pause"),
        )),
        Command::Resume { admin, service } => rt.block_on(cli::post(
            admin.client(),
            format!("/v1/services/{service}/resume"),
        )),
        Command::Reload { admin } => rt.block_on(cli::post(admin.client(), "/v1/reload".into())),
        Command::Events {
            admin,
            service,
            follow,
        } => rt.block_on(cli::events(admin.client(), service, follow)),
        Command::Whoami {
            port,
            bind,
            startup_delay,
        } => {
            let opts = wakeway::whoami::WhoamiOptions {
                bind,
                port,
                startup_delay,
            };
            match rt.block_on(wakeway::whoami::run(opts)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: whoami: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

async fn run(config: Config) -> ExitCode {
    // Before anything else: a SIGHUP's default action would kill the process.
    let mut hup = signal(SignalKind::hangup()).expect("SIGHUP handler");
    let app = match wakeway::App::build(config).await {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    for addr in app.proxy_addrs() {
        println!("proxy listening on {addr}");
    }
    if let Some(addr) = app.admin_addr() {
        println!("admin listening on {addr}");
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
