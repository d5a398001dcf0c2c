//! The `wakeway` binary: parse the command line, set logging up, hand each verb to its module
//! under `cli/`.

use std::process::ExitCode;

use clap::Parser;
use wakeway::config;

mod cli;

use cli::args::{Cli, Command};
use cli::serve;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `run` logs as its config says, so it sets logging up once the file has loaded.
    match cli.command {
        Command::Run { .. } => {}
        // Replay's controllers emit every decision: the log would repeat them all.
        Command::Replay { .. } => serve::init_logging(&config::LogConfig {
            level: "warn".into(),
            ..Default::default()
        }),
        _ => serve::init_logging(&config::LogConfig::default()),
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
                serve::init_logging(&c.log);
                rt.block_on(serve::run(c))
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Sidecar(sidecar) => rt.block_on(serve::run(sidecar.config())),
        Command::Status {
            admin,
            service,
            output,
        } => rt.block_on(cli::status(admin.client(), service, output.output)),
        Command::Deploy {
            admin,
            service,
            deploy,
        } => rt.block_on(cli::deploy(admin.client(), service, deploy)),
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
        Command::Cluster { admin, output } => {
            rt.block_on(cli::cluster::cluster(admin.client(), output.output))
        }
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
        Command::Logs { admin, logs } => rt.block_on(cli::logs(admin.client(), logs)),
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
        Command::Replay { replay } => cli::replay::replay(replay),
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
