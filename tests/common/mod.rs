//! Black-box test harness: spawns the real `wakeway` binary and talks to it over real sockets.
//!
//! - [`Proc`] runs any `wakeway` subcommand, drains its stdout and stderr into buffers (dumped
//!   when a test fails), and stops it on drop (SIGTERM, then SIGKILL).
//! - [`Wakeway`] runs `wakeway run -c FILE` with a config written to a temp dir and knows the
//!   proxy and admin addresses it printed.
//! - [`send`], [`get`], [`admin_get`] are small HTTP helpers on a fresh connection each.
//! - [`wait_for`] polls a condition with a deadline: tests never sleep to synchronise.
//! - [`docker`] builds the test image and gives each docker test its own scope and cleanup.

// Each test file uses a different subset of the harness.
#![allow(dead_code)]

pub mod docker;
pub mod failures;
pub mod h2c;
pub mod raw;
pub mod tls;

use std::collections::BTreeMap;
use std::future::Future;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// The deadline for anything that should happen "soon" (cold starts, scale events, exits).
/// Generous: tests run on two loaded cores.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Upper bound on any single HTTP exchange, so a broken proxy fails a test instead of hanging it.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The binary under test.
pub const WAKEWAY: &str = env!("CARGO_BIN_EXE_wakeway");

/// `[proxy]` and `[admin]` on OS-picked loopback ports; append `[[service]]` tables to it.
pub const LISTEN_ANY: &str = r#"
[proxy]
listen = "127.0.0.1:0"

[admin]
listen = "127.0.0.1:0"
"#;

