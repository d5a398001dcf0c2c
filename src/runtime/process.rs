//! The `process` runtime: each instance is a child process in its own process group, listening
//! on a port wakeway picked. An instance is its whole group: stop signals the group, and when
//! the leader exits (stopped or on its own) whatever is left of the group is killed, so a
//! `sh -c "worker & exec app"` or `npm start` leaves nothing behind. Wakeway is a child
//! subreaper, so those orphans become its children and are reaped, not left as zombies of init.
//!
//! On a SIGKILL of wakeway nothing of it runs any more: the parent-death signal takes each
//! leader along, and a small guard process (a shell, outside every instance group) that knows
//! the live groups kills what is left of them when its pipe from wakeway closes.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use tokio::process::Command;
use tokio::sync::watch;

use super::output;
use super::{BoxFuture, InstanceHandle, InstanceSpec, Runtime, RuntimeError, Started};

pub struct ProcessRuntime {
    command: Vec<String>,
}

impl ProcessRuntime {
    pub fn new(command: Vec<String>) -> ProcessRuntime {
        become_subreaper();
        // Started now rather than with the first instance, whose cold start would wait for it.
        guard();
        ProcessRuntime { command }
    }
}

/// Orphans of an instance's group (a worker whose parent died) are re-parented to wakeway
/// instead of init, so they can be reaped once their group is killed.
fn become_subreaper() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
            tracing::warn!("cannot become a child subreaper: {e}");
        }
    });
}

/// The guard: reads `add PGID` / `del PGID` lines, and at end of input (wakeway is gone, however
/// it went) kills every group still listed. It ignores the signals a terminal or a process
/// manager sends to wakeway's own group, so that it outlives wakeway.
const GUARD_SCRIPT: &str = r#"trap '' INT TERM HUP
groups=" "
while read -r op pgid; do
  case "$op" in
    add) groups="$groups$pgid " ;;
    del) case "$groups" in *" $pgid "*) groups="${groups%% $pgid *} ${groups#* $pgid }" ;; esac ;;
  esac
done
for g in $groups; do kill -9 "-$g" 2>/dev/null; done
"#;

/// The guard's input, once it runs (without `sh`, wakeway warns once and does without it).
fn guard() -> Option<&'static std::sync::Mutex<std::process::ChildStdin>> {
    static GUARD: std::sync::OnceLock<Option<std::sync::Mutex<std::process::ChildStdin>>> =
        std::sync::OnceLock::new();
    GUARD.get_or_init(spawn_guard).as_ref()
}

fn spawn_guard() -> Option<std::sync::Mutex<std::process::ChildStdin>> {
    use std::os::unix::process::CommandExt;
    let spawned = std::process::Command::new("sh")
        .args(["-c", GUARD_SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn();
    match spawned {
        Ok(mut child) => child.stdin.take().map(std::sync::Mutex::new),
        Err(e) => {
            tracing::warn!(
                "cannot start the process-group guard (`sh`): {e}; background processes of an \
                 instance may outlive a SIGKILL of wakeway"
            );
            None
        }
    }
}

/// Tells the guard about a group.
fn tell_guard(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    if let Some(stdin) = guard() {
        let mut stdin = stdin.lock().unwrap_or_else(|p| p.into_inner());
        // A few bytes into a pipe the guard keeps draining: this does not block.
        let _ = stdin.write_fmt(line);
        let _ = stdin.flush();
    }
}

/// Kills what is left of an instance's group once its leader is gone, and reaps the members
/// that were re-parented to wakeway. Blocking: runs on the blocking pool.
fn end_group(pgid: u32) {
    let group = Pid::from_raw(pgid as i32);
    let _ = killpg(group, Signal::SIGKILL);
    // SIGKILL cannot be caught; a member still alive is only a moment away from dying (or from
    // being re-parented here when its own parent died), so this ends quickly.
    for _ in 0..200 {
        loop {
            match waitpid(Pid::from_raw(-(pgid as i32)), None) {
                Ok(_) => continue,
                Err(Errno::EINTR) => continue,
                Err(_) => break, // ECHILD: none of the group is a child of wakeway right now
            }
        }
        if killpg(group, None) == Err(Errno::ESRCH) {
            tell_guard(format_args!("del {pgid}\n"));
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
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

/// A port that was free a moment ago. Another process may take it before the child binds: the
/// controller retries an instance that exits at once on a new port.
fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
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

    fn start(&self, spec: InstanceSpec) -> BoxFuture<'_, Result<Started, RuntimeError>> {
        Box::pin(async move {
            let port = free_port().map_err(|e| RuntimeError {
                message: format!("no free port: {e}"),
                retryable: true,
            })?;
            let argv: Vec<String> = self
                .command
                .iter()
                .map(|a| a.replace("{port}", &port.to_string()))
                .collect();
            let env = super::instance_env(
                &spec.env,
                &spec.service,
                &spec.revision,
                &spec.instance,
                port,
            );
            let mut cmd = Command::new(program(&argv[0]));
            cmd.args(&argv[1..])
                .envs(&env)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .process_group(0)
                .kill_on_drop(false);
            // SAFETY: the closure runs in the forked child before exec and only calls prctl, an
            // async-signal-safe syscall; it touches no memory shared with the parent.
            unsafe {
                cmd.pre_exec(|| {
                    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
                });
            }
            let mut child = cmd.spawn().map_err(|e| RuntimeError {
                message: format!("cannot run `{}`: {e}", argv[0]),
                retryable: false,
            })?;
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
            tokio::spawn(async move {
                let reason = match child.wait().await {
                    Ok(status) => format!("process {pid} {status}"),
                    Err(e) => format!("process {pid}: wait failed: {e}"),
                };
                // The exit notice goes first: it makes the instance unroutable at once.
                let _ = tx.send(Some(reason));
                let _ = tokio::task::spawn_blocking(move || end_group(pid)).await;
                let _ = group_tx.send(true);
            });
            Ok(Started {
                address: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
                pid: Some(pid),
                exited: rx.clone(),
                handle: Box::new(ProcessHandle {
                    pid,
                    exited: rx,
                    group_gone,
                }),
            })
        })
    }
}

struct ProcessHandle {
    pid: u32,
    exited: watch::Receiver<Option<String>>,
    /// Set once the leader exited and the rest of its group is killed and reaped.
    group_gone: watch::Receiver<bool>,
}

impl InstanceHandle for ProcessHandle {
    /// Returns once the whole group is gone, not only its leader.
    fn stop(&self, grace: Duration) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let mut exited = self.exited.clone();
            let mut group_gone = self.group_gone.clone();
            if exited.borrow().is_none() {
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
        let rt = ProcessRuntime::new(vec![
            "sh".into(),
            "-c".into(),
            "test \"$PORT\" = {port} && test \"$GREETING\" = hi && test \"$WAKEWAY_INSTANCE\" = svc-00001-a && exec sleep 30".into(),
        ]);
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
        let rt = ProcessRuntime::new(vec![
            "sh".into(),
            "-c".into(),
            format!("sleep 300 & echo $! > {}; exec sleep 301", file.display()),
        ]);
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
        let rt = ProcessRuntime::new(vec![
            "sh".into(),
            "-c".into(),
            format!(
                "trap '' TERM; touch {}; while true; do sleep 0.05; done",
                mark.display()
            ),
        ]);
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
