//! gunicorn + Flask, from the venv `.ci/needs/20-python-apps.sh` installs: a real app no one
//! here wrote, for the freeze and socket-activation tests.

use std::path::{Path, PathBuf};

/// The venv's directory: `WAKEWAY_TEST_VENV`, else `/opt/wakeway-test-venv`. `None` (after a
/// note) when it is missing; under CI=true a missing venv fails the test instead.
pub fn venv() -> Option<PathBuf> {
    let dir = PathBuf::from(
        std::env::var("WAKEWAY_TEST_VENV").unwrap_or_else(|_| "/opt/wakeway-test-venv".into()),
    );
    if dir.join("bin/gunicorn").exists() {
        return Some(dir);
    }
    assert!(
        std::env::var("CI").is_err(),
        "no gunicorn at {}: run .ci/needs/20-python-apps.sh",
        dir.display()
    );
    eprintln!(
        "skipped: no gunicorn at {} (.ci/needs/20-python-apps.sh)",
        dir.display()
    );
    None
}

/// Writes a Flask app answering `pid <worker pid>` on `/` into `dir`; with `slow_import`, its
/// import takes that many seconds first (a heavy framework's start).
pub fn write_flask_app(dir: &Path, slow_import: f64) {
    std::fs::write(
        dir.join("app.py"),
        format!(
            "import os, time\n\
             time.sleep({slow_import})\n\
             from flask import Flask\n\
             app = Flask(__name__)\n\
             @app.route('/')\n\
             def index():\n    return f'pid {{os.getpid()}}\\n'\n"
        ),
    )
    .expect("write app.py");
}

/// The `command = [...]` of a gunicorn service serving `dir`'s app on `bind`
/// (`127.0.0.1:{port}`), or with `None` on the socket `LISTEN_FDS` passes (gunicorn's systemd
/// support; `--bind fd://3` beside it would make gunicorn take fd 3 twice and fail).
pub fn gunicorn_command(venv: &Path, dir: &Path, bind: Option<&str>) -> String {
    let bind = bind.map_or(String::new(), |b| format!(r#""-b", "{b}", "#));
    format!(
        r#"["{}", "-w", "1", {bind}"--chdir", "{}", "app:app"]"#,
        venv.join("bin/gunicorn").display(),
        dir.display()
    )
}
