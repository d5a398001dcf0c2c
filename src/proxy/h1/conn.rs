//! One client connection speaking HTTP/1.x: read a head, route it, take a slot, exchange it with
//! an instance over a worker-owned upstream connection, stream the answer back, repeat. The
//! request's in-flight slot is a local of the exchange, so it is held exactly until the last byte
//! of the response body is written, the client goes away, or the tunnel closes.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use super::observe::Observed;
use super::request::{Framing, Parsed, RequestHead};
use super::response::ResponseHead;
use super::write::{write_error, write_redirect};
use crate::proxy::ctx::{ConnSlot, Ctx};
use crate::proxy::error::{ProxyError, Side};
use crate::service::Service;

/// The h2 connection preface: such a connection is handed to the h2 server.
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const MIN_BUF: usize = 4 * 1024;

/// A client stream: plain TCP waits for readability without holding a buffer while idle.
pub trait ClientIo: AsyncRead + AsyncWrite + Unpin {
    fn readable(&self) -> impl Future<Output = io::Result<()>>;
}

impl ClientIo for tokio::net::TcpStream {
    async fn readable(&self) -> io::Result<()> {
        tokio::net::TcpStream::readable(self).await
    }
}

impl ClientIo for tokio_rustls::server::TlsStream<tokio::net::TcpStream> {
    async fn readable(&self) -> io::Result<()> {
        let (tcp, tls) = self.get_ref();
        // Plaintext rustls already decrypted is there to read now; else wait for the socket.
        if tls.wants_read() {
            tcp.readable().await
        } else {
            Ok(())
        }
    }
}

/// How a connection ended.
pub enum End {
    Closed,
    /// The client sent the h2 preface: these bytes were read, the rest is the h2 server's.
    H2(Vec<u8>),
}

pub struct Conn<'a, S> {
    pub(super) io: S,
    pub(super) ctx: &'a Ctx,
    /// The worker's handle on this connection: idle between requests, it may be closed to make
    /// room for a new client.
    slot: &'a ConnSlot,
    pub(super) peer: SocketAddr,
    pub(super) peer_ip: PeerIp,
    pub(super) trusted: bool,
    pub(super) https: bool,
    pub(super) buf: Vec<u8>,
    /// Unparsed bytes are `buf[start..end]`.
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) out: Vec<u8>,
    pub(super) head: RequestHead,
    /// The current request's body has been read to its end (or it has none).
    pub(super) body_done: bool,
    pub(super) obs: Observed,
    pub(super) resp: ResponseHead,
}

/// The client address, formatted once per connection.
pub(super) struct PeerIp {
    text: [u8; 45],
    len: usize,
}

impl PeerIp {
    fn new(peer: SocketAddr) -> PeerIp {
        use std::io::Write;
        let mut text = [0u8; 45];
        let mut cur = io::Cursor::new(&mut text[..]);
        let _ = write!(cur, "{}", peer.ip());
        let len = cur.position() as usize;
        PeerIp { text, len }
    }

    pub(super) fn as_bytes(&self) -> &[u8] {
        &self.text[..self.len]
    }
}

pub(super) enum Outcome {
    KeepAlive,
    Close,
}