// ---------------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------------

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
                .find_map(|l| l.strip_prefix(prefix))
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

    /// Waits for the `NAME listening on ADDR` line and parses ADDR.
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
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                panic!(
                    "{}: still running after {timeout:?} (its output follows)",
                    self.name
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
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

// ---------------------------------------------------------------------------------------------
// wakeway run
// ---------------------------------------------------------------------------------------------

/// `wakeway run -c FILE` with its proxy and admin addresses.
pub struct Wakeway {
    pub proc: Proc,
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    pub config_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Wakeway {
    /// Starts wakeway with `services` (TOML `[[service]]` tables) on OS-picked ports.
    pub async fn start(services: &str) -> Wakeway {
        Self::start_config(&format!("{LISTEN_ANY}\n{services}")).await
    }

    /// Starts wakeway with a complete config file (its listeners should use port 0).
    pub async fn start_config(config: &str) -> Wakeway {
        Self::start_with(config, None).await
    }

    /// As `start_config`, with the process's open-file limit set to `nofile`.
    pub async fn start_with_nofile(config: &str, nofile: u64) -> Wakeway {
        Self::start_with(config, Some(nofile)).await
    }

    async fn start_with(config: &str, nofile: Option<u64>) -> Wakeway {
        let dir = tempfile::tempdir().expect("tempdir");
        let config_path = dir.path().join("wakeway.toml");
        std::fs::write(&config_path, config).expect("write config");
        let args = ["run", "-c", config_path.to_str().unwrap()];
        let mut proc = match nofile {
            Some(n) => Proc::spawn_with_nofile("wakeway run", &args, n),
            None => Proc::spawn("wakeway run", &args),
        };
        let proxy = proc.listening_addr("proxy").await;
        let admin = proc.listening_addr("admin").await;
        Wakeway {
            proc,
            proxy,
            admin,
            config_path,
            _dir: dir,
        }
    }

    /// `GET path` with `Host: host` through the proxy.
    pub async fn get(&self, host: &str, path: &str) -> Resp {
        get(self.proxy, host, path).await
    }

    /// `GET path` on the admin listener, parsed as JSON (must answer 200).
    pub async fn admin_json(&self, path: &str) -> Value {
        admin_json(self.admin, path).await
    }

    /// `GET /v1/services/{name}`.
    pub async fn service(&self, name: &str) -> Value {
        self.admin_json(&format!("/v1/services/{name}")).await
    }

    /// The instances of service `name`.
    pub async fn instances(&self, name: &str) -> Vec<Instance> {
        instances_of(&self.service(name).await)
    }

    /// `GET /v1/events?service=NAME`.
    pub async fn events(&self, name: &str) -> Vec<Value> {
        match self.admin_json(&format!("/v1/events?service={name}")).await {
            Value::Array(events) => events,
            other => panic!("/v1/events is not an array: {other}"),
        }
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        let resp = get(self.admin, "localhost", "/metrics").await;
        assert_eq!(resp.status, StatusCode::OK, "/metrics: {}", resp.text());
        resp.text()
    }

    /// Waits until service `name` has a ready instance; returns the ready instances.
    pub async fn wait_ready(&self, name: &str) -> Vec<Instance> {
        wait_for(
            &format!("a ready instance of {name}"),
            DEADLINE,
            || async move {
                let ready: Vec<Instance> = self
                    .instances(name)
                    .await
                    .into_iter()
                    .filter(|i| i.state == "ready")
                    .collect();
                (!ready.is_empty()).then_some(ready)
            },
        )
        .await
    }

    /// Waits until the service's `in_flight` (and `queued`) reach the given values.
    pub async fn wait_load(&self, name: &str, in_flight: u64, queued: u64) {
        wait_for(
            &format!("{name}: in_flight {in_flight}, queued {queued}"),
            DEADLINE,
            || async move {
                let s = self.service(name).await;
                (s["in_flight"].as_u64() == Some(in_flight) && s["queued"].as_u64() == Some(queued))
                    .then_some(())
            },
        )
        .await
    }
}

/// One entry of a service's `instances` array.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    pub id: String,
    pub state: String,
    pub pid: Option<u32>,
    pub in_flight: u64,
    pub address: String,
}

pub fn instances_of(service: &Value) -> Vec<Instance> {
    let Some(list) = service["instances"].as_array() else {
        panic!("service has no instances array: {service}");
    };
    list.iter()
        .map(|i| Instance {
            id: i["id"].as_str().unwrap_or_default().to_string(),
            state: i["state"].as_str().unwrap_or_default().to_string(),
            pid: i["pid"].as_u64().map(|p| p as u32),
            in_flight: i["in_flight"].as_u64().unwrap_or(0),
            address: i["address"].as_str().unwrap_or_default().to_string(),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

/// A buffered response.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The value of a `Name: value` line of a whoami body (name case-insensitive).
    pub fn field(&self, name: &str) -> Option<String> {
        body_field(&self.text(), name)
    }

    /// The whoami instance that answered (`Instance:` line of the body).
    pub fn instance(&self) -> Option<String> {
        self.field("Instance")
    }
}

/// The value of the first `Name: value` line in `text` (name case-insensitive).
pub fn body_field(text: &str, name: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// Sends one request over a fresh HTTP/1.1 connection to `addr` and buffers the response.
pub async fn send(addr: SocketAddr, req: Request<Full<Bytes>>) -> Result<Resp, String> {
    tokio::time::timeout(REQUEST_TIMEOUT, exchange(addr, req))
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "no response from {addr} within {REQUEST_TIMEOUT:?}"
            ))
        })
}

/// One request on a fresh HTTP/1.1 connection, unbounded in time: the caller bounds it.
async fn exchange<B>(addr: SocketAddr, req: Request<B>) -> Result<Resp, String>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake {addr}: {e}"))?;
    tokio::spawn(conn);
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("request to {addr}: {e}"))?;
    let (parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| format!("response body from {addr}: {e}"))?
        .to_bytes();
    Ok(Resp {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// Sends one request over a fresh h2c (prior knowledge) connection.
pub async fn send_h2(addr: SocketAddr, req: Request<Full<Bytes>>) -> Result<Resp, String> {
    let exchange = async {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .map_err(|e| format!("h2 handshake {addr}: {e}"))?;
        tokio::spawn(conn);
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("h2 request to {addr}: {e}"))?;
        let (parts, body) = resp.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| format!("h2 response body from {addr}: {e}"))?
            .to_bytes();
        Ok(Resp {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "no h2 response from {addr} within {REQUEST_TIMEOUT:?}"
            ))
        })
}

