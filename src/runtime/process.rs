//! The `process` runtime: each instance is a child process in its own process group, listening
//! on a port wakeway picked. An instance is its whole group: stop signals the group, and when
//! the leader exits (stopped or on its own) whatever is left of the group is killed, so a
//! `sh -c "worker & exec app"` or `npm start` leaves nothing behind. Wakeway is a child
//! subreaper, so those orphans become its children and are reaped, not left as zombies of init.
//!
//! Where a cgroup is writable (see `cgroup`), each instance also gets its own, joined by the
//! child before it runs the app: its whole tree, a worker that called `setsid` included, is
//! killed with it, and the cgroup is what `idle_action = "freeze"` freezes.
//!
//! On a SIGKILL of wakeway nothing of it runs any more: the parent-death signal takes each
//! leader along, and a small guard process (a shell, outside every instance group) that knows
//! the live groups and cgroups kills what is left of them when its pipe from wakeway closes.
//! Should the guard be gone too, the next wakeway sweeps the cgroups left behind at start.
//! The subreaper, the guard and the end of a group are in `process/group.rs`.

mod group;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::Command;
use tokio::sync::watch;

use group::{become_subreaper, end_group, guard, tell_guard};

use super::cgroup::{self, InstanceCgroup};
use super::output;
use super::socket_activation::{self, Inherited};
use super::{BoxFuture, InstanceHandle, InstanceSpec, Runtime, RuntimeError, Started};

pub struct ProcessRuntime {
    command: Vec<String>,
    socket_activation: bool,
}

impl ProcessRuntime {
    pub fn new(command: Vec<String>) -> ProcessRuntime {
        become_subreaper();
        // Detected (and what a dead wakeway left swept) once, before the first instance.
        cgroup::get();
        // Started now rather than with the first instance, whose cold start would wait for it.
        guard();
        ProcessRuntime {
            command,
            socket_activation: false,
        }
    }

    /// Binds each instance's socket and passes it as fd 3 (see `socket_activation`).
    pub fn with_socket_activation(mut self, on: bool) -> ProcessRuntime {
        self.socket_activation = on;
        self
    }
}

/// `wakeway` as the program means this very binary, so examples work without installing it.
fn program(name: &str) -> PathBuf {
    if name == "wakeway"
        && let Ok(exe) = std::env::current_exe()
    {
        return exe;
    }
    PathBuf::from(name)
}

/// The file a program name runs: as given when it has a slash, else the first match on PATH.
fn executable(name: &str) -> Option<PathBuf> {
    let p = program(name);
    if p.components().count() > 1 {
        return Some(p);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(&p))
            .find(|c| c.is_file())
    })
}

