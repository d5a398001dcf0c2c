//! The open-file limit. Every client connection, upstream connection and instance costs
//! descriptors, and the usual soft limit (1024) is far below what a proxy needs: at start the soft
//! limit is raised to the hard one, with a warning when even that is low.

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// Below this many descriptors wakeway warns: a few thousand clients would exhaust them.
const LOW: u64 = 8192;

/// Raises the soft limit to the hard one; returns the limit now in force.
pub fn raise() -> Result<u64, String> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)
        .map_err(|e| format!("cannot read the open-file limit: {e}"))?;
    let now = if soft < hard {
        match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => hard,
            Err(e) => {
                tracing::warn!("cannot raise the open-file limit from {soft} to {hard}: {e}");
                soft
            }
        }
    } else {
        soft
    };
    if now < LOW {
        tracing::warn!(
            "the open-file limit is {now}: each client and upstream connection takes one; raise \
             the hard limit (ulimit -Hn, LimitNOFILE= in a systemd unit) for more than a few \
             thousand clients"
        );
    }
    Ok(now)
}