/// Builds a request with a `Host` header.
pub fn request(
    method: Method,
    host: &str,
    path: &str,
    body: impl Into<Bytes>,
) -> Request<Full<Bytes>> {
    Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, host)
        .body(Full::new(body.into()))
        .expect("request")
}

/// `GET path` with `Host: host`; `Err` only on transport failure.
pub async fn try_get(addr: SocketAddr, host: &str, path: &str) -> Result<Resp, String> {
    send(addr, request(Method::GET, host, path, Bytes::new())).await
}

/// `GET path` with `Host: host`; panics on transport failure.
pub async fn get(addr: SocketAddr, host: &str, path: &str) -> Resp {
    try_get(addr, host, path)
        .await
        .unwrap_or_else(|e| panic!("GET http://{host}{path} via {addr}: {e}"))
}

/// `GET path` on an admin listener, parsed as JSON (must answer 200).
pub async fn admin_json(admin: SocketAddr, path: &str) -> Value {
    let resp = get(admin, "localhost", path).await;
    assert_eq!(
        resp.status,
        StatusCode::OK,
        "admin GET {path}: {}",
        resp.text()
    );
    serde_json::from_slice(&resp.body)
        .unwrap_or_else(|e| panic!("admin GET {path}: not JSON ({e}): {}", resp.text()))
}

// ---------------------------------------------------------------------------------------------
// Polling, metrics, configs
// ---------------------------------------------------------------------------------------------

/// Polls `check` every 50 ms until it returns `Some`, or panics naming `what` after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until none of `pids` is alive.
pub async fn wait_pids_gone(pids: &[u32]) {
    wait_for(&format!("pids {pids:?} to exit"), DEADLINE, || async move {
        pids.iter().all(|&p| !pid_alive(p)).then_some(())
    })
    .await
}

/// The value of the sample `name{labels}` in Prometheus text; the sample's labels must include
/// all of `labels` (other labels are allowed). Several matching samples are summed.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (metric_name, label_text) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if metric_name != name {
            continue;
        }
        let sample_labels = parse_labels(label_text);
        if labels
            .iter()
            .all(|(k, v)| sample_labels.get(*k).map(String::as_str) == Some(*v))
        {
            let v: f64 = value.trim().parse().ok()?;
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        value.push(match n {
                            'n' => '\n',
                            other => other,
                        });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.insert(key.trim_start_matches(',').trim().to_string(), value);
        rest = &after[end..];
    }
    out
}

/// A `[[service]]` table running `wakeway whoami`, with extra TOML appended (e.g. sub-tables).
pub fn whoami_service(name: &str, host: &str, extra: &str) -> String {
    format!(
        r#"
[[service]]
name = "{name}"
hosts = ["{host}"]
command = ["wakeway", "whoami"]
{extra}
"#
    )
}

/// A port nothing listens on (bound then released).
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().unwrap().port()
}

/// The line number (1-based) of the first line of `text` containing `needle`.
pub fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("{needle:?} not in text"))
}