impl Runtime for ProcessRuntime {
    fn name(&self) -> &'static str {
        "process"
    }

    fn source_version(&self) -> BoxFuture<'_, Option<String>> {
        Box::pin(async move {
            let exe = executable(&self.command[0])?;
            let meta = tokio::fs::metadata(&exe).await.ok()?;
            let modified = meta.modified().ok()?;
            let since = modified.duration_since(std::time::UNIX_EPOCH).ok()?;
            Some(format!(
                "{}@{}.{:09}+{}",
                exe.display(),
                since.as_secs(),
                since.subsec_nanos(),
                meta.len()
            ))
        })
    }

    fn ready_on_start(&self) -> bool {
        self.socket_activation
    }

    fn start(&self, spec: InstanceSpec) -> BoxFuture<'_, Result<Started, RuntimeError>> {
        Box::pin(async move {
            let no_port = |e: std::io::Error| RuntimeError {
                message: format!("no free port: {e}"),
                retryable: true,
            };
            let socket = match self.socket_activation {
                true => Some(Inherited::bind().map_err(no_port)?),
                false => None,
            };
            let port = match &socket {
                Some(s) => s.port().map_err(no_port)?,
                None => super::free_port().map_err(no_port)?,
            };
            let argv: Vec<String> = self
                .command
                .iter()
                .map(|a| a.replace("{port}", &port.to_string()))
                .collect();
            let mut env = super::instance_env(
                &spec.env,
                &spec.service,
                &spec.revision,
                &spec.instance,
                port,
            );
            let cgroup = cgroup::get()
                .create(&spec.service, &spec.instance)
                .map_err(|e| RuntimeError {
                    message: e.to_string(),
                    retryable: false,
                })?;
            let joiner = match &cgroup {
                Some(cg) => Some(cg.joiner().map_err(|e| RuntimeError {
                    message: format!("cannot join cgroup {}: {e}", cg.path().display()),
                    retryable: false,
                })?),
                None => None,
            };
            if let Some(cg) = &cgroup {
                for dir in cg.dirs() {
                    tell_guard(format_args!("cg {}\n", dir.display()));
                }
            }
            let (prog, args) = match &socket {
                Some(_) => {
                    // The wrapper runs the program: it is resolved here, as without one.
                    let mut argv = argv.clone();
                    argv[0] = program(&argv[0]).to_string_lossy().into_owned();
                    socket_activation::wrap(&argv, &mut env)
                }
                None => (argv[0].clone(), argv[1..].to_vec()),
            };
            let listen_fd = socket.as_ref().map(Inherited::fd);
            let mut cmd = Command::new(program(&prog));
            cmd.args(&args)
                .envs(&env)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .process_group(0)
                .kill_on_drop(false);
            // SAFETY: the closure runs in the forked child before exec and only makes syscalls
            // that are async-signal-safe (prctl, dup2/fcntl of the inherited socket, and write(2)
            // of a static buffer into files the parent opened); it allocates nothing and takes
            // no lock. Joining here, before the
            // app runs, leaves no moment in which a child it forks is outside the cgroup.
            unsafe {
                cmd.pre_exec(move || {
                    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)
                        .map_err(std::io::Error::from)?;
                    if let Some(fd) = listen_fd {
                        socket_activation::install(fd)?;
                    }
                    match &joiner {
                        Some(j) => j.join(),
                        None => Ok(()),
                    }
                });
            }
            let spawned = cmd.spawn();
            drop(cmd);
            // The child holds the socket now; wakeway's copy would keep accepting into a
            // backlog nobody reads once the child is gone.
            drop(socket);
            let mut child = match spawned {
                Ok(child) => child,
                Err(e) => {
                    if let Some(cg) = &cgroup
                        && cg.remove().is_ok()
                    {
                        for dir in cg.dirs() {
                            tell_guard(format_args!("uncg {}\n", dir.display()));
                        }
                    }
                    return Err(RuntimeError {
                        message: format!("cannot run `{}`: {e}", argv[0]),
                        retryable: false,
                    });
                }
            };
            let pid = child.id().expect("a just-spawned child has a pid");
            tell_guard(format_args!("add {pid}\n"));
            let src = Arc::new(output::Source {
                service: spec.service.clone(),
                revision: spec.revision.clone(),
                instance: spec.instance.clone(),
            });
            if let Some(out) = child.stdout.take() {
                tokio::spawn(output::forward(out, src.clone(), output::Stream::Stdout));
            }
            if let Some(err) = child.stderr.take() {
                tokio::spawn(output::forward(err, src, output::Stream::Stderr));
            }
            let (tx, rx) = watch::channel(None);
            let (group_tx, group_gone) = watch::channel(false);
            let cg = cgroup.clone();
            tokio::spawn(async move {
                let reason = match child.wait().await {
                    Ok(status) => format!("process {pid} {status}"),
                    Err(e) => format!("process {pid}: wait failed: {e}"),
                };
                // The exit notice goes first: it makes the instance unroutable at once.
                let _ = tx.send(Some(reason));
                let _ = tokio::task::spawn_blocking(move || end_group(pid, cg.as_ref())).await;
                let _ = group_tx.send(true);
            });
            Ok(Started {
                address: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
                pid: Some(pid),
                exited: rx.clone(),
                handle: Box::new(ProcessHandle {
                    pid,
                    cgroup,
                    exited: rx,
                    group_gone,
                }),
            })
        })
    }
}

struct ProcessHandle {
    pid: u32,
    cgroup: Option<InstanceCgroup>,
    exited: watch::Receiver<Option<String>>,
    /// Set once the leader exited and the rest of its group is killed and reaped.
    group_gone: watch::Receiver<bool>,
}

impl ProcessHandle {
    fn cgroup(&self, what: &str) -> Result<InstanceCgroup, RuntimeError> {
        self.cgroup.clone().ok_or_else(|| RuntimeError {
            message: format!(
                "{what} needs a cgroup, and this instance has none ({})",
                cgroup::get().mode().as_str()
            ),
            retryable: false,
        })
    }
}

/// How long the kernel may take to stop every process of a cgroup.
const FREEZE_WITHIN: Duration = Duration::from_secs(5);

fn blocking_error(what: &str, e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError {
        message: format!("{what}: {e}"),
        retryable: false,
    }
}