impl<'a, S: ClientIo> Conn<'a, S> {
    pub fn new(
        io: S,
        ctx: &'a Ctx,
        slot: &'a ConnSlot,
        peer: SocketAddr,
        https: bool,
    ) -> Conn<'a, S> {
        Conn {
            io,
            ctx,
            slot,
            peer,
            peer_ip: PeerIp::new(peer),
            trusted: ctx.shared.settings.is_trusted(peer.ip()),
            https,
            buf: Vec::new(),
            start: 0,
            end: 0,
            out: Vec::new(),
            head: RequestHead::default(),
            body_done: true,
            obs: Observed::default(),
            resp: ResponseHead::default(),
        }
    }

    /// Gives the buffers back; the stream, unless the connection is done with.
    pub fn finish(mut self) -> S {
        self.ctx.buffers.put_read(std::mem::take(&mut self.buf));
        self.ctx.buffers.put_write(std::mem::take(&mut self.out));
        self.io
    }

    pub async fn serve(&mut self) -> End {
        let mut first = true;
        loop {
            if self.start == self.end {
                // Idle between requests: give the buffers back to the worker, wait for bytes.
                self.ctx.buffers.put_read(std::mem::take(&mut self.buf));
                self.ctx.buffers.put_write(std::mem::take(&mut self.out));
                self.start = 0;
                self.end = 0;
                let wait = if first {
                    self.ctx.shared.settings.header_read_timeout
                } else {
                    self.ctx.idle_begin(self.slot);
                    self.ctx.shared.settings.idle_timeout
                };
                tokio::select! {
                    biased;
                    // Its place is needed for a new client (`max_connections`).
                    _ = self.slot.closing() => return End::Closed,
                    _ = self.ctx.stopping() => return End::Closed,
                    r = tokio::time::timeout(wait, self.io.readable()) => match r {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => return End::Closed,
                        Err(_) if first => {
                            self.fail(&ProxyError::HeaderTimeout).await;
                            return End::Closed;
                        }
                        Err(_) => return End::Closed,
                    },
                }
                self.ctx.idle_end(self.slot);
            }
            if self.buf.is_empty() {
                self.buf = self.ctx.buffers.read_buf(MIN_BUF);
                self.out = self.ctx.buffers.write_buf(MIN_BUF);
            }
            let began = Instant::now();
            match self.read_head(first).await {
                Ok(Some(End::H2(b))) => return End::H2(b),
                Ok(Some(End::Closed)) => return End::Closed,
                Ok(None) => {}
                Err(e) => {
                    if let Some(log) = &self.ctx.shared.access_log {
                        let got = &self.buf[..self.end];
                        self.obs.refused(log, got, &e, self.peer, began);
                    }
                    self.fail(&e).await;
                    return End::Closed;
                }
            }
            if first {
                self.ctx.first_request(self.slot);
            }
            first = false;
            match self.exchange().await {
                Outcome::KeepAlive if !self.ctx.is_stopping() => {}
                _ => return End::Closed,
            }
        }
    }

    /// Reads until `self.head` holds a whole head at `buf[0..]`. `Ok(Some(_))`: the connection
    /// ends (client gone, or it speaks h2).
    async fn read_head(&mut self, first: bool) -> Result<Option<End>, ProxyError> {
        if self.start > 0 {
            // A pipelined request: move it to the front so header spans index `buf` directly.
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let deadline = Instant::now() + self.ctx.shared.settings.header_read_timeout;
        let limits = &self.ctx.shared.settings.limits;
        loop {
            if self.end > 0 {
                let got = &self.buf[..self.end];
                if first && got[0] == b'P' && H2_PREFACE.starts_with(&got[..got.len().min(24)]) {
                    if got.len() >= H2_PREFACE.len() {
                        return Ok(Some(End::H2(got.to_vec())));
                    }
                } else {
                    match self.head.parse(got, limits, self.trusted)? {
                        Parsed::Complete => {
                            self.start = self.head.head_len;
                            return Ok(None);
                        }
                        Parsed::Partial => {}
                    }
                }
            }
            if self.end == self.buf.len() {
                let max = limits.max_header_bytes + 1;
                if self.buf.len() >= max {
                    return Err(ProxyError::HeadersTooLarge("the request head is too large"));
                }
                self.buf.resize((self.buf.len() * 2).min(max), 0);
            }
            let read = tokio::time::timeout_at(deadline, self.io.read(&mut self.buf[self.end..]));
            match read.await {
                Err(_) => return Err(ProxyError::HeaderTimeout),
                Ok(Ok(0)) | Ok(Err(_)) => return Ok(Some(End::Closed)),
                Ok(Ok(n)) => self.end += n,
            }
        }
    }

    /// Writes an error answer and marks the connection for closing.
    async fn fail(&mut self, e: &ProxyError) {
        tracing::debug!(peer = %self.peer, error = %e, "request refused");
        self.out.clear();
        write_error(&mut self.out, e, true, b"");
        let _ = self.io.write_all(&self.out).await;
        let _ = self.io.flush().await;
    }

    async fn exchange(&mut self) -> Outcome {
        let arrived = Instant::now();
        self.body_done = matches!(self.head.framing, Some(Framing::None));
        let shared = &self.ctx.shared;
        self.obs
            .begin(&self.head, &self.buf, arrived, shared.settings.start_trace);
        if !self.https
            && let Some(acme) = &shared.acme
            && let target = self.head.target.map_or(&b""[..], |t| t.get(&self.buf))
            && acme.answer_h1(target, &mut self.out)
        {
            // An ACME validation, answered before routing: it never wakes a service.
            let _ = self.io.write_all(&self.out).await;
            return Outcome::Close;
        }
        let host = self.head.host.map_or(&b""[..], |h| h.get(&self.buf));
        let (svc, tag) = match shared.routes.load().lookup_bytes(host) {
            Some((svc, tag)) => (Some(svc.clone()), tag),
            None => (None, None),
        };
        if shared.access_log.is_some() {
            self.obs
                .start_record(&self.head, &self.buf, svc.as_deref(), self.peer);
        }
        let (status, outcome) = match svc {
            None => {
                let e = ProxyError::UnknownHost(String::from_utf8_lossy(host).into_owned());
                (e.status().as_u16(), self.answer_error(&e, None).await)
            }
            Some(svc) if !self.https && svc.config.load().redirect_https => {
                (308, self.redirect(&svc).await)
            }
            Some(svc) => match self.forward(&svc, tag.as_deref(), arrived).await {
                Ok((status, outcome)) => {
                    svc.metrics.observe_status(status);
                    (status, outcome)
                }
                Err(e) => {
                    if !matches!(e.side(), Side::Downstream) {
                        tracing::debug!(service = %svc.name, error = %e, "request failed");
                    }
                    (e.status().as_u16(), self.answer_error(&e, Some(&svc)).await)
                }
            },
        };
        if let Some(log) = &self.ctx.shared.access_log {
            self.obs.finish(log, status);
        }
        outcome
    }

    async fn redirect(&mut self, svc: &Arc<Service>) -> Outcome {
        svc.metrics.observe_status(308);
        let host = self.head.host.map_or(&b""[..], |h| h.get(&self.buf));
        let target = self.head.target.map_or(&b""[..], |t| t.get(&self.buf));
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        write_redirect(&mut out, host, self.ctx.shared.settings.https_port, target);
        let sent = self.io.write_all(&out).await;
        self.out = out;
        // The body, if any, was not read: the connection cannot carry another request.
        match sent {
            Ok(()) if self.body_done && self.head.keep_alive => Outcome::KeepAlive,
            _ => Outcome::Close,
        }
    }

    async fn answer_error(&mut self, e: &ProxyError, svc: Option<&Arc<Service>>) -> Outcome {
        if let Some(svc) = svc {
            svc.metrics.observe_status(e.status().as_u16());
        }
        if self.ctx.shared.access_log.is_some() {
            self.obs.answered_with(e);
        }
        // After a client-side error the rest of the connection cannot be trusted to be framed.
        let close =
            !self.head.keep_alive || matches!(e.side(), Side::Downstream) || self.body_unread();
        self.out.clear();
        write_error(&mut self.out, e, close, self.obs.request_id());
        if self.io.write_all(&self.out).await.is_err() {
            return Outcome::Close;
        }
        if close {
            let _ = self.io.flush().await;
            Outcome::Close
        } else {
            Outcome::KeepAlive
        }
    }

    /// The request's body has not been read past: the connection cannot carry another request.
    fn body_unread(&self) -> bool {
        !self.body_done
    }
}
