//! One request's trip to an instance: take a slot, get a connection (reused, or new), send the
//! head, stream the body while the answer may already come back, relay the answer, and give the
//! connection back only when both directions ended cleanly.

use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::conn::{ClientIo, Conn, Outcome};
use super::request::Framing;
use super::transfer::{self, ClientBuf, ClientFraming, ReadHead};
use super::write::{write_client_head, write_upstream_head};
use crate::config::IdleIgnore;
use crate::proxy::attempt::{self, Attempt, Next, Resend, Seen};
use crate::proxy::error::ProxyError;
use crate::proxy::upstream::{self, ConnectError, UpConn};
use crate::service::{InFlight, Service};

/// What nginx logs for a client that left before its answer.
pub const CLIENT_CLOSED: u16 = 499;

/// A request whose body streams through (it was not in the buffer whole).
struct Streamed {
    framing: Framing,
    max_body: Option<u64>,
    idle_for: Duration,
    retry_idempotent: bool,
}

impl<S: ClientIo> Conn<'_, S> {
    /// Sends the request to an instance and streams the answer back. Returns the status sent.
    pub(super) async fn forward(
        &mut self,
        svc: &Arc<Service>,
        tag: Option<&str>,
        arrived: Instant,
    ) -> Result<(u16, Outcome), ProxyError> {
        let cfg = svc.config.load();
        let deadline = arrived + cfg.queue.timeout;
        let max_body = cfg.max_body_bytes;
        let retry_idempotent = cfg.retry_idempotent;
        let idle_for = cfg.upstream_idle_timeout;
        let ignore = &cfg.scaling.idle_ignore;
        let quiet = !ignore.is_empty() && self.idle_ignored(ignore);
        let wake = ignore.wake;
        drop(cfg);
        let framing = self.head.framing.unwrap_or(Framing::None);
        if let (Some(max), Framing::Length(n)) = (max_body, framing)
            && n > max
        {
            return Err(ProxyError::BodyTooLarge(max));
        }
        if quiet && !wake && svc.is_cold() {
            return Err(ProxyError::IdleIgnored);
        }
        let body_in_buffer = match framing {
            Framing::None => true,
            Framing::Length(n) => (self.end - self.start) as u64 >= n,
            Framing::Chunked => false,
        };

        // The upstream head (and a body that already arrived whole) is built once; a retry on a
        // fresh connection sends the same bytes.
        self.out.clear();
        write_upstream_head(
            &mut self.out,
            &self.head,
            &self.buf,
            self.peer_ip.as_bytes(),
            self.https,
            svc.name.as_bytes(),
            &self.obs.upstream_extra,
        );
        if let (true, Framing::Length(n)) = (body_in_buffer, framing) {
            let body = &self.buf[self.start..self.start + n as usize];
            self.out.extend_from_slice(body);
            self.start += n as usize;
            self.body_done = true;
            self.obs.bytes_in = n;
        }
        let is_head = self.head.is_head;

        let mut guard = attempt::acquire(svc, tag, deadline, quiet).await?;
        self.obs.acquired(svc, &guard);
        let logging = self.ctx.shared.access_log.is_some();
        if logging {
            self.obs.served_by(guard.instance());
        }
        let mut attempt = Attempt::new(self.ctx.shared.settings.response_timeout);
        let mut fresh_only = false;
        let conn = 'sends: loop {
            let addr = guard.instance().address;
            let pooled = if fresh_only {
                None
            } else {
                self.ctx.upstreams.take(guard.instance())
            };
            let mut reused = pooled.is_some();
            let (seen, detail) = 'send: {
                let mut conn = match pooled {
                    Some(c) => c,
                    None => match self.connect(addr).await {
                        Ok(c) => c,
                        Err(ConnectError::Timeout) => {
                            break 'send (Seen::ConnectTimeout, "connect timed out".to_string());
                        }
                        Err(ConnectError::Failed(e)) => break 'send (Seen::Refused, e.to_string()),
                    },
                };
                if let Err(failed) = write_request(&mut conn.io, &self.out).await {
                    break 'send failed;
                }
                if !body_in_buffer {
                    // From here the body streams through, so it cannot be sent again.
                    // Boxed: a streamed body is the rare case, and its state would otherwise
                    // size every connection's task.
                    let body = Streamed {
                        framing,
                        max_body,
                        idle_for,
                        retry_idempotent,
                    };
                    let streamed = self.duplex(svc, conn, guard, body, arrived);
                    return Box::pin(streamed).await;
                }
                match self.await_head(&mut conn, is_head).await {
                    Ok(()) => break 'sends conn,
                    Err(ReadHead::Timeout) => (Seen::FirstByteTimeout, String::new()),
                    Err(ReadHead::Closed) => (
                        Seen::ResetAfterWrite,
                        "connection closed before a response".to_string(),
                    ),
                    Err(ReadHead::Io) => {
                        // Part of an answer came: not a kept-alive connection the app closed.
                        reused = false;
                        let why = "connection closed inside the response head";
                        (Seen::ResetAfterWrite, why.to_string())
                    }
                    Err(e) => return self.head_unusable(svc, guard, e),
                }
            };
            let resend = self.resend(true, retry_idempotent);
            match attempt
                .failed(svc, guard, seen, reused, resend, &detail)
                .await
            {
                Next::Reconnect(g) => {
                    guard = g;
                    fresh_only = true;
                }
                Next::Elsewhere { failed, err } => {
                    guard = attempt::reacquire(svc, &failed, tag, deadline, quiet, err).await?;
                    fresh_only = false;
                    if logging {
                        self.obs.served_by(guard.instance());
                    }
                }
                Next::Fail(err) => return Err(err),
            }
        };
        self.answer(svc, conn, guard, arrived, idle_for).await
    }

    /// Whether the request matches the service's `scaling.idle_ignore`: read from the head's
    /// spans in the connection's buffer, the peer as the socket reports it.
    fn idle_ignored(&self, ignore: &IdleIgnore) -> bool {
        let buf = &self.buf;
        let target = self.head.target.map_or(&b""[..], |t| t.get(buf));
        ignore.matches(self.peer.ip(), target, || {
            self.head
                .headers
                .iter()
                .find(|h| h.name.get(buf).eq_ignore_ascii_case(b"user-agent"))
                .map(|h| h.value.get(buf))
        })
    }

    /// The answer to a request whose body was sent whole: relay it, or open a tunnel.
    async fn answer(
        &mut self,
        svc: &Arc<Service>,
        mut conn: UpConn,
        guard: InFlight,
        arrived: Instant,
        idle_for: Duration,
    ) -> Result<(u16, Outcome), ProxyError> {
        let status = self.resp.status;
        if status >= 500 {
            guard.instance().note_error();
        }
        if status == 101 {
            if self.head.upgrade.is_none() {
                return Err(ProxyError::BadResponse("101 without an upgrade request"));
            }
            Box::pin(self.tunnel(conn, guard)).await;
            return Ok((101, Outcome::Close));
        }
        svc.metrics.observe_duration(arrived.elapsed());
        self.obs
            .response_head(self.ctx.shared.settings.server_timing);
        let cf = ClientFraming::new(
            &self.resp,
            self.head.http10,
            self.head.keep_alive && !self.ctx.is_stopping(),
            &self.obs.client_extra,
        );
        let relayed = transfer::relay(
            &mut conn.io,
            &mut conn.rb,
            &mut self.io,
            &mut self.out,
            &self.resp,
            &cf,
            self.ctx.shared.settings.upstream_read_timeout,
            &mut self.obs.bytes_out,
        )
        .await;
        if relayed.is_ok() && !self.resp.closes {
            self.ctx
                .upstreams
                .give_back(conn, guard.instance(), idle_for);
        }
        drop(guard);
        let outcome = match (relayed, cf.close) {
            (Ok(()), false) => Outcome::KeepAlive,
            _ => Outcome::Close,
        };
        Ok((status, outcome))
    }

    /// Waits for the instance's head while watching the client: a client that hangs up gives its
    /// slot back at once (bytes it pipelines meanwhile are kept for the next request).
    async fn await_head(&mut self, conn: &mut UpConn, is_head: bool) -> Result<(), ReadHead> {
        let deadline = Instant::now() + self.ctx.shared.settings.response_timeout;
        let mut got_any = !conn.rb.is_empty();
        loop {
            if transfer::parse_head(&mut conn.rb, &mut self.resp, is_head)? {
                return Ok(());
            }
            let room = self.end < self.buf.len();
            tokio::select! {
                biased;
                r = tokio::time::timeout_at(
                    deadline,
                    conn.rb.fill(&mut conn.io, transfer::MAX_RESPONSE_HEAD),
                ) => match r {
                    Err(_) => return Err(ReadHead::Timeout),
                    Ok(Ok(0)) | Ok(Err(_)) if !got_any => return Err(ReadHead::Closed),
                    Ok(Ok(0)) | Ok(Err(_)) => return Err(ReadHead::Io),
                    Ok(Ok(_)) => got_any = true,
                },
                r = self.io.read(&mut self.buf[self.end..]), if room => match r {
                    Ok(0) | Err(_) => return Err(ReadHead::ClientGone),
                    Ok(n) => self.end += n,
                },
            }
        }
    }

    /// The instance's answer cannot be relayed (malformed), or the client left meanwhile.
    fn head_unusable(
        &mut self,
        svc: &Service,
        guard: InFlight,
        e: ReadHead,
    ) -> Result<(u16, Outcome), ProxyError> {
        drop(guard);
        match e {
            ReadHead::Bad(why) => {
                svc.metrics.upstream_reset.inc();
                Err(ProxyError::BadResponse(why))
            }
            _ => Ok((CLIENT_CLOSED, Outcome::Close)),
        }
    }

    /// Whether this request may be sent again once it reached an instance (`attempt.rs`): read
    /// only after a failure, so a request that succeeds never scans its headers for it.
    fn resend(&self, body_kept: bool, retry_idempotent: bool) -> Resend {
        let buf = &self.buf;
        let method = self.head.method.map_or(&b""[..], |m| m.get(buf));
        let key = self.head.headers.iter().any(|h| {
            h.name
                .get(buf)
                .eq_ignore_ascii_case(attempt::IDEMPOTENCY_KEY.as_bytes())
        });
        Resend::new(method, key, body_kept, retry_idempotent)
    }

    /// A body that streams: it goes up while the answer may already come down (an echo, or an
    /// early 413). If the answer ends first, the rest of the body is not read and the client
    /// connection closes.
    async fn duplex(
        &mut self,
        svc: &Arc<Service>,
        mut conn: UpConn,
        guard: InFlight,
        body: Streamed,
        arrived: Instant,
    ) -> Result<(u16, Outcome), ProxyError> {
        let Streamed {
            framing, max_body, ..
        } = body;
        let settings = &self.ctx.shared.settings;
        if self.head.expect_continue {
            let _ = self.io.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await;
        }
        let is_head = self.head.is_head;
        let keep_alive = self.head.keep_alive && !self.ctx.is_stopping();
        let http10 = self.head.http10;
        let mut scratch = self.ctx.buffers.write_buf(4096);
        let head_sent = Cell::new(false);

        let mut received = 0;
        let (answered, body_done, body_error) = {
            let (mut cr, mut cw) = tokio::io::split(&mut self.io);
            let (mut ur, mut uw) = conn.io.split();
            let rb = &mut conn.rb;
            let resp = &mut self.resp;
            let out = &mut self.out;
            let obs = &mut self.obs;
            let body = transfer::send_body(
                &mut cr,
                ClientBuf {
                    buf: &mut self.buf,
                    start: &mut self.start,
                    end: &mut self.end,
                },
                &mut uw,
                framing,
                max_body,
                &mut scratch,
                settings.idle_timeout,
                &mut received,
            );
            let answer = async {
                let deadline = Instant::now() + settings.response_timeout;
                transfer::read_head(&mut ur, rb, resp, is_head, deadline)
                    .await
                    .map_err(Err)?;
                if resp.status == 101 {
                    return Err(Err(ReadHead::Bad("101 to a request with a body")));
                }
                svc.metrics.observe_duration(arrived.elapsed());
                head_sent.set(true);
                obs.response_head(settings.server_timing);
                let cf = ClientFraming::new(resp, http10, keep_alive, &obs.client_extra);
                transfer::relay(
                    &mut ur,
                    rb,
                    &mut cw,
                    out,
                    resp,
                    &cf,
                    settings.upstream_read_timeout,
                    &mut obs.bytes_out,
                )
                .await
                .map_err(Ok)?;
                Ok(cf.close)
            };
            tokio::pin!(body, answer);
            let mut body_done = false;
            let mut body_error: Option<ProxyError> = None;
            let answered = loop {
                tokio::select! {
                    r = &mut body, if !body_done && body_error.is_none() => match r {
                        Ok(()) => body_done = true,
                        Err(e) if head_sent.get() => {
                            // The answer is under way: it cannot become a 400 any more.
                            tracing::debug!(error = %e, "request body broke off mid-answer");
                            break Err(Ok(()));
                        }
                        Err(e) => body_error = Some(e),
                    },
                    r = &mut answer, if body_error.is_none() => break r,
                    else => break Err(Ok(())),
                }
            };
            (answered, body_done, body_error)
        };
        self.obs.bytes_in = received;
        self.ctx.buffers.put_write(scratch);
        self.body_done = body_done;
        if let Some(e) = body_error {
            return Err(e);
        }
        let status = self.resp.status;
        if status >= 500 {
            guard.instance().note_error();
        }
        match answered {
            Ok(client_close) => {
                if body_done && !self.resp.closes {
                    self.ctx
                        .upstreams
                        .give_back(conn, guard.instance(), body.idle_for);
                }
                drop(guard);
                let keep = body_done && !client_close;
                Ok((
                    status,
                    if keep {
                        Outcome::KeepAlive
                    } else {
                        Outcome::Close
                    },
                ))
            }
            // The relay broke off after the head: nothing more can be said to the client.
            Err(Ok(())) => Ok((status, Outcome::Close)),
            Err(Err(e)) => {
                let (seen, detail) = match e {
                    ReadHead::Timeout => (Seen::FirstByteTimeout, ""),
                    ReadHead::Closed | ReadHead::Io => {
                        (Seen::ResetAfterWrite, "connection closed before a response")
                    }
                    e => return self.head_unusable(svc, guard, e),
                };
                // The body streamed through: whatever the method, it cannot be sent again.
                let resend = self.resend(false, body.retry_idempotent);
                let next = Attempt::new(settings.response_timeout)
                    .failed(svc, guard, seen, false, resend, &detail)
                    .await;
                Err(next.into_error())
            }
        }
    }

    /// A new upstream connection, its connect time noted for the access log.
    async fn connect(&mut self, addr: SocketAddr) -> Result<UpConn, ConnectError> {
        let started = Instant::now();
        let c = upstream::connect(addr, self.ctx.shared.settings.connect_timeout).await;
        self.obs.upstream_connect = Some(started.elapsed());
        c
    }

    /// Splices client and instance after a `101`; the slot is held until either side closes.
    async fn tunnel(&mut self, mut conn: UpConn, guard: InFlight) {
        self.out.clear();
        write_client_head(
            &mut self.out,
            &self.resp,
            conn.rb.pending(),
            super::response::BodyFraming::None,
            false,
            false,
            &self.obs.client_extra,
        );
        conn.rb.consume(self.resp.head_len);
        // What either side sent past the handshake goes through first.
        self.out.extend_from_slice(conn.rb.pending());
        if self.io.write_all(&self.out).await.is_err() {
            return;
        }
        if self.start < self.end
            && conn
                .io
                .write_all(&self.buf[self.start..self.end])
                .await
                .is_err()
        {
            return;
        }
        self.start = self.end;
        let _ = tokio::io::copy_bidirectional(&mut self.io, &mut conn.io).await;
        drop(guard);
    }
}

/// Writes the request; on failure, whether any of it went out: a first write that fails sent
/// nothing, so the request can go anywhere.
async fn write_request(io: &mut TcpStream, out: &[u8]) -> Result<(), (Seen, String)> {
    let n = match io.write(out).await {
        Ok(0) => return Err((Seen::ClosedBeforeWrite, "connection closed".into())),
        Ok(n) => n,
        Err(e) => return Err((Seen::ClosedBeforeWrite, e.to_string())),
    };
    io.write_all(&out[n..])
        .await
        .map_err(|e| (Seen::ResetAfterWrite, e.to_string()))
}
