//! Failing upstreams for the failure-policy tests: whoami's request log (what each instance
//! carried out), and raw upstreams that refuse, hold, reset or stall on purpose.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{DEADLINE, wait_for};

/// One line of `WHOAMI_REQUEST_LOG`: a request an instance carried out.
#[derive(Debug, Clone, PartialEq)]
pub struct Carried {
    pub instance: String,
    pub pid: u32,
    pub method: String,
    pub target: String,
}

/// The file whoami instances append to (`WHOAMI_REQUEST_LOG`).
pub struct RequestLog {
    pub path: PathBuf,
}

impl RequestLog {
    pub fn in_dir(dir: &Path) -> RequestLog {
        RequestLog {
            path: dir.join("requests.log"),
        }
    }

    /// Every request carried out so far.
    pub fn lines(&self) -> Vec<Carried> {
        let text = std::fs::read_to_string(&self.path).unwrap_or_default();
        text.lines()
            .filter_map(|l| {
                let mut f = l.split(' ');
                Some(Carried {
                    instance: f.next()?.to_string(),
                    pid: f.next()?.parse().ok()?,
                    method: f.next()?.to_string(),
                    target: f.next()?.to_string(),
                })
            })
            .collect()
    }

    /// The requests carried out for `target`.
    pub fn of(&self, target: &str) -> Vec<Carried> {
        self.lines()
            .into_iter()
            .filter(|c| c.target == target)
            .collect()
    }

    /// Waits until an instance has begun `target`; returns that line.
    pub async fn wait_for(&self, target: &str) -> Carried {
        wait_for(
            &format!("an instance carrying out {target}"),
            DEADLINE,
            || async { self.of(target).into_iter().next() },
        )
        .await
    }
}

/// What a raw upstream does with each request it reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Misbehave {
    /// Reads the request and never answers.
    Hold,
    /// Reads the request, then resets the connection.
    Reset,
    /// Sends a head announcing 100 bytes, 10 of them, then nothing.
    Stall,
}

/// A loopback upstream that misbehaves; keeps the request line of each request it read.
pub struct RawUpstream {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl RawUpstream {
    pub async fn start(how: Misbehave) -> RawUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let count = requests.clone();
        let task = tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                tokio::spawn(serve(s, how, count.clone()));
            }
        });
        RawUpstream {
            addr,
            requests,
            task,
        }
    }

    /// The requests read whose request line contains `needle`.
    pub fn requests(&self, needle: &str) -> usize {
        let lines = self.requests.lock().unwrap();
        lines.iter().filter(|l| l.contains(needle)).count()
    }

    /// Stops listening; returns once a connect is refused.
    pub async fn close(&self) {
        self.task.abort();
        let addr = self.addr;
        wait_for(
            "the upstream to refuse connections",
            DEADLINE,
            || async move { TcpStream::connect(addr).await.is_err().then_some(()) },
        )
        .await;
    }
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut s: TcpStream, how: Misbehave, seen: Arc<Mutex<Vec<String>>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    // A probe connects and sends nothing: only a whole request head counts.
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let line = buf.split(|b| *b == b'\r').next().unwrap_or_default();
    seen.lock()
        .unwrap()
        .push(String::from_utf8_lossy(line).into_owned());
    match how {
        Misbehave::Hold => {
            // Until wakeway gives up and closes.
            let _ = s.read(&mut chunk).await;
        }
        Misbehave::Reset => {
            let _ = s.set_zero_linger();
            drop(s);
        }
        Misbehave::Stall => {
            let head =
                b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nContent-Type: text/plain\r\n\r\n";
            let _ = s.write_all(head).await;
            let _ = s.write_all(b"0123456789").await;
            let _ = s.read(&mut chunk).await;
        }
    }
}
