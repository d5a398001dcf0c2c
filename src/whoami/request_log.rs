//! `WHOAMI_REQUEST_LOG=PATH`: one line per request whoami carried out, appended as it arrives
//! (before any `?sleep`), so a test sees what an instance did even if it is killed mid-request:
//! `INSTANCE PID METHOD TARGET IDEMPOTENCY-KEY` (`-` without one).

use std::io::Write as _;

use http::Request;

/// Appends `req`'s line to the log named by `WHOAMI_REQUEST_LOG`, if set. One `write` on a file
/// opened for appending: lines of several instances sharing the file never interleave.
pub fn note<B>(instance: &str, req: &Request<B>) {
    let Some(path) = std::env::var_os("WHOAMI_REQUEST_LOG") else {
        return;
    };
    let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let key = req
        .headers()
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    let line = format!(
        "{instance} {} {} {target} {key}\n",
        std::process::id(),
        req.method()
    );
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = written {
        eprintln!("whoami: WHOAMI_REQUEST_LOG {}: {e}", path.to_string_lossy());
    }
}