/// Runs `wakeway ARGS` to completion (bounded) and returns (status, stdout, stderr).
pub async fn run_to_exit(args: &[&str]) -> (ExitStatus, String, String) {
    let mut proc = Proc::spawn(&format!("wakeway {}", args.join(" ")), args);
    let status = proc.wait_exit(DEADLINE).await;
    proc.wait_output_closed().await;
    (status, proc.stdout(), proc.stderr())
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn metric_parsing() {
    let text = "# HELP x y\n\
        wakeway_requests_total{service=\"hello\",code=\"200\"} 5\n\
        wakeway_requests_total{service=\"hello\",code=\"503\"} 1\n\
        wakeway_requests_total{service=\"other\",code=\"200\"} 7\n\
        wakeway_cold_starts_total{service=\"hello\"} 1\n\
        plain 3.5\n";
    assert_eq!(
        metric(
            text,
            "wakeway_requests_total",
            &[("service", "hello"), ("code", "200")]
        ),
        Some(5.0)
    );
    assert_eq!(
        metric(text, "wakeway_requests_total", &[("service", "hello")]),
        Some(6.0)
    );
    assert_eq!(
        metric(text, "wakeway_cold_starts_total", &[("service", "x")]),
        None
    );
    assert_eq!(metric(text, "plain", &[]), Some(3.5));
}

#[test]
fn body_fields() {
    let body = "Instance: abc\nX-Forwarded-For: 127.0.0.1\n";
    assert_eq!(body_field(body, "instance").as_deref(), Some("abc"));
    assert_eq!(
        body_field(body, "x-forwarded-for").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(body_field(body, "missing"), None);
}

// ---------------------------------------------------------------------------------------------
// Releases: admin calls with a body and a token, deployments, steady load, held requests
// ---------------------------------------------------------------------------------------------

/// `METHOD path` on an admin listener with an optional JSON body and bearer token. Returns the
/// status and the body as JSON (a JSON string when the body is not JSON).
pub async fn admin_call(
    admin: SocketAddr,
    method: Method,
    path: &str,
    body: Option<&Value>,
    token: Option<&str>,
) -> (StatusCode, Value) {
    let mut req = Request::builder()
        .method(method.clone())
        .uri(path)
        .header(http::header::HOST, "localhost");
    if let Some(t) = token {
        req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
    }
    // The admin refuses state-changing calls not declared JSON, even without a body.
    if method != Method::GET {
        req = req.header(http::header::CONTENT_TYPE, "application/json");
    }
    let bytes = match body {
        Some(v) => Bytes::from(v.to_string()),
        None => Bytes::new(),
    };
    let req = req.body(Full::new(bytes)).expect("request");
    let resp = send(admin, req)
        .await
        .unwrap_or_else(|e| panic!("admin {method} {path}: {e}"));
    let value = serde_json::from_slice(&resp.body).unwrap_or_else(|_| Value::String(resp.text()));
    (resp.status, value)
}

/// The revision an instance id belongs to (`web-00002-a` → `web-00002`).
pub fn revision_of_instance(id: &str) -> &str {
    id.rsplit_once('-').map(|(r, _)| r).unwrap_or(id)
}

impl Wakeway {
    /// `POST path` on the admin listener with a JSON body (no token).
    pub async fn admin_post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        admin_call(self.admin, Method::POST, path, Some(&body), None).await
    }

    /// `POST /v1/services/{name}/deployments` with `body`; must answer 202. Returns the deployment.
    pub async fn deploy(&self, name: &str, body: Value) -> Value {
        let (status, d) = self
            .admin_post(&format!("/v1/services/{name}/deployments"), body.clone())
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "deploy {name} {body}: {d}");
        assert!(d["id"].is_string(), "the deployment has an id: {d}");
        d
    }

    /// `GET /v1/services/{name}/deployments`.
    pub async fn deployments(&self, name: &str) -> Vec<Value> {
        match self
            .admin_json(&format!("/v1/services/{name}/deployments"))
            .await
        {
            Value::Array(list) => list,
            other => panic!("deployments of {name} is not an array: {other}"),
        }
    }

    /// Waits until deployment `id` of `name` is no longer `in_progress`; returns it.
    pub async fn wait_deployment(&self, name: &str, id: &str) -> Value {
        wait_for(
            &format!("deployment {id} of {name} to finish"),
            DEADLINE,
            || async move {
                let d = self
                    .admin_json(&format!("/v1/services/{name}/deployments/{id}"))
                    .await;
                (d["state"] != "in_progress").then_some(d)
            },
        )
        .await
    }

    /// The live revision id of service `name`.
    pub async fn revision(&self, name: &str) -> String {
        let s = self.service(name).await;
        s["revision"]
            .as_str()
            .unwrap_or_else(|| panic!("service {name} has no revision: {s}"))
            .to_string()
    }

    /// Waits until the instances of `name` satisfy `check`; returns them.
    pub async fn wait_instances(
        &self,
        name: &str,
        what: &str,
        check: impl Fn(&[Instance]) -> bool,
    ) -> Vec<Instance> {
        let check = &check;
        wait_for(&format!("{name}: {what}"), DEADLINE, || async move {
            let list = self.instances(name).await;
            check(&list).then_some(list)
        })
        .await
    }

    /// Waits until `name` has exactly `n` instances, all ready and of `revision`.
    pub async fn wait_ready_revision(&self, name: &str, revision: &str, n: usize) -> Vec<Instance> {
        self.wait_instances(
            name,
            &format!("exactly {n} ready instance(s), all of {revision}"),
            |list| {
                list.len() == n
                    && list
                        .iter()
                        .all(|i| i.state == "ready" && revision_of_instance(&i.id) == revision)
            },
        )
        .await
    }

    /// Waits until `GET /v1/events?service=NAME` has an event of `kind`; returns the events of it.
    pub async fn wait_event(&self, name: &str, kind: &str) -> Vec<Value> {
        wait_for(
            &format!("a {kind} event of {name}"),
            DEADLINE,
            || async move {
                let found: Vec<Value> = self
                    .events(name)
                    .await
                    .into_iter()
                    .filter(|e| e["kind"] == kind)
                    .collect();
                (!found.is_empty()).then_some(found)
            },
        )
        .await
    }

    /// Replaces the config file this wakeway was started with (for a reload).
    pub fn write_config(&self, text: &str) {
        std::fs::write(&self.config_path, text).expect("write config");
    }
}

