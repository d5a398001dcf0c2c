//! The command line as clap reads it: every verb, its flags and their help text. What a verb
//! does lives beside this file (`mod.rs` for the admin-client verbs, `serve.rs` for `run`).

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use std::time::Duration;

use clap::{Parser, Subcommand};
use wakeway::config;

#[derive(Parser)]
#[command(
    name = "wakeway",
    version,
    about = "A request-driven autoscaling reverse proxy"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the proxy with a config file.
    Run {
        /// The TOML config file (see config/wakeway.toml for every key).
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Validate a config file and print a summary of services and routes.
    Check {
        /// The TOML config file to check.
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Front one fixed upstream with a hard concurrency limit and a queue.
    Sidecar(super::serve::Sidecar),
    /// Services, their revisions and instances, from a running wakeway.
    Status {
        #[command(flatten)]
        admin: AdminArgs,
        /// One service only.
        service: Option<String>,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Deploy a new revision blue/green and follow it until the switch or the failure.
    Deploy {
        #[command(flatten)]
        admin: AdminArgs,
        /// The service to deploy.
        service: String,
        #[command(flatten)]
        deploy: super::DeployArgs,
    },
    /// Redeploy the previous revision blue/green.
    Rollback {
        #[command(flatten)]
        admin: AdminArgs,
        /// The service to roll back.
        service: String,
        /// Return once the rollback began instead of following it.
        #[arg(long)]
        no_wait: bool,
    },
    /// Show how a service's traffic is split among its revisions, or set the split.
    Traffic {
        #[command(flatten)]
        admin: AdminArgs,
        /// The service.
        service: String,
        /// Shares to set, `REVISION=PERCENT` (or `latest=PERCENT` for the newest revision),
        /// summing to 100; none shows the split.
        #[arg(value_name = "REVISION=PERCENT")]
        shares: Vec<String>,
        /// Tag a revision, `TAG=REVISION` or `TAG=latest` (repeatable): it answers on its own
        /// host name, `TAG--HOST`; a tagged revision without a share gets 0%.
        #[arg(long = "tag", value_name = "TAG=REVISION")]
        tags: Vec<String>,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Move traffic to a revision step by step, and follow the rollout until done or halted.
    Promote {
        #[command(flatten)]
        admin: AdminArgs,
        /// The service.
        service: String,
        /// The revision to promote; the newest one when not given.
        revision: Option<String>,
        /// The revision's percent of traffic at each step, rising to 100, e.g. 10,50,100.
        #[arg(long, value_parser = wakeway::client::parse_steps)]
        steps: Option<Steps>,
        /// Time between two steps, e.g. 1m.
        #[arg(long, value_parser = parse_interval)]
        interval: Option<String>,
    },
    /// Drain every instance of a service and answer 503 until resumed.
    Pause {
        #[command(flatten)]
        admin: AdminArgs,
        /// The service to pause.
        service: String,
    },
    /// Let a paused service take requests again (instances start on demand).
    Resume {
        #[command(flatten)]
        admin: AdminArgs,
        /// The service to resume.
        service: String,
    },
    /// Reload the config file of a running wakeway (like SIGHUP).
    Reload {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// The replicas of a `[cluster]`: which leads, each one's last-seen time and traffic share.
    Cluster {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// The certificates the HTTPS listeners hold (files and ACME): issuer, expiry, last error.
    Certificates {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// The event log: what the control loops decided and why.
    Events {
        #[command(flatten)]
        admin: AdminArgs,
        /// One service only.
        service: Option<String>,
        /// Keep printing new events.
        #[arg(short, long)]
        follow: bool,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// What a service's instances wrote on stdout and stderr (the last lines kept of each), or
    /// with --access the requests it answered.
    Logs {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(flatten)]
        logs: super::LogsArgs,
    },
    /// A service's last 10 minutes (1 s steps) or hour (10 s steps): requests/s, errors,
    /// latency, in flight, instances and cold starts, as wakeway keeps them in memory.
    History {
        #[command(flatten)]
        admin: AdminArgs,
        /// The service.
        service: String,
        /// `10m` (1 s steps) or `1h` (10 s steps).
        #[arg(long, default_value = "10m", value_parser = ["10m", "1h"])]
        range: String,
        /// The last this many steps (text output); 0 prints them all.
        #[arg(short = 'n', long, default_value_t = 20)]
        tail: usize,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// A service's deployments, newest last: outcome, duration and why one failed.
    Deployments {
        #[command(flatten)]
        admin: AdminArgs,
        /// The service.
        service: String,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// A service's revisions, oldest first, with what changed and the share each takes.
    Revisions {
        #[command(flatten)]
        admin: AdminArgs,
        /// The service.
        service: String,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Print a shell completion script, e.g. `wakeway completions bash > /etc/bash_completion.d/wakeway`.
    Completions {
        /// The shell: bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Replay an access log through configs on virtual time, with the same autoscaler, queue
    /// and idle timer as `run`: cold starts, waits, refusals and instance-seconds side by side.
    Replay {
        #[command(flatten)]
        replay: super::replay::Args,
    },
    /// A tiny diagnostic upstream that answers with who it is and what it received.
    Whoami {
        /// Port to listen on.
        #[arg(long, env = "PORT", default_value_t = 8080)]
        port: u16,
        /// Address to listen on.
        #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
        bind: IpAddr,
        /// Wait this long before listening (to try cold starts), e.g. 2s.
        #[arg(long, default_value = "0s", value_parser = config::parse_duration)]
        startup_delay: Duration,
    },
}

#[derive(clap::Args)]
pub struct OutputArgs {
    /// `text` for people, `json` for scripts (the admin API's own JSON; one object per line
    /// for `events --follow`).
    #[arg(short = 'o', long = "output", value_enum, default_value_t = super::Output::Text)]
    pub output: super::Output,
}

#[derive(clap::Args)]
pub struct AdminArgs {
    /// The admin API of the running wakeway.
    #[arg(long, env = "WAKEWAY_ADMIN", default_value = "127.0.0.1:9180")]
    pub admin: String,
    /// The admin bearer token, if `admin.token` is set.
    #[arg(long, env = "WAKEWAY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// `--steps` as parsed: clap takes a `Vec` type for a repeated flag, this one is one list.
pub type Steps = Vec<u8>;

/// `--interval`, checked here and sent as written (the API reads the same duration syntax).
fn parse_interval(s: &str) -> Result<String, String> {
    config::parse_duration(s).map(|_| s.to_string())
}

impl AdminArgs {
    pub fn client(&self) -> wakeway::client::AdminClient {
        wakeway::client::AdminClient::new(&self.admin, self.token.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// clap checks a subcommand's arguments only when it runs: this checks them all, so a
    /// clash (two groups or flags of one name) fails here, not in a user's shell.
    #[test]
    fn every_subcommand_builds() {
        Cli::command().debug_assert();
    }

    /// `wakeway help X` explains every subcommand and every flag.
    #[test]
    fn every_subcommand_and_flag_has_help() {
        let cli = Cli::command();
        let mut missing = Vec::new();
        for sub in cli.get_subcommands() {
            if sub.get_about().is_none() {
                missing.push(sub.get_name().to_string());
            }
            for arg in sub.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                if !builtin && arg.get_help().is_none() {
                    missing.push(format!("{} {}", sub.get_name(), arg.get_id()));
                }
            }
        }
        assert!(missing.is_empty(), "no help text: {missing:?}");
    }

    /// Shares are positional, tags repeat, steps are one list; bad values fail in clap with the
    /// flag named.
    #[test]
    fn traffic_and_promote_arguments() {
        let cli = Cli::try_parse_from([
            "wakeway",
            "traffic",
            "web",
            "web-00002=90",
            "latest=10",
            "--tag",
            "canary=latest",
            "--tag",
            "old=web-00001",
        ])
        .unwrap();
        let Command::Traffic {
            service,
            shares,
            tags,
            ..
        } = cli.command
        else {
            panic!("not traffic");
        };
        assert_eq!(service, "web");
        assert_eq!(shares, ["web-00002=90", "latest=10"]);
        assert_eq!(tags, ["canary=latest", "old=web-00001"]);

        let cli = Cli::try_parse_from([
            "wakeway",
            "promote",
            "web",
            "web-00003",
            "--steps",
            "10,50,100",
            "--interval",
            "1m",
        ])
        .unwrap();
        let Command::Promote {
            revision,
            steps,
            interval,
            ..
        } = cli.command
        else {
            panic!("not promote");
        };
        assert_eq!(revision.as_deref(), Some("web-00003"));
        assert_eq!(steps, Some(vec![10, 50, 100]));
        assert_eq!(interval.as_deref(), Some("1m"));

        let err = |args: &[&str]| match Cli::try_parse_from(args) {
            Ok(_) => panic!("{args:?} parsed"),
            Err(e) => e.to_string(),
        };
        let e = err(&["wakeway", "promote", "web", "--steps", "50,10,100"]);
        assert!(e.contains("--steps") && e.contains("must rise"), "{e}");
        let e = err(&["wakeway", "promote", "web", "--interval", "soon"]);
        assert!(
            e.contains("--interval") && e.contains("invalid duration"),
            "{e}"
        );
    }
}
