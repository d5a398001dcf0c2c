//! The one failure policy of the request path, for every protocol (HTTP/1, h2 from the client,
//! gRPC upstreams): the protocol says what it saw and whether the request may be sent again;
//! this decides whether it is, and reports to the service's controller, which alone decides what
//! the failure means for the instance (the request path never probes).
//!
//! A request is sent again only while nothing of the answer reached the client, and only if that
//! is safe: it never reached the instance (a refused connect, a kept-alive connection found
//! closed before its first byte went out), or its method is safe (GET, HEAD, OPTIONS), or it
//! carries an `Idempotency-Key`, or it is a PUT or DELETE at a service with
//! `retry_idempotent = true`. Anything else that failed after it was written is answered 502 and
//! never sent twice: nginx's `proxy_next_upstream` default and Go's transport rule.

use std::fmt::Display;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::error::ProxyError;
use crate::service::command::Report;
use crate::service::instance::Instance;
use crate::service::{InFlight, Service};

/// How long a failed request waits for the controller to take a failed instance out (or for the
/// exit notice that follows a crash by milliseconds) before it answers or goes elsewhere, lest
/// this request's retry, or the client's next request, reach the dead instance.
pub const EXIT_NOTICE_WAIT: Duration = Duration::from_millis(250);
/// Sends of one request at most, the first included.
const MAX_SENDS: u8 = 3;

/// What went wrong with one send, as any protocol sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// The connect was refused or failed: nothing reached the instance.
    Refused,
    /// The connect timed out: nothing reached the instance.
    ConnectTimeout,
    /// The connection was found closed or reset before the request's first byte went out.
    ClosedBeforeWrite,
    /// Reset or end of stream after (part of) the request went out, before any answer byte
    /// reached the client: the instance may have carried it out.
    ResetAfterWrite,
    /// No first response byte within `response_timeout`.
    FirstByteTimeout,
}

/// How a method may be repeated (RFC 9110 9.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MethodClass {
    /// GET, HEAD, OPTIONS: read-only by contract.
    Safe,
    /// PUT, DELETE: idempotent on paper, often not in apps; repeated only on opt-in.
    Idempotent,
    Other,
}

/// Whether a request that reached an instance may be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resend {
    method: MethodClass,
    idempotency_key: bool,
    /// The body can be sent again: held whole, or none.
    body_kept: bool,
    /// The service's `retry_idempotent`.
    retry_idempotent: bool,
}

impl Resend {
    pub fn new(
        method: &[u8],
        idempotency_key: bool,
        body_kept: bool,
        retry_idempotent: bool,
    ) -> Resend {
        let method = match method {
            b"GET" | b"HEAD" | b"OPTIONS" => MethodClass::Safe,
            b"PUT" | b"DELETE" => MethodClass::Idempotent,
            _ => MethodClass::Other,
        };
        Resend {
            method,
            idempotency_key,
            body_kept,
            retry_idempotent,
        }
    }

    fn allowed(self) -> bool {
        self.body_kept
            && (self.method == MethodClass::Safe
                || self.idempotency_key
                || (self.method == MethodClass::Idempotent && self.retry_idempotent))
    }
}

/// The header that marks a request its client made safe to repeat (IETF draft
/// `httpapi-idempotency-key-header`, Stripe's convention).
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// The same instance, on a fresh connection.
    Reconnect,
    /// A new slot, on another instance (never the one that failed).
    Elsewhere,
    Fail,
}

/// The policy itself, with no side effect: what follows `seen` on the `sends`-th send.
fn decide(seen: Seen, reused: bool, resend: Resend, sends: u8) -> Action {
    let budget = sends < MAX_SENDS;
    match seen {
        Seen::Refused | Seen::ConnectTimeout if budget => Action::Elsewhere,
        // A kept-alive connection the app closed while it sat idle: the usual race, not a
        // sign of trouble.
        Seen::ClosedBeforeWrite if budget && reused => Action::Reconnect,
        Seen::ClosedBeforeWrite if budget => Action::Elsewhere,
        // Same race, noticed only after the write: the app may have read the request.
        Seen::ResetAfterWrite if budget && resend.allowed() && reused => Action::Reconnect,
        Seen::ResetAfterWrite if budget && resend.allowed() => Action::Elsewhere,
        _ => Action::Fail,
    }
}

/// What the protocol does next.
pub enum Next {
    /// Send again to the same instance, on a fresh connection; the slot is kept.
    Reconnect(InFlight),
    /// Send again on another slot (`reacquire`); `err` answers if none comes.
    Elsewhere {
        failed: Arc<Instance>,
        err: ProxyError,
    },
    /// Answer with this.
    Fail(ProxyError),
}

impl Next {
    /// The error, for a protocol that cannot send again (its body already streamed through);
    /// `failed` never asks such a one to.
    pub fn into_error(self) -> ProxyError {
        match self {
            Next::Fail(err) | Next::Elsewhere { err, .. } => err,
            Next::Reconnect(_) => ProxyError::Upstream("a send that cannot be repeated".into()),
        }
    }
}

/// One request's sends.
pub struct Attempt {
    sends: u8,
    /// What a `FirstByteTimeout` answer says it waited.
    response_timeout: Duration,
}

impl Attempt {
    pub fn new(response_timeout: Duration) -> Attempt {
        Attempt {
            sends: 1,
            response_timeout,
        }
    }