/// One finished request of a [`Load`].
#[derive(Debug, Clone)]
pub struct Sample {
    /// When the request was sent (before connecting).
    pub sent: Instant,
    /// The status, or the transport error.
    pub result: Result<StatusCode, String>,
    /// The `Revision:` line of a whoami answer.
    pub revision: Option<String>,
    /// The `Instance:` line of a whoami answer.
    pub instance: Option<String>,
}

impl Sample {
    pub fn ok(&self) -> bool {
        self.result == Ok(StatusCode::OK)
    }
}

/// Steady concurrent load: `clients` tasks each looping `GET path` until stopped.
pub struct Load {
    stop: Arc<std::sync::atomic::AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    pub fn start(addr: SocketAddr, host: &str, path: &str, clients: usize) -> Load {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let tasks = (0..clients)
            .map(|_| {
                let (stop, samples) = (stop.clone(), samples.clone());
                let (host, path) = (host.to_string(), path.to_string());
                tokio::spawn(async move {
                    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                        let sent = Instant::now();
                        let sample = match try_get(addr, &host, &path).await {
                            Ok(r) => Sample {
                                sent,
                                result: Ok(r.status),
                                revision: r.field("Revision"),
                                instance: r.instance(),
                            },
                            Err(e) => Sample {
                                sent,
                                result: Err(e),
                                revision: None,
                                instance: None,
                            },
                        };
                        samples.lock().unwrap().push(sample);
                    }
                })
            })
            .collect();
        Load {
            stop,
            samples,
            tasks,
        }
    }

    /// The requests finished so far.
    pub fn samples(&self) -> Vec<Sample> {
        self.samples.lock().unwrap().clone()
    }

    /// Waits until `n` requests sent at or after `since` have finished.
    pub async fn wait_done_since(&self, since: Instant, n: usize) {
        wait_for(
            &format!("{n} load requests sent after the mark to finish"),
            DEADLINE,
            || async move {
                let done = self
                    .samples
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|s| s.sent >= since)
                    .count();
                (done >= n).then_some(())
            },
        )
        .await
    }

    /// Stops the clients (each finishes its current request) and returns every sample.
    pub async fn stop(self) -> Vec<Sample> {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        for t in self.tasks {
            t.await.expect("load task");
        }
        self.samples.lock().unwrap().clone()
    }
}

