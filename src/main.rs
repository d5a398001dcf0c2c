use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tokio::signal::unix::{SignalKind, signal};
use wakeway::config::{self, Config, ServiceConfig, Source};

#[derive(Parser)]
#[command(name = "wakeway", version, about = "A request-driven autoscaling reverse proxy")]
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info".into()),
        )
        .init();
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    match cli.command {
        Command::Check { config } => match config::load(&config) {
            Ok(c) => {
                print!("{}", config::summary(&c));
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
                admin: config::AdminConfig { listen: admin },
                services: vec![svc],
            };
            c.proxy.listen = vec![listen];
            rt.block_on(run(c))
        }
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
