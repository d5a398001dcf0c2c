//! One cgroup per process instance, where the machine lets wakeway make one: the whole tree of an
//! instance (a worker that called `setsid` included) is killed with it, frozen with it, and its
//! memory is read in one place. Without a writable cgroup the process runtime falls back to the
//! instance's process group, which a `setsid` escapes; `wakeway check` says which it is.
//!
//! Layout: `<hierarchy>/<wakeway's own cgroup>/wakeway/<pid>-<start time>/<service>/<instance>`.
//! The owner segment keeps two wakeways on one machine apart; a later wakeway thaws, kills and
//! removes what an owner that is no longer alive left behind (after a SIGKILL of wakeway).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How instances are contained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One cgroup v2 per instance: `cgroup.freeze`, `cgroup.kill`, `memory.current`.
    V2,
    /// The v1 freezer hierarchy (`freezer.state`) plus, when mounted, the v1 memory one.
    V1,
    /// No writable cgroup: the process group only.
    ProcessGroup,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::V2 => "cgroup v2",
            Mode::V1 => "cgroup v1",
            Mode::ProcessGroup => "process group fallback",
        }
    }
}

/// Where this wakeway makes its instances' cgroups.
#[derive(Debug)]
pub struct Cgroups {
    mode: Mode,
    /// The owner directory in each hierarchy, the one that kills and freezes first.
    owner_dirs: Vec<PathBuf>,
    /// Why there is no cgroup (for the fallback), or where they are.
    detail: String,
}

/// The cgroups of this wakeway, detected once; leftovers of dead wakeways are swept then.
pub fn get() -> &'static Cgroups {
    static CGROUPS: OnceLock<Cgroups> = OnceLock::new();
    CGROUPS.get_or_init(|| {
        let c = detect();
        match c.mode {
            Mode::ProcessGroup => tracing::warn!(
                "process instances run in their process group only ({}): a background process \
                 that calls setsid can outlive its instance, and idle_action = \"freeze\" is \
                 unavailable",
                c.detail
            ),
            _ => {
                tracing::info!(
                    "process instances each get a {} ({})",
                    c.mode.as_str(),
                    c.detail
                );
                for dir in &c.owner_dirs {
                    if let Some(parent) = dir.parent() {
                        sweep(parent, c.mode == Mode::V2);
                    }
                }
            }
        }
        c
    })
}

/// For `wakeway check`: how the process services' instances are contained, and how each
/// service with `idle_action = "freeze"` freezes (or why it cannot: its idle instances are then
/// stopped). Empty when the config has neither.
pub fn check(config: &crate::config::Config) -> String {
    use crate::config::{IdleAction, ImageRuntime, Source};
    use std::fmt::Write as _;
    let names: Vec<&str> = config
        .services
        .iter()
        .filter(|s| matches!(s.source, Source::Command(_)))
        .map(|s| s.name.as_str())
        .collect();
    let mut out = String::new();
    let mode = (!names.is_empty()).then(detect_mode);
    if let Some((mode, detail)) = &mode {
        let _ = writeln!(
            out,
            "process instances ({}): {} ({detail})",
            names.join(", "),
            mode.as_str()
        );
    }
    for s in &config.services {
        if s.scaling.idle_action != IdleAction::Freeze {
            continue;
        }
        let how = match (&s.source, &mode) {
            (Source::Command(_), Some((Mode::ProcessGroup, _))) => {
                "cannot freeze without a writable cgroup; idle instances are stopped instead"
                    .to_string()
            }
            (Source::Command(_), Some((m, _))) => {
                format!("idle instances are frozen with the {} freezer", m.as_str())
            }
            (Source::Image(img), _) if img.runtime == ImageRuntime::Swarm => {
                "idle_action = \"freeze\" is not supported for swarm services yet; idle \
                 instances are stopped instead"
                    .to_string()
            }
            (Source::Image(_), _) => "idle instances are paused (docker pause)".to_string(),
            _ => continue,
        };
        let _ = writeln!(out, "service {}: {how}", s.name);
    }
    out
}

/// What `get` would pick, and where or why not, without sweeping anything.
fn detect_mode() -> (Mode, String) {
    let c = detect();
    for dir in &c.owner_dirs {
        let _ = fs::remove_dir(dir);
    }
    (c.mode, c.detail)
}