/// The samples that did not answer 200, described for an assertion message.
/// A paused service's answer: 503, with Retry-After, saying it is paused.
pub fn assert_paused(resp: &Resp) {
    assert_eq!(
        resp.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        resp.text()
    );
    assert!(resp.header("retry-after").is_some(), "{:?}", resp.headers);
    assert!(resp.text().contains("paused"), "{}", resp.text());
}

/// What a user of a blue/green deploy checks in the load's samples: no request failed, the
/// old revision served before the switch, and every request sent after it reached the new one.
pub fn assert_clean_switch(samples: &[Sample], switched: Instant, old: &str, new: &str) {
    assert!(
        failed_samples(samples).is_empty(),
        "failed requests during the deployment: {:?}",
        failed_samples(samples)
    );
    let after: Vec<&Sample> = samples.iter().filter(|s| s.sent >= switched).collect();
    assert!(!after.is_empty(), "no request was sent after the switch");
    for s in &after {
        assert_eq!(
            s.revision.as_deref(),
            Some(new),
            "a request sent after the switch reached {:?}",
            s.instance
        );
    }
    assert!(
        samples.iter().any(|s| s.revision.as_deref() == Some(old)),
        "the old revision served before the switch"
    );
}

pub fn failed_samples(samples: &[Sample]) -> Vec<String> {
    samples
        .iter()
        .filter(|s| !s.ok())
        .map(|s| format!("{:?} (instance {:?})", s.result, s.instance))
        .collect()
}

/// A `POST path` whose request body stays open until [`HeldRequest::finish`]: the request is in
/// flight (on whichever instance took it) for exactly as long as the test wants. Against
/// whoami's `/echo` the answer is the body sent.
pub struct HeldRequest {
    tx: tokio::sync::mpsc::UnboundedSender<Bytes>,
    task: tokio::task::JoinHandle<Result<Resp, String>>,
}

impl HeldRequest {
    pub fn start(
        addr: SocketAddr,
        host: &str,
        path: &str,
        first_chunk: &'static str,
    ) -> HeldRequest {
        use http_body::Frame;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
        let _ = tx.send(Bytes::from_static(first_chunk.as_bytes()));
        let frames = futures_util::stream::unfold(rx, |mut rx| async move {
            let chunk = rx.recv().await?;
            Some((Ok::<_, std::convert::Infallible>(Frame::data(chunk)), rx))
        });
        let body = http_body_util::StreamBody::new(frames).boxed_unsync();
        let req = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(http::header::HOST, host)
            .body(body)
            .expect("request");
        let task = tokio::spawn(exchange(addr, req));
        HeldRequest { tx, task }
    }

    /// Sends `last_chunk`, ends the request body and waits (bounded) for the whole answer.
    pub async fn finish(self, last_chunk: &'static str) -> Result<Resp, String> {
        let _ = self.tx.send(Bytes::from_static(last_chunk.as_bytes()));
        drop(self.tx);
        match tokio::time::timeout(REQUEST_TIMEOUT, self.task).await {
            Ok(joined) => joined.map_err(|e| format!("held request task: {e}"))?,
            Err(_) => Err(format!(
                "held request: no answer within {REQUEST_TIMEOUT:?}"
            )),
        }
    }
}

/// `GET path` on an admin listener with a bearer token, parsed as JSON (must answer 200).
pub async fn admin_json_with_token(admin: SocketAddr, path: &str, token: &str) -> Value {
    let (status, value) = admin_call(admin, Method::GET, path, None, Some(token)).await;
    assert_eq!(status, StatusCode::OK, "admin GET {path}: {value}");
    value
}
