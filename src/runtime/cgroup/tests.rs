//! The cgroup modes against the real hierarchy where one is writable.

use super::*;

const MOUNTINFO: &str = "\
25 30 0:22 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
31 25 0:27 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
32 25 0:28 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
33 25 0:29 /docker/abc /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
34 25 0:30 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
const PROC_CGROUP: &str = "6:freezer:/\n4:memory:/api/x\n1:cpu,cpuacct:/docker/abc/y\n0::/\n";

#[test]
fn finds_each_hierarchy_and_own_cgroup() {
    let m = mount_of(MOUNTINFO, Some("memory")).unwrap();
    assert_eq!(m.point, Path::new("/sys/fs/cgroup/memory"));
    let own = own_path(PROC_CGROUP, Some("memory")).unwrap();
    assert_eq!(dir_of(&m, &own), Path::new("/sys/fs/cgroup/memory/api/x"));
    // A hierarchy mounted at a sub-cgroup (a container without a cgroup namespace).
    let cpu = mount_of(MOUNTINFO, Some("cpuacct")).unwrap();
    let own = own_path(PROC_CGROUP, Some("cpuacct")).unwrap();
    assert_eq!(
        dir_of(&cpu, &own),
        Path::new("/sys/fs/cgroup/cpu,cpuacct/y")
    );
    let v2 = mount_of(MOUNTINFO, None).unwrap();
    assert_eq!(v2.point, Path::new("/sys/fs/cgroup/unified"));
    assert_eq!(own_path(PROC_CGROUP, None).as_deref(), Some("/"));
    assert!(mount_of(MOUNTINFO, Some("pids")).is_none());
}

#[test]
fn an_owner_is_alive_only_with_its_own_start_time() {
    let me = owner_name(std::process::id()).unwrap();
    assert!(owner_alive(&me));
    let (pid, start) = me.split_once('-').unwrap();
    let start: u64 = start.parse().unwrap();
    assert!(
        !owner_alive(&format!("{pid}-{}", start + 1)),
        "a reused pid"
    );
    assert!(!owner_alive("not-an-owner"));
}

/// The cgroups, where one is writable; none here is a failure only under CI.
fn writable() -> Option<&'static Cgroups> {
    let c = get();
    if c.mode() == Mode::ProcessGroup {
        assert!(std::env::var("CI").is_err(), "no writable cgroup under CI");
        return None;
    }
    Some(c)
}

/// What a SIGKILLed wakeway left (a frozen instance, whose parent-death signal cannot act)
/// is thawed, killed and removed by the next one; a live wakeway's cgroups are left alone.
#[test]
fn sweep_kills_what_a_dead_wakeway_left() {
    let Some(c) = writable() else {
        return;
    };
    let root = c.owner_dirs[0].parent().unwrap().to_path_buf();
    let dead = root.join(format!("{}-1", u32::MAX)).join("svc").join("i1");
    let mine = c
        .create("svc", &format!("sweep-{}", std::process::id()))
        .unwrap()
        .unwrap();
    fs::create_dir_all(&dead).unwrap();
    let spawn_in = |dir: &Path| {
        let child = std::process::Command::new("sleep")
            .arg("300")
            .spawn()
            .unwrap();
        fs::write(dir.join("cgroup.procs"), child.id().to_string()).unwrap();
        child
    };
    let mut left = spawn_in(&dead);
    let mut live = spawn_in(mine.path());
    set_frozen(&dead, c.mode() == Mode::V2, true).unwrap();
    sweep(&root, c.mode() == Mode::V2);
    let status = left.wait().unwrap();
    assert!(!status.success(), "{status}");
    assert!(!dead.exists(), "{} left behind", dead.display());
    assert!(
        live.try_wait().unwrap().is_none(),
        "a live wakeway's instance was swept"
    );
    mine.kill();
    live.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while mine.remove().is_err() {
        assert!(Instant::now() < deadline, "cgroup never emptied");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn freeze_stops_the_cpu_and_thaw_gives_it_back() {
    let Some(c) = writable() else {
        return;
    };
    let cg = c
        .create("svc", &format!("freeze-{}", std::process::id()))
        .unwrap()
        .unwrap();
    let joiner = cg.joiner().unwrap();
    let mut cmd = std::process::Command::new("sh");
    cmd.args(["-c", "while :; do :; done"]);
    // SAFETY: as in the process runtime: only write(2)s into files opened before the fork.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || joiner.join());
    }
    let child = cmd.spawn().unwrap();
    /// A failed assertion must not leave a frozen busy loop behind.
    struct Reap(InstanceCgroup, std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            self.0.kill();
            let _ = self.1.wait();
            let deadline = Instant::now() + Duration::from_secs(5);
            while self.0.remove().is_err() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
    assert_eq!(cg.pids(), vec![child.id() as i32], "joined before exec");
    let reap = Reap(cg.clone(), child);
    let child = &reap.1;
    let ticks = |pid: u32| -> u64 {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let f: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
    };
    cg.freeze(Duration::from_secs(5)).unwrap();
    assert!(cg.is_frozen());
    let before = ticks(child.id());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(ticks(child.id()), before, "a frozen process used CPU");
    assert!(cg.memory().is_some_and(|m| m > 0));
    cg.thaw().unwrap();
    assert!(!cg.is_frozen());
    drop(reap);
    assert!(!cg.path().exists(), "cgroup left behind");
}
