//! Running `wakeway` subcommands as child processes: output captured, stopped on drop, signals.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::{DEADLINE, WAKEWAY, wait_for};

/// A spawned `wakeway` process with its output captured.
pub struct Proc {
    name: String,
    child: Option<Child>,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Proc {
    /// Spawns `wakeway ARGS...` with stdout and stderr piped into buffers.
    pub fn spawn(name: &str, args: &[&str]) -> Proc {
        Self::spawn_with_env(name, args, &[])
    }

    pub fn spawn_with_env(name: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
        Self::spawn_command(name, Command::new(WAKEWAY), args, env)
    }

    /// Spawns another program (etcd) the same way.
    pub fn spawn_program(program: &str, args: &[&str]) -> Proc {
        Self::spawn_command(program, Command::new(program), args, &[])
    }

    /// As `spawn`, with the open-file limit (soft and hard) set to `nofile`, through util-linux's
    /// `prlimit`.
    pub fn spawn_with_nofile(name: &str, args: &[&str], nofile: u64) -> Proc {
        let mut cmd = Command::new("prlimit");
        cmd.arg(format!("--nofile={nofile}:{nofile}")).arg(WAKEWAY);
        Self::spawn_command(name, cmd, args, &[])
    }

    fn spawn_command(name: &str, mut cmd: Command, args: &[&str], env: &[(&str, &str)]) -> Proc {
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("NO_COLOR", "1");
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {WAKEWAY} {args:?}: {e}"));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            drain(child.stdout.take().unwrap(), stdout.clone()),
            drain(child.stderr.take().unwrap(), stderr.clone()),
        ];
        Proc {
            name: name.to_string(),
            child: Some(child),
            stdout,
            stderr,
            readers,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("process already reaped").id()
    }

    /// The stderr captured so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// The stdout captured so far.
    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().join("\n")
    }

    /// Waits until a stderr line contains every one of `words`; `what` names it on failure.
    pub async fn wait_stderr_line(&self, what: &str, words: &[&str]) {
        wait_for(what, DEADLINE, || async {
            let lines = self.stderr.lock().unwrap();
            lines
                .iter()
                .any(|l| words.iter().all(|w| l.contains(w)))
                .then_some(())
        })
        .await
    }

    /// Waits for a stdout line starting with `prefix` and returns the rest of it (trimmed).
    /// Fails early, with the captured stderr, if the process exits first.
    pub async fn wait_stdout_line(&mut self, prefix: &str) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(rest) = self
                .stdout
                .lock()
                .unwrap()
                .iter()
                .find_map(|l| stdout_line_rest(l, prefix))
            {
                return rest.trim().to_string();
            }
            if let Some(status) = self.try_wait() {
                panic!(
                    "{}: exited with {status} before printing {prefix:?} (its output follows)",
                    self.name
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "{}: no stdout line {prefix:?} within {DEADLINE:?} (its output follows)",
                    self.name
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for the `NAME listening on ADDR` line and parses ADDR (a JSON line's `message` with
    /// `log.format = "json"`).
    pub async fn listening_addr(&mut self, what: &str) -> SocketAddr {
        let prefix = format!("{what} listening on ");
        let rest = self.wait_stdout_line(&prefix).await;
        let addr = rest.split_whitespace().next().unwrap_or("");
        addr.parse()
            .unwrap_or_else(|e| panic!("{}: bad address in {prefix:?}{rest:?}: {e}", self.name))
    }

    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().expect("try_wait")
    }

    /// Sends a signal to the process (not to its children).
    pub fn signal(&self, sig: i32) {
        signal(self.pid(), sig);
    }

    /// Waits for the process to exit, up to `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let what = format!("{} to exit (its output follows)", self.name);
        wait_for(&what, timeout, || std::future::ready(self.try_wait())).await
    }

    /// Waits (bounded) until stdout and stderr reach EOF, so the buffers are complete.
    pub async fn wait_output_closed(&self) {
        wait_for(
            &format!("{}: output pipes to close", self.name),
            Duration::from_secs(5),
            || async move { self.readers.iter().all(|r| r.is_finished()).then_some(()) },
        )
        .await
    }

    /// Prints the captured output (last lines) to the test's stderr.
    pub fn dump(&self) {
        eprintln!(
            "===== {} (pid {:?}) stdout =====\n{}\n===== {} stderr (last 400 lines) =====\n{}\n===== end {} =====",
            self.name,
            self.child.as_ref().map(|c| c.id()),
            tail(&self.stdout(), 100),
            self.name,
            tail(&self.stderr(), 400),
            self.name
        );
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("WAKEWAY_TEST_DUMP").is_some() {
            self.dump();
        }
        let Some(mut child) = self.child.take() else {
            return;
        };
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        // Gracefully first, so wakeway stops its own children; then for sure.
        signal(child.id(), libc::SIGTERM);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn drain(
    pipe: impl Read + Send + 'static,
    into: Arc<Mutex<Vec<String>>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&line);
                    into.lock()
                        .unwrap()
                        .push(text.trim_end_matches(['\n', '\r']).to_string());
                }
            }
        }
    })
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Starts `wakeway whoami --port 0` outside wakeway (for static upstreams); its address.
pub async fn start_whoami() -> (Proc, SocketAddr) {
    let mut whoami = Proc::spawn("whoami", &["whoami", "--port", "0"]);
    let addr = whoami.listening_addr("whoami").await;
    (whoami, addr)
}

/// Sends `sig` to `pid`.
pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// Whether `pid` is a live process (a zombie counts as dead).
pub fn pid_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // `pid (comm) S ...`: comm may contain spaces and parentheses, the state follows the last ')'.
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next())
        .unwrap_or("");
    !matches!(state, "Z" | "X" | "x" | "")
}

/// Runs `wakeway ARGS` to completion (bounded) and returns (status, stdout, stderr).
pub async fn run_to_exit(args: &[&str]) -> (ExitStatus, String, String) {
    let mut proc = Proc::spawn(&format!("wakeway {}", args.join(" ")), args);
    let status = proc.wait_exit(DEADLINE).await;
    proc.wait_output_closed().await;
    (status, proc.stdout(), proc.stderr())
}

/// Runs `wakeway ARGS --admin ADDR` (the CLI against a running wakeway) to completion; returns
/// (status, stdout, stderr).
pub async fn cli(admin: SocketAddr, args: &[&str]) -> (ExitStatus, String, String) {
    let admin = admin.to_string();
    let mut all = args.to_vec();
    all.extend(["--admin", admin.as_str()]);
    run_to_exit(&all).await
}

/// As [`cli`], which must succeed; returns its stdout.
pub async fn cli_ok(admin: SocketAddr, args: &[&str]) -> String {
    let (status, out, err) = cli(admin, args).await;
    assert!(status.success(), "{args:?}: {out}{err}");
    out
}

/// As [`cli_ok`], its stdout parsed as JSON (`-o json`).
pub async fn cli_json<T: serde::de::DeserializeOwned>(admin: SocketAddr, args: &[&str]) -> T {
    let out = cli_ok(admin, args).await;
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?} is not JSON ({e}): {out}"))
}

/// What follows `prefix` on a stdout line: the line itself, or the `message` of a JSON line.
fn stdout_line_rest(line: &str, prefix: &str) -> Option<String> {
    if let Some(rest) = line.strip_prefix(prefix) {
        return Some(rest.to_string());
    }
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    v["message"]
        .as_str()?
        .strip_prefix(prefix)
        .map(str::to_string)
}
