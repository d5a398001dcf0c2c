//! Headless Chromium for the console tests: `chromium` on PATH (or `CHROMIUM`). Under `CI=true`
//! a missing browser fails the test (`.ci/needs/50-chromium.sh` installs it); elsewhere the test
//! is skipped with a note on stderr.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

/// The browser to run, or `None` (after saying so) when it is missing outside CI.
pub fn chromium() -> Option<String> {
    let exe = std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let found = std::process::Command::new(&exe)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return Some(exe);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "`{exe}` is not installed: the console tests need it under CI=true \
             (.ci/needs/50-chromium.sh installs it: apt-get install chromium)"
        );
    }
    eprintln!(
        "SKIPPED: `{exe}` not found; install it (apt-get install chromium) or set CHROMIUM to \
         run the console tests"
    );
    None
}

/// The flags every headless run takes (besides its own `--headless` mode): no sandbox, GPU,
/// first-run pages or extensions to get in the way, and no scrollbars in a screenshot.
pub const QUIET: [&str; 7] = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--hide-scrollbars",
];

/// Runs headless Chromium on `url` with `args` and a fresh profile; returns its stdout.
async fn run(exe: &str, url: &str, args: &[String]) -> String {
    let profile = tempfile::tempdir().expect("profile dir");
    let mut cmd = Command::new(exe);
    cmd.arg("--headless")
        .args(QUIET)
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("chromium on {url}: no result within 120 s"))
        .unwrap_or_else(|e| panic!("cannot run `{exe}`: {e}"));
    assert!(
        out.status.success(),
        "chromium on {url}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The page's DOM, serialized, once `budget_ms` of virtual time has passed after it loaded
/// (scripts ran, their first fetches answered).
pub async fn dump_dom(exe: &str, url: &str, budget_ms: u32) -> String {
    run(
        exe,
        url,
        &[
            format!("--virtual-time-budget={budget_ms}"),
            "--dump-dom".into(),
        ],
    )
    .await
}

/// A PNG of what a `width`×`height` window shows of the page after `budget_ms` of virtual time.
pub async fn screenshot(
    exe: &str,
    url: &str,
    path: &Path,
    (width, height): (u32, u32),
    budget_ms: u32,
) {
    run(
        exe,
        url,
        &[
            format!("--virtual-time-budget={budget_ms}"),
            format!("--window-size={width},{height}"),
            format!("--screenshot={}", path.display()),
        ],
    )
    .await;
    let png = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{}: not a picture of a page ({} bytes)",
        path.display(),
        png.len()
    );
}

/// The text of the first element whose start tag contains `marker`, from its `<` to its
/// closing tag (counting elements of the same name nested inside it).
pub fn element<'a>(html: &'a str, marker: &str) -> Option<&'a str> {
    let at = html.find(marker)?;
    let start = html[..at].rfind('<')?;
    let name: String = html[start + 1..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    let (open, close) = (format!("<{name}"), format!("</{name}>"));
    let mut depth = 0usize;
    let mut i = start;
    while i < html.len() {
        let rest = &html[i..];
        if rest.starts_with(&close) {
            depth -= 1;
            if depth == 0 {
                return Some(&html[start..i + close.len()]);
            }
            i += close.len();
        } else if rest.starts_with(&open)
            && rest[open.len()..].starts_with(|c: char| c == '>' || c.is_whitespace())
        {
            depth += 1;
            i += open.len();
        } else {
            i += rest.chars().next().map_or(1, char::len_utf8);
        }
    }
    None
}

/// The value of attribute `name` in the start tag of `element`.
pub fn attribute<'a>(element: &'a str, name: &str) -> Option<&'a str> {
    let tag = &element[..element.find('>')?];
    let key = format!(" {name}=\"");
    let from = tag.find(&key)? + key.len();
    let len = tag[from..].find('"')?;
    Some(&tag[from..from + len])
}
