//! An instance's process group beyond its leader: wakeway as the child subreaper that reaps the
//! group's orphans, the guard process that kills every live group and cgroup should wakeway be
//! SIGKILLed, and `end_group`, which kills and reaps what is left once the leader has exited.

use std::process::Stdio;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::runtime::cgroup::InstanceCgroup;

/// Orphans of an instance's group (a worker whose parent died) are re-parented to wakeway
/// instead of init, so they can be reaped once their group is killed.
pub(super) fn become_subreaper() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
            tracing::warn!("cannot become a child subreaper: {e}");
        }
    });
}

/// The guard: reads `add PGID` / `del PGID` and `cg DIR` / `uncg DIR` lines, and at end of input
/// (wakeway is gone, however it went) kills every group and cgroup still listed, thawing a
/// frozen v1 cgroup so that its SIGKILLs land, and removes the cgroups. It ignores the signals a
/// terminal or a process manager sends to wakeway's own group, so that it outlives wakeway.
const GUARD_SCRIPT: &str = r#"trap '' INT TERM HUP
groups=" "
cgs=" "
while read -r op arg; do
  case "$op" in
    add) groups="$groups$arg " ;;
    del) case "$groups" in *" $arg "*) groups="${groups%% $arg *} ${groups#* $arg }" ;; esac ;;
    cg) cgs="$cgs$arg " ;;
    uncg) case "$cgs" in *" $arg "*) cgs="${cgs%% $arg *} ${cgs#* $arg }" ;; esac ;;
  esac
done
for g in $groups; do kill -9 "-$g" 2>/dev/null; done
for d in $cgs; do
  if [ -e "$d/cgroup.kill" ]; then echo 1 > "$d/cgroup.kill"
  elif [ -e "$d/freezer.state" ]; then
    echo FROZEN > "$d/freezer.state"
    for p in $(cat "$d/cgroup.procs"); do kill -9 "$p"; done
    echo THAWED > "$d/freezer.state"
  else for p in $(cat "$d/cgroup.procs"); do kill -9 "$p"; done
  fi 2>/dev/null
done
for d in $cgs; do
  for i in 1 2 3 4 5 6 7 8 9 10; do rmdir "$d" 2>/dev/null && break; sleep 0.1; done
  rmdir "${d%/*}" "${d%/*/*}" 2>/dev/null
done
"#;

/// The guard's input, once it runs (without `sh`, wakeway warns once and does without it).
pub(super) fn guard() -> Option<&'static std::sync::Mutex<std::process::ChildStdin>> {
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
pub(super) fn tell_guard(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    if let Some(stdin) = guard() {
        let mut stdin = stdin.lock().unwrap_or_else(|p| p.into_inner());
        // A few bytes into a pipe the guard keeps draining: this does not block.
        let _ = stdin.write_fmt(line);
        let _ = stdin.flush();
    }
}

/// Kills what is left of an instance's group and cgroup once its leader is gone, reaps the
/// members that were re-parented to wakeway, and removes the cgroup. Blocking: runs on the
/// blocking pool.
pub(super) fn end_group(pgid: u32, cgroup: Option<&InstanceCgroup>) {
    let group = Pid::from_raw(pgid as i32);
    let mut members: Vec<i32> = Vec::new();
    // SIGKILL cannot be caught; a member still alive is only a moment away from dying (or from
    // being re-parented here when its own parent died), so this ends quickly.
    for _ in 0..400 {
        if let Some(cg) = cgroup {
            for pid in cg.pids() {
                if !members.contains(&pid) {
                    members.push(pid);
                }
            }
            cg.kill();
        }
        let _ = killpg(group, Signal::SIGKILL);
        loop {
            match waitpid(Pid::from_raw(-(pgid as i32)), None) {
                Ok(_) => continue,
                Err(Errno::EINTR) => continue,
                Err(_) => break, // ECHILD: none of the group is a child of wakeway right now
            }
        }
        // A `setsid` member left the group: reaped by pid once it was re-parented here.
        members.retain(|&pid| {
            !matches!(
                waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)),
                Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) | Err(_)
            )
        });
        let cgroup_empty = cgroup.is_none_or(|cg| cg.pids().is_empty());
        if cgroup_empty && killpg(group, None) == Err(Errno::ESRCH) {
            tell_guard(format_args!("del {pgid}\n"));
            if let Some(cg) = cgroup {
                match cg.remove() {
                    Ok(()) => {
                        for dir in cg.dirs() {
                            tell_guard(format_args!("uncg {}\n", dir.display()));
                        }
                    }
                    Err(e) => tracing::warn!("cannot remove cgroup {}: {e}", cg.path().display()),
                }
            }
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