impl InstanceHandle for ProcessHandle {
    fn freeze(&self) -> BoxFuture<'_, Result<(), RuntimeError>> {
        Box::pin(async move {
            let cg = self.cgroup("freezing")?;
            tokio::task::spawn_blocking(move || cg.freeze(FREEZE_WITHIN))
                .await
                .map_err(|e| blocking_error("freeze", e))?
                .map_err(|e| blocking_error("freeze", e))
        })
    }

    fn thaw(&self) -> BoxFuture<'_, Result<(), RuntimeError>> {
        Box::pin(async move {
            let cg = self.cgroup("thawing")?;
            // A few reads and one write of cgroup and proc files: not worth a trip to the
            // blocking pool on the wake path.
            let killed = cg.killed_while_frozen();
            cg.thaw().map_err(|e| blocking_error("thaw", e))?;
            if killed {
                // Thawed all the same, so that the SIGKILL lands and the exit is reported.
                return Err(RuntimeError {
                    message: "it was killed (SIGKILL) while frozen".into(),
                    retryable: false,
                });
            }
            Ok(())
        })
    }

    fn memory(&self) -> BoxFuture<'_, Option<u64>> {
        Box::pin(async move {
            let cg = self.cgroup.clone()?;
            tokio::task::spawn_blocking(move || cg.memory())
                .await
                .ok()
                .flatten()
        })
    }

    /// Returns once the whole group is gone, not only its leader.
    fn stop(&self, grace: Duration) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let mut exited = self.exited.clone();
            let mut group_gone = self.group_gone.clone();
            if exited.borrow().is_none() {
                // A frozen instance could not act on its SIGTERM.
                if let Some(cg) = &self.cgroup
                    && cg.is_frozen()
                {
                    let _ = cg.thaw();
                }
                let group = Pid::from_raw(self.pid as i32);
                let _ = killpg(group, Signal::SIGTERM);
                let gone = tokio::time::timeout(grace, exited.wait_for(|e| e.is_some()))
                    .await
                    .is_ok();
                if !gone {
                    tracing::warn!(
                        pid = self.pid,
                        "instance ignored SIGTERM for {grace:?}: SIGKILL"
                    );
                    let _ = killpg(group, Signal::SIGKILL);
                }
            }
            let _ = group_gone.wait_for(|g| *g).await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A runtime whose instances run `script` with `sh -c`.
    fn sh(script: impl Into<String>) -> ProcessRuntime {
        ProcessRuntime::new(vec!["sh".into(), "-c".into(), script.into()])
    }

    fn spec() -> InstanceSpec {
        InstanceSpec {
            service: "svc".into(),
            revision: "svc-00001".into(),
            instance: "svc-00001-a".into(),
            env: BTreeMap::from([("GREETING".into(), "hi".into())]),
        }
    }

    #[tokio::test]
    async fn child_gets_env_and_port_and_stops_on_sigterm() {
        let rt = sh(
            "test \"$PORT\" = {port} && test \"$GREETING\" = hi && test \"$WAKEWAY_INSTANCE\" = svc-00001-a && exec sleep 30",
        );
        let started = rt.start(spec()).await.unwrap();
        started.handle.stop(Duration::from_secs(5)).await;
        // A failed `test` would have ended it with "exit status: 1" before the SIGTERM.
        let reason = started.exited.borrow().clone().unwrap();
        assert!(reason.contains("SIGTERM"), "{reason}");
    }

    fn pid_in(file: &std::path::Path) -> Option<i32> {
        std::fs::read_to_string(file).ok()?.trim().parse().ok()
    }

    /// Alive and not a zombie (a zombie has exited; only its exit status is left to reap).
    fn running(pid: i32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
            Err(_) => false,
        }
    }

    /// Issue 9, defect 6: the leader dies on its own (a crash, `kill -9`); the worker it started
    /// in the background must not live on.
    #[tokio::test]
    async fn the_group_goes_when_its_leader_dies() {
        let file = std::env::temp_dir().join(format!("wakeway-grandchild-{}", std::process::id()));
        let _ = std::fs::remove_file(&file);
        let rt = sh(format!(
            "sleep 300 & echo $! > {}; exec sleep 301",
            file.display()
        ));
        let started = rt.start(spec()).await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let worker = loop {
            if let Some(p) = pid_in(&file) {
                break p;
            }
            assert!(tokio::time::Instant::now() < deadline, "no worker pid");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let _ = std::fs::remove_file(&file);
        assert!(running(worker));
        nix::sys::signal::kill(Pid::from_raw(started.pid.unwrap() as i32), Signal::SIGKILL)
            .unwrap();
        // stop() of an instance whose leader is gone returns once the rest of its group is.
        started.handle.stop(Duration::from_secs(1)).await;
        assert!(
            !running(worker),
            "the background worker {worker} outlived its instance"
        );
    }

    #[tokio::test]
    async fn missing_program_is_a_clear_error() {
        let rt = ProcessRuntime::new(vec!["/nonexistent/app".into()]);
        let err = rt.start(spec()).await.err().unwrap();
        assert!(err.message.contains("/nonexistent/app"), "{}", err.message);
        assert!(!err.retryable);
    }

    #[tokio::test]
    async fn sigkill_after_grace_when_sigterm_is_ignored() {
        let mark = std::env::temp_dir().join(format!("wakeway-trap-{}", std::process::id()));
        let _ = std::fs::remove_file(&mark);
        let rt = sh(format!(
            "trap '' TERM; touch {}; while true; do sleep 0.05; done",
            mark.display()
        ));
        let started = rt.start(spec()).await.unwrap();
        // The SIGTERM must come after the trap is installed, or it proves nothing.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !mark.exists() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "child never installed its trap"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = std::fs::remove_file(&mark);
        started.handle.stop(Duration::from_millis(200)).await;
        assert!(
            started
                .exited
                .borrow()
                .as_deref()
                .unwrap()
                .contains("SIGKILL")
        );
    }
}