impl Cgroups {
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Makes the cgroup of one instance. `None` in the process-group fallback.
    pub fn create(&self, service: &str, instance: &str) -> io::Result<Option<InstanceCgroup>> {
        if self.mode == Mode::ProcessGroup {
            return Ok(None);
        }
        for name in [service, instance] {
            if name.is_empty() || name.contains('/') || name.starts_with('.') {
                return Err(io::Error::other(format!("`{name}` cannot name a cgroup")));
            }
        }
        // An instance id may come back while its namesake still drains (a service removed and
        // added again): a cgroup is never shared, so the second one gets a suffix.
        let mut last = None;
        for n in 1..=100u32 {
            let leaf = match n {
                1 => instance.to_string(),
                n => format!("{instance}~{n}"),
            };
            match self.make_dirs(service, &leaf) {
                Ok(dirs) => {
                    return Ok(Some(InstanceCgroup {
                        v2: self.mode == Mode::V2,
                        dirs,
                    }));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no free cgroup name")))
    }

    /// The instance's directory in each hierarchy, all new (or none: what was made is undone).
    fn make_dirs(&self, service: &str, leaf: &str) -> io::Result<Vec<PathBuf>> {
        let mut dirs: Vec<PathBuf> = Vec::new();
        for owner in &self.owner_dirs {
            let parent = owner.join(service);
            let dir = parent.join(leaf);
            // A sibling's removal of the empty service directory may race this: once more.
            let made = fs::create_dir_all(&parent)
                .and_then(|()| fs::create_dir(&dir))
                .or_else(|e| match e.kind() {
                    io::ErrorKind::NotFound => {
                        fs::create_dir_all(&parent).and_then(|()| fs::create_dir(&dir))
                    }
                    _ => Err(e),
                });
            if let Err(e) = made {
                for d in &dirs {
                    let _ = fs::remove_dir(d);
                }
                return Err(io::Error::new(
                    e.kind(),
                    format!("cannot create cgroup {}: {e}", dir.display()),
                ));
            }
            dirs.push(dir);
        }
        Ok(dirs)
    }
}

/// The cgroup of one instance (one directory per hierarchy; the first kills and freezes).
#[derive(Debug, Clone)]
pub struct InstanceCgroup {
    v2: bool,
    dirs: Vec<PathBuf>,
}

/// Open `cgroup.procs` files a forked child writes itself into before it runs the app.
pub struct Joiner {
    files: Vec<File>,
}

impl Joiner {
    /// Called in the forked child, before exec: each write is one `write(2)` of a buffer on the
    /// stack ("0" means the writing process), with no allocation and no lock, so it is safe
    /// between fork and exec.
    pub fn join(&self) -> io::Result<()> {
        for mut f in &self.files {
            f.write_all(b"0")?;
        }
        Ok(())
    }
}

impl InstanceCgroup {
    pub fn path(&self) -> &Path {
        &self.dirs[0]
    }

    /// Every directory of the instance (one per hierarchy).
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Opened in the parent, before the fork, so the child has nothing to allocate.
    pub fn joiner(&self) -> io::Result<Joiner> {
        let files = self
            .dirs
            .iter()
            .map(|d| OpenOptions::new().write(true).open(d.join("cgroup.procs")))
            .collect::<io::Result<_>>()?;
        Ok(Joiner { files })
    }

    pub fn pids(&self) -> Vec<i32> {
        pids_in(self.path())
    }

    /// Stops every process of the instance where it is; returns once the kernel says they all
    /// are (or after `within`, with an error).
    pub fn freeze(&self, within: Duration) -> io::Result<()> {
        set_frozen(self.path(), self.v2, true)?;
        let deadline = Instant::now() + within;
        while !is_frozen(self.path(), self.v2) {
            if Instant::now() >= deadline {
                let _ = set_frozen(self.path(), self.v2, false);
                return Err(io::Error::other(format!(
                    "{} did not freeze within {within:?}",
                    self.path().display()
                )));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }

    pub fn thaw(&self) -> io::Result<()> {
        set_frozen(self.path(), self.v2, false)
    }

    pub fn is_frozen(&self) -> bool {
        is_frozen(self.path(), self.v2)
    }

    /// Whether a process of the instance was sent SIGKILL while frozen. The v1 freezer holds
    /// even SIGKILL until the thaw: such an instance is dead, only not yet seen to be.
    pub fn killed_while_frozen(&self) -> bool {
        const SIGKILL_BIT: u64 = 1 << 8;
        self.pids().iter().any(|pid| {
            fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
                s.lines()
                    .filter_map(|l| l.strip_prefix("ShdPnd:").or(l.strip_prefix("SigPnd:")))
                    .filter_map(|v| u64::from_str_radix(v.trim(), 16).ok())
                    .any(|mask| mask & SIGKILL_BIT != 0)
            })
        })
    }

    /// Kills every process in the instance, frozen or not, however it was started.
    pub fn kill(&self) {
        kill_all(self.path(), self.v2);
    }

    /// Bytes of memory the instance holds (the kernel's count for the cgroup; else the sum of
    /// its processes' resident sets).
    pub fn memory(&self) -> Option<u64> {
        for d in &self.dirs {
            for f in ["memory.current", "memory.usage_in_bytes"] {
                if let Ok(s) = fs::read_to_string(d.join(f))
                    && let Ok(n) = s.trim().parse()
                {
                    return Some(n);
                }
            }
        }
        let page = 4096u64;
        let pids = self.pids();
        if pids.is_empty() {
            return None;
        }
        Some(
            pids.iter()
                .filter_map(|p| fs::read_to_string(format!("/proc/{p}/statm")).ok())
                .filter_map(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>()
                * page,
        )
    }

    /// Removes the (empty) directories, and the service's and owner's when nothing else is in
    /// them. Fails while a process is still in the cgroup.
    pub fn remove(&self) -> io::Result<()> {
        let mut first = Ok(());
        for d in &self.dirs {
            if let Err(e) = fs::remove_dir(d)
                && e.kind() != io::ErrorKind::NotFound
                && first.is_ok()
            {
                first = Err(e);
            }
            if let Some(service) = d.parent() {
                let _ = fs::remove_dir(service);
            }
        }
        first
    }
}

fn pids_in(dir: &Path) -> Vec<i32> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn set_frozen(dir: &Path, v2: bool, frozen: bool) -> io::Result<()> {
    let (file, value): (&str, &[u8]) = match (v2, frozen) {
        (true, true) => ("cgroup.freeze", b"1"),
        (true, false) => ("cgroup.freeze", b"0"),
        (false, true) => ("freezer.state", b"FROZEN"),
        (false, false) => ("freezer.state", b"THAWED"),
    };
    fs::write(dir.join(file), value)
}

fn is_frozen(dir: &Path, v2: bool) -> bool {
    if v2 {
        fs::read_to_string(dir.join("cgroup.events"))
            .is_ok_and(|s| s.lines().any(|l| l.trim() == "frozen 1"))
    } else {
        fs::read_to_string(dir.join("freezer.state")).is_ok_and(|s| s.trim() == "FROZEN")
    }
}

/// v2 kills the cgroup in one write. v1 has no such file: the cgroup is frozen so nothing in it
/// can fork, each process gets SIGKILL, and the thaw lets the signals land.
fn kill_all(dir: &Path, v2: bool) {
    if v2 && fs::write(dir.join("cgroup.kill"), b"1").is_ok() {
        return;
    }
    let frozen = set_frozen(dir, v2, true).is_ok();
    let deadline = Instant::now() + Duration::from_millis(100);
    while frozen && !is_frozen(dir, v2) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    for pid in pids_in(dir) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    if frozen {
        let _ = set_frozen(dir, v2, false);
    }
}

/// A cgroup hierarchy mounted here: where, and the cgroup path its mount shows as its root.
struct Mount {
    point: PathBuf,
    root: String,
}

/// The mount of a v1 hierarchy holding `controller`, or of the v2 one (`None`), from
/// `/proc/self/mountinfo`.
fn mount_of(mountinfo: &str, controller: Option<&str>) -> Option<Mount> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        let (root, point) = (*left.get(3)?, *left.get(4)?);
        let fstype = *right.first()?;
        let opts = right.get(2).copied().unwrap_or("");
        let fits = match controller {
            None => fstype == "cgroup2",
            Some(c) => fstype == "cgroup" && opts.split(',').any(|o| o == c),
        };
        fits.then(|| Mount {
            point: PathBuf::from(point),
            root: root.to_string(),
        })
    })
}

/// Wakeway's own cgroup in the v1 hierarchy of `controller`, or in v2 (`None`).
fn own_path(proc_cgroup: &str, controller: Option<&str>) -> Option<String> {
    proc_cgroup.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let fits = match controller {
            None => controllers.is_empty(),
            Some(c) => controllers.split(',').any(|x| x == c),
        };
        fits.then(|| path.to_string())
    })
}

