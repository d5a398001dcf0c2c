//! `socket_activation = true`: wakeway binds an instance's listening socket itself and hands it
//! to the app as systemd does (fd 3, `LISTEN_FDS=1`, `LISTEN_PID`). The socket exists before
//! the app runs, so the instance is ready at once: a first request waits in the kernel's
//! backlog while the app boots, with no probe interval on the cold path, and no other process
//! can take the port between its choice and the app's bind.
//!
//! `LISTEN_PID` must be the app's own pid, which is not known until the fork, and the
//! environment cannot be changed between fork and exec without allocating. So the app is run
//! through `sh -c 'LISTEN_PID=$$; export LISTEN_PID; exec "$@"'`: the shell's pid is the one
//! the app keeps across `exec`.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};

/// The fd systemd's protocol passes the first socket as.
pub const LISTEN_FD: RawFd = 3;

const EXEC_WITH_LISTEN_PID: &str = r#"LISTEN_PID=$$; export LISTEN_PID; exec "$@""#;

/// A listening socket bound for one instance, handed to its child.
pub struct Inherited {
    listener: TcpListener,
}

impl Inherited {
    /// Binds a loopback port (the OS picks it).
    pub fn bind() -> std::io::Result<Inherited> {
        Ok(Inherited {
            listener: TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?,
        })
    }

    pub fn port(&self) -> std::io::Result<u16> {
        Ok(self.listener.local_addr()?.port())
    }

    pub fn fd(&self) -> RawFd {
        self.listener.as_raw_fd()
    }
}

/// Called in the forked child before exec: puts the socket at fd 3, open across the exec.
/// Only dup2(2) and fcntl(2), both async-signal-safe.
pub fn install(fd: RawFd) -> std::io::Result<()> {
    // SAFETY: plain syscalls on fds this process owns; no memory is touched.
    let r = unsafe {
        if fd == LISTEN_FD {
            // dup2 onto itself keeps close-on-exec: clear it instead.
            libc::fcntl(fd, libc::F_SETFD, 0)
        } else {
            libc::dup2(fd, LISTEN_FD)
        }
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The program and arguments that run `argv` with `LISTEN_PID` set to its own pid, and the
/// variables it gets beside.
pub fn wrap(argv: &[String], env: &mut BTreeMap<String, String>) -> (String, Vec<String>) {
    env.insert("LISTEN_FDS".into(), "1".into());
    env.insert("LISTEN_FDNAMES".into(), "http".into());
    let mut args = vec![
        "-c".to_string(),
        EXEC_WITH_LISTEN_PID.to_string(),
        "wakeway-socket-activation".to_string(),
    ];
    args.extend(argv.iter().cloned());
    ("sh".to_string(), args)
}

/// For an app (`wakeway whoami`): the socket passed as fd 3, when `LISTEN_FDS` and `LISTEN_PID`
/// say it is meant for this process.
pub fn inherited_listener() -> Option<TcpListener> {
    let fds: u32 = std::env::var("LISTEN_FDS").ok()?.parse().ok()?;
    let pid: u32 = std::env::var("LISTEN_PID").ok()?.parse().ok()?;
    if fds < 1 || pid != std::process::id() {
        return None;
    }
    // SAFETY: by the protocol, fd 3 is a listening socket handed to this process, which takes
    // ownership of it here, once (the variables are removed so nothing takes it twice).
    let listener = unsafe { TcpListener::from_raw_fd(LISTEN_FD) };
    // SAFETY: nothing else in this process reads the environment concurrently this early.
    unsafe {
        std::env::remove_var("LISTEN_FDS");
        std::env::remove_var("LISTEN_PID");
        std::env::remove_var("LISTEN_FDNAMES");
    }
    Some(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wrapper_runs_the_app_with_its_own_pid() {
        let mut env = BTreeMap::new();
        let (prog, args) = wrap(
            &[
                "sh".into(),
                "-c".into(),
                "test \"$LISTEN_PID\" = $$ && echo ok".into(),
            ],
            &mut env,
        );
        assert_eq!(env["LISTEN_FDS"], "1");
        let out = std::process::Command::new(prog)
            .args(args)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n");
    }
}
