use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};
use wakeway::config::{self, Config, ServiceConfig, Source};

mod cli;

use cli::args::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `run` logs as its config says, so it sets logging up once the file has loaded.
    match cli.command {
        Command::Run { .. } => {}
        // Replay's controllers emit every decision: the log would repeat them all.
        Command::Replay { .. } => init_logging(&config::LogConfig {
            level: "warn".into(),
            ..Default::default()
        }),
        _ => init_logging(&config::LogConfig::default()),
    }
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    match cli.command {
        Command::Check { config } => match config::load(&config) {
            Ok(c) => {
                print!("{}", config::summary(&c));
                print!(
                    "{}",
                    rt.block_on(wakeway::runtime::docker::check_images(&c))
                );
                print!("{}", wakeway::runtime::cgroup::check(&c));
                println!("{}: ok", config.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Run { config } => match config::load(&config) {
            Ok(c) => {
                init_logging(&c.log);
                rt.block_on(run(c))
            }
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
            admin_token,
            max_pending,
            queue_timeout,
        } => {
            let mut svc = ServiceConfig::new(
                "sidecar",
                vec!["*".into()],
                Source::Upstreams(vec![upstream]),
            );
            svc.scaling.max_concurrency = max_concurrency;
            svc.scaling.target_concurrency = max_concurrency as f64;
            svc.scaling.min_instances = 1;
            svc.scaling.max_instances = 1;
            svc.queue.max_pending = max_pending;
            svc.queue.timeout = queue_timeout;
            let mut c = Config {
                path: None,
                state_file: None,
                proxy: Default::default(),
                admin: config::AdminConfig {
                    listen: admin,
                    token: admin_token.filter(|t| !t.is_empty()),
                    ..Default::default()
                },
                docker: Default::default(),
                swarm: Default::default(),
                log: Default::default(),
                services: vec![svc],
                scaling: Default::default(),
            };
            c.proxy.listen = vec![listen];
            rt.block_on(run(c))
        }
        Command::Status {
            admin,
            service,
            output,
        } => rt.block_on(cli::status(admin.client(), service, output.output)),
        Command::Deploy {
            admin,
            service,
            image,
            command,
            update_env,
            set_env,
            remove_env,
            dry_run,
            no_traffic,
            tag,
            no_wait,
        } => rt.block_on(cli::deploy(
            admin.client(),
            service,
            cli::DeployArgs {
                image,
                command,
                update_env,
                set_env,
                remove_env,
                dry_run,
                no_traffic,
                tag,
                no_wait,
            },
        )),
        Command::Rollback {
            admin,
            service,
            no_wait,
        } => rt.block_on(cli::rollback(admin.client(), service, no_wait)),
        Command::Traffic {
            admin,
            service,
            shares,
            tags,
            output,
        } => rt.block_on(cli::traffic(
            admin.client(),
            service,
            shares,
            tags,
            output.output,
        )),
        Command::Promote {
            admin,
            service,
            revision,
            steps,
            interval,
        } => rt.block_on(cli::promote(
            admin.client(),
            service,
            revision,
            steps,
            interval,
        )),
        Command::Pause { admin, service } => {
            rt.block_on(cli::pause(admin.client(), service, "pause"))
        }
        Command::Resume { admin, service } => {
            rt.block_on(cli::pause(admin.client(), service, "resume"))
        }
        Command::Reload { admin } => rt.block_on(cli::reload(admin.client())),
        Command::Certificates { admin, output } => rt.block_on(cli::certificates::certificates(
            admin.client(),
            output.output,
        )),
        Command::Events {
            admin,
            service,
            follow,
            output,
        } => rt.block_on(cli::events(admin.client(), service, follow, output.output)),
        Command::Logs {
            admin,
            service,
            instance,
            revision,
            tail,
            follow,
            access,
            status,
            output,
        } => rt.block_on(cli::logs(
            admin.client(),
            cli::LogsArgs {
                service,
                instance,
                revision,
                tail,
                follow,
                access: access.then(|| status.unwrap_or_default()),
                output: output.output,
            },
        )),
        Command::History {
            admin,
            service,
            range,
            tail,
            output,
        } => rt.block_on(cli::reads::history(
            admin.client(),
            &service,
            &range,
            tail,
            output.output,
        )),
        Command::Deployments {
            admin,
            service,
            output,
        } => rt.block_on(cli::reads::deployments(
            admin.client(),
            &service,
            output.output,
        )),
        Command::Revisions {
            admin,
            service,
            output,
        } => rt.block_on(cli::reads::revisions(
            admin.client(),
            &service,
            output.output,
        )),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "wakeway", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Replay {
            log,
            config,
            service,
            format,
            events,
            cold_start,
        } => cli::replay::replay(cli::replay::Args {
            log,
            configs: config,
            service,
            format,
            events,
            cold_start,
        }),
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

/// wakeway's own log on stderr: `log.format` text or JSON lines, `log.level` unless `RUST_LOG`
/// says otherwise, a timestamp on every line, colour only when stderr is a terminal (and
/// `NO_COLOR` is unset) so log files get no escape codes. Takes effect at start, not on reload.
fn init_logging(log: &config::LogConfig) {
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

async fn run(config: Config) -> ExitCode {
    // Before anything else: a SIGHUP's default action would kill the process.
    let mut hup = signal(SignalKind::hangup()).expect("SIGHUP handler");
    if let Err(e) = cli::fdlimit::raise() {
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