fn dir_of(mount: &Mount, own: &str) -> PathBuf {
    let rel = own.strip_prefix(mount.root.as_str()).unwrap_or(own);
    mount.point.join(rel.trim_start_matches('/'))
}

/// This process's identity that survives no reuse of its pid: `<pid>-<start time in ticks>`.
fn owner_name(pid: u32) -> Option<String> {
    Some(format!("{pid}-{}", start_time(pid)?))
}

fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command (which may hold spaces) start at field 3; the start time is 22.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

fn owner_alive(name: &str) -> bool {
    let Some((pid, start)) = name.split_once('-') else {
        return false;
    };
    match (pid.parse::<u32>(), start.parse::<u64>()) {
        (Ok(pid), Ok(start)) => start_time(pid) == Some(start),
        _ => false,
    }
}

fn detect() -> Cgroups {
    let forced = std::env::var("WAKEWAY_CGROUP").ok();
    let fallback = |detail: String| Cgroups {
        mode: Mode::ProcessGroup,
        owner_dirs: Vec::new(),
        detail,
    };
    if matches!(forced.as_deref(), Some("none" | "off")) {
        return fallback("WAKEWAY_CGROUP=none".into());
    }
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let proc_cgroup = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let Some(owner) = owner_name(std::process::id()) else {
        return fallback("cannot read /proc/self/stat".into());
    };
    let owner_dir = |controller: Option<&str>| -> Result<PathBuf, String> {
        let mount = mount_of(&mountinfo, controller)
            .ok_or_else(|| format!("no {} mounted", controller.unwrap_or("cgroup2")))?;
        let own = own_path(&proc_cgroup, controller)
            .ok_or_else(|| format!("not in a {} cgroup", controller.unwrap_or("v2")))?;
        let dir = dir_of(&mount, &own).join("wakeway").join(&owner);
        fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(dir)
    };
    let v2 = |detail: &mut Vec<String>| match owner_dir(None) {
        Ok(dir) => Some(Cgroups {
            mode: Mode::V2,
            detail: format!("under {}", dir.display()),
            owner_dirs: vec![dir],
        }),
        Err(e) => {
            detail.push(format!("v2: {e}"));
            None
        }
    };
    let v1 = |detail: &mut Vec<String>| match owner_dir(Some("freezer")) {
        Ok(dir) => {
            let mut dirs = vec![dir];
            let mut what = format!("freezer under {}", dirs[0].display());
            match owner_dir(Some("memory")) {
                Ok(m) => {
                    what += &format!(", memory under {}", m.display());
                    dirs.push(m);
                }
                Err(e) => what += &format!(", no memory cgroup ({e})"),
            }
            Some(Cgroups {
                mode: Mode::V1,
                owner_dirs: dirs,
                detail: what,
            })
        }
        Err(e) => {
            detail.push(format!("v1: {e}"));
            None
        }
    };
    let mut why = Vec::new();
    // Only v2 mounted (the unified layout) comes first; then v1's freezer, which on a hybrid
    // machine also brings the memory figures that the v2 side lacks there.
    let pure_v2 = mount_of(&mountinfo, None)
        .is_some_and(|m| m.point == Path::new("/sys/fs/cgroup") && m.root == "/");
    let picked = match forced.as_deref() {
        Some("v2") => v2(&mut why),
        Some("v1") => v1(&mut why),
        _ if pure_v2 => v2(&mut why).or_else(|| v1(&mut why)),
        _ => v1(&mut why).or_else(|| v2(&mut why)),
    };
    picked.unwrap_or_else(|| fallback(format!("no writable cgroup: {}", why.join("; "))))
}

/// Thaws, kills and removes what wakeways that are no longer running left under `root`
/// (`.../wakeway`). Their instances outlived them only if wakeway was SIGKILLed while the guard
/// could not act, or if they were frozen (a frozen process cannot act on its parent-death
/// signal until it is thawed).
pub fn sweep(root: &Path, v2: bool) {
    let Ok(owners) = fs::read_dir(root) else {
        return;
    };
    for owner in owners.flatten() {
        let name = owner.file_name().to_string_lossy().into_owned();
        if !owner.path().is_dir() || owner_alive(&name) {
            continue;
        }
        let mut left = 0;
        for service in read_dirs(&owner.path()) {
            for instance in read_dirs(&service) {
                let had = !pids_in(&instance).is_empty();
                if had {
                    kill_all(&instance, v2);
                    left += 1;
                }
                let deadline = Instant::now() + Duration::from_secs(2);
                while fs::remove_dir(&instance).is_err() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            let _ = fs::remove_dir(&service);
        }
        let _ = fs::remove_dir(owner.path());
        if left > 0 {
            tracing::warn!(
                "killed {left} instance(s) left running by a wakeway that is gone ({})",
                owner.path().display()
            );
        }
    }
}

fn read_dirs(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