    /// One send failed: count it, report it, and say what follows. `detail` (the instance's
    /// address and the error) goes to the log, not to the client.
    pub async fn failed(
        &mut self,
        svc: &Service,
        guard: InFlight,
        seen: Seen,
        reused: bool,
        resend: Resend,
        detail: &dyn Display,
    ) -> Next {
        let action = decide(seen, reused, resend, self.sends);
        let inst = guard.instance().clone();
        if action == Action::Reconnect {
            self.sends += 1;
            return Next::Reconnect(guard);
        }
        drop(guard);
        let m = &svc.metrics;
        let detail = format!("{}: {detail}", inst.address);
        let err = match seen {
            Seen::Refused => {
                m.upstream_connect.inc();
                svc.report(&inst, Report::Refused);
                // Wait for the decision, or the retry picks the same instance: it is now the
                // least loaded of all.
                inst.leaves_within(EXIT_NOTICE_WAIT).await;
                ProxyError::Connect(detail)
            }
            Seen::ConnectTimeout => {
                m.upstream_timeout.inc();
                svc.report(&inst, Report::ConnectTimeout);
                ProxyError::Connect(detail)
            }
            Seen::ClosedBeforeWrite => {
                m.upstream_reset.inc();
                if !reused {
                    svc.report(&inst, Report::Reset);
                }
                ProxyError::Connect(detail)
            }
            Seen::ResetAfterWrite => {
                m.upstream_reset.inc();
                svc.report(&inst, Report::Reset);
                inst.leaves_within(EXIT_NOTICE_WAIT).await;
                if resend.allowed() {
                    ProxyError::Upstream(detail)
                } else {
                    ProxyError::NotResent(detail)
                }
            }
            Seen::FirstByteTimeout => {
                m.upstream_timeout.inc();
                svc.report(&inst, Report::FirstByteTimeout);
                ProxyError::ResponseTimeout(self.response_timeout)
            }
        };
        match action {
            Action::Elsewhere => {
                self.sends += 1;
                Next::Elsewhere { failed: inst, err }
            }
            _ => Next::Fail(err),
        }
    }
}

/// A slot at `svc` by `deadline`, at the revision `tag` names if any. `quiet`: the request is
/// one `idle_ignore` matched, which does not count as the service's activity.
pub async fn acquire(
    svc: &Arc<Service>,
    tag: Option<&str>,
    deadline: Instant,
    quiet: bool,
) -> Result<InFlight, ProxyError> {
    let mut guard = svc
        .acquire_by(tag, deadline)
        .await
        .map_err(ProxyError::Activator)?;
    if quiet {
        guard.set_quiet();
    }
    Ok(guard)
}

/// A new slot after a failure (`quiet` as for `acquire`): any instance of the service (one may
/// be starting); for a static upstream, another one now or the error (nothing will start).
pub async fn reacquire(
    svc: &Arc<Service>,
    failed: &Instance,
    tag: Option<&str>,
    deadline: Instant,
    quiet: bool,
    err: ProxyError,
) -> Result<InFlight, ProxyError> {
    let mut guard = if !svc.runtime.starts_instances() {
        match svc.acquire_now(&failed.revision) {
            Some(g) => g,
            None => return Err(err),
        }
    } else {
        acquire(svc, tag, deadline, false).await?
    };
    // "Elsewhere" is another instance: the one that just failed (still ready until the
    // controller decides) is not tried again, or one request would strike it several times.
    if guard.instance().id == failed.id {
        return Err(err);
    }
    if quiet {
        guard.set_quiet();
    }
    Ok(guard)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(method: &str, key: bool, body_kept: bool, opt_in: bool) -> Resend {
        Resend::new(method.as_bytes(), key, body_kept, opt_in)
    }

    #[test]
    fn what_never_reached_the_instance_goes_elsewhere_whatever_the_method() {
        let post = r("POST", false, true, false);
        for seen in [Seen::Refused, Seen::ConnectTimeout] {
            assert_eq!(decide(seen, false, post, 1), Action::Elsewhere, "{seen:?}");
        }
        assert_eq!(
            decide(Seen::ClosedBeforeWrite, true, post, 1),
            Action::Reconnect
        );
        assert_eq!(
            decide(Seen::ClosedBeforeWrite, false, post, 1),
            Action::Elsewhere
        );
    }

    #[test]
    fn a_written_request_is_sent_again_only_when_safe() {
        let cases = [
            ("GET", false, true, false, true),
            ("HEAD", false, true, false, true),
            ("OPTIONS", false, true, false, true),
            ("POST", false, true, false, false),
            ("PATCH", false, true, false, false),
            ("POST", true, true, false, true),
            ("PUT", false, true, false, false),
            ("DELETE", false, true, false, false),
            ("PUT", false, true, true, true),
            ("DELETE", false, true, true, true),
            ("POST", false, true, true, false),
            // A body that streamed through cannot be sent again.
            ("GET", false, false, false, false),
            ("POST", true, false, false, false),
        ];
        for (method, key, kept, opt_in, again) in cases {
            let resend = r(method, key, kept, opt_in);
            let want = if again {
                Action::Elsewhere
            } else {
                Action::Fail
            };
            assert_eq!(
                decide(Seen::ResetAfterWrite, false, resend, 1),
                want,
                "{method} key={key} kept={kept} opt_in={opt_in}"
            );
        }
    }

    #[test]
    fn a_timeout_waiting_for_the_answer_is_never_sent_again() {
        let get = r("GET", false, true, false);
        assert_eq!(decide(Seen::FirstByteTimeout, true, get, 1), Action::Fail);
    }

    #[test]
    fn sends_are_bounded() {
        let get = r("GET", false, true, false);
        assert_eq!(decide(Seen::Refused, false, get, MAX_SENDS), Action::Fail);
        assert_eq!(
            decide(Seen::ResetAfterWrite, true, get, MAX_SENDS),
            Action::Fail
        );
    }
}
