//! Issue 16, item 5: a background process of an app that calls `setsid` leaves the instance's
//! process group, but not its cgroup: it goes with its instance at scale-to-zero, and with
//! wakeway on a SIGKILL (by the guard, or by the next wakeway's sweep when nothing was left to
//! act).

mod common;

use std::path::Path;

use common::*;

/// Whether this machine lets wakeway make cgroups; the test is about them. Under CI it must.
fn cgroups_writable() -> bool {
    let writable = ["/sys/fs/cgroup/freezer", "/sys/fs/cgroup"]
        .iter()
        .any(|d| writable(Path::new(d)));
    if !writable {
        assert!(std::env::var("CI").is_err(), "no writable cgroup under CI");
        eprintln!("skipped: no writable cgroup here");
    }
    writable
}

fn writable(dir: &Path) -> bool {
    let probe = dir.join(format!("wakeway-test-{}", std::process::id()));
    let made = std::fs::create_dir(&probe).is_ok();
    let _ = std::fs::remove_dir(&probe);
    made
}

/// An app whose background worker calls `setsid` and writes its pid to `file`.
fn escaping_app(name: &str, file: &Path, scaling: &str) -> String {
    let script = format!(
        "setsid sh -c 'echo $$ > {}; exec sleep 300' & exec {WAKEWAY} whoami",
        file.display()
    );
    shell_service(name, &script, &format!("[service.scaling]\n{scaling}\n"))
}

async fn escaped_pid(file: &Path) -> u32 {
    let pid = wait_for("the setsid worker's pid", DEADLINE, || async {
        std::fs::read_to_string(file).ok()?.trim().parse().ok()
    })
    .await;
    assert!(pid_alive(pid));
    // It did leave the instance's process group: the process group alone would not catch it.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let pgid: u32 = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(pgid, pid, "the worker leads its own group after setsid");
    pid
}

/// A warm `esc` whose worker escaped its process group: the temp dir, wakeway, the app's pid
/// and the worker's.
async fn warm_escaping_app() -> (tempfile::TempDir, Wakeway, u32, u32) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("worker.pid");
    let wk = Wakeway::start(&escaping_app("esc", &file, "min_instances = 1")).await;
    let app = wk.wait_ready("esc").await.remove(0).pid.unwrap();
    let worker = escaped_pid(&file).await;
    (dir, wk, app, worker)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_setsid_worker_goes_with_its_instance_at_scale_to_zero() {
    if !cgroups_writable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("worker.pid");
    let wk = Wakeway::start(&escaping_app(
        "esc",
        &file,
        "min_instances = 0\nidle_timeout = \"1s\"",
    ))
    .await;
    wk.get_ok("esc.localhost", "/").await;
    let worker = escaped_pid(&file).await;
    wk.wait_scaled_to_zero("esc", "after idle_timeout").await;
    wait_pids_gone(&[worker]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_setsid_worker_goes_when_wakeway_is_sigkilled() {
    if !cgroups_writable() {
        return;
    }
    let (_dir, mut wk, app, worker) = warm_escaping_app().await;
    wk.proc.signal(libc::SIGKILL);
    wk.proc.wait_exit(DEADLINE).await;
    wait_pids_gone(&[app, worker]).await;
}

/// The children of `pid` (from /proc).
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|s| {
                s.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                    == Some(pid)
            })
        })
        .collect()
}

/// With the guard unable to act as well (killed first here), what the SIGKILLed wakeway left is
/// swept by the next wakeway that starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_wakeway_sweeps_what_a_sigkilled_one_left() {
    if !cgroups_writable() {
        return;
    }
    let (dir, mut wk, app, worker) = warm_escaping_app().await;
    let guard: Vec<u32> = children(wk.proc.pid())
        .into_iter()
        .filter(|&p| p != app)
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/cmdline")).is_ok_and(|c| c.contains("uncg"))
        })
        .collect();
    assert_eq!(
        guard.len(),
        1,
        "one guard process among {:?}",
        children(wk.proc.pid())
            .iter()
            .map(|p| std::fs::read_to_string(format!("/proc/{p}/cmdline")).unwrap_or_default())
            .collect::<Vec<_>>()
    );
    // Not SIGSTOP: once wakeway is gone, the kernel continues a stopped process whose group
    // became orphaned, and the guard would do its job.
    signal(guard[0], libc::SIGKILL);
    wk.proc.signal(libc::SIGKILL);
    wk.proc.wait_exit(DEADLINE).await;
    wait_pids_gone(&[app]).await;
    assert!(pid_alive(worker), "nothing was left to kill the worker");
    let _next = Wakeway::start(&escaping_app("other", &dir.path().join("other.pid"), "")).await;
    wait_pids_gone(&[worker]).await;
}
