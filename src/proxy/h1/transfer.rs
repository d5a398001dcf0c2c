//! Moving bodies: the client's body to the instance in wakeway's framing, the instance's head
//! into `ResponseHead`, and its body to the client.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use super::chunked::{self, Decoder};
use super::request::Framing;
use super::response::{BodyFraming, ResponseHead};
use super::write::write_client_head;
use crate::proxy::error::ProxyError;
use crate::proxy::upstream::RecvBuf;

/// The largest response head wakeway reads.
pub const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// The client's read buffer: unread bytes are `buf[*start..*end]`.
pub struct ClientBuf<'a> {
    pub buf: &'a mut Vec<u8>,
    pub start: &'a mut usize,
    pub end: &'a mut usize,
}

impl ClientBuf<'_> {
    async fn refill<R: AsyncRead + Unpin>(
        &mut self,
        cr: &mut R,
        idle: Duration,
    ) -> Result<(), ProxyError> {
        *self.start = 0;
        *self.end = 0;
        match tokio::time::timeout(idle, cr.read(&mut self.buf[..])).await {
            Err(_) => Err(ProxyError::ClientBody("the body stopped arriving".into())),
            Ok(Ok(0)) => Err(ProxyError::ClientBody("the client closed mid-body".into())),
            Ok(Err(e)) => Err(ProxyError::ClientBody(e.to_string())),
            Ok(Ok(n)) => {
                *self.end = n;
                Ok(())
            }
        }
    }
}

/// Streams the rest of the client's body upstream. Client faults are `ClientBody` (400), a
/// failed write upstream is `Upstream`.
#[allow(clippy::too_many_arguments)]
pub async fn send_body<R, W>(
    cr: &mut R,
    mut cb: ClientBuf<'_>,
    uw: &mut W,
    framing: Framing,
    max: Option<u64>,
    scratch: &mut Vec<u8>,
    idle: Duration,
) -> Result<(), ProxyError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    match framing {
        Framing::None => Ok(()),
        Framing::Length(mut left) => {
            while left > 0 {
                if *cb.start == *cb.end {
                    cb.refill(cr, idle).await?;
                }
                let n = ((*cb.end - *cb.start) as u64).min(left) as usize;
                uw.write_all(&cb.buf[*cb.start..*cb.start + n])
                    .await
                    .map_err(up_write)?;
                *cb.start += n;
                left -= n as u64;
            }
            Ok(())
        }
        Framing::Chunked => {
            let mut dec = Decoder::default();
            let mut total = 0u64;
            loop {
                if *cb.start == *cb.end {
                    cb.refill(cr, idle).await?;
                }
                scratch.clear();
                let n = dec
                    .decode(&cb.buf[*cb.start..*cb.end], |d| {
                        total += d.len() as u64;
                        chunked::encode_chunk(scratch, d)
                    })
                    .map_err(|e| ProxyError::ClientBody(e.to_string()))?;
                *cb.start += n;
                if let Some(max) = max
                    && total > max
                {
                    return Err(ProxyError::BodyTooLarge(max));
                }
                if dec.is_done() {
                    scratch.extend_from_slice(chunked::LAST_CHUNK);
                }
                uw.write_all(scratch).await.map_err(up_write)?;
                if dec.is_done() {
                    return Ok(());
                }
            }
        }
    }
}

fn up_write(e: std::io::Error) -> ProxyError {
    ProxyError::Upstream(format!("writing the request body: {e}"))
}

pub enum ReadHead {
    /// Nothing came back: on a reused connection, safe to send again on a fresh one.
    Closed,
    Io,
    Timeout,
    Bad(&'static str),
    /// The client closed its connection while waiting.
    ClientGone,
}

/// Parses what `rb` holds; `Some` once a final (non-1xx, or 101) head is complete.
pub fn parse_head(
    rb: &mut RecvBuf,
    resp: &mut ResponseHead,
    is_head: bool,
) -> Result<bool, ReadHead> {
    while !rb.is_empty() {
        match resp.parse(rb.pending(), is_head) {
            Ok(true) if (100..200).contains(&resp.status) && resp.status != 101 => {
                // Interim answers (100 Continue, 103) are wakeway's to give, not the app's.
                rb.consume(resp.head_len);
            }
            Ok(true) => return Ok(true),
            Ok(false) => return Ok(false),
            Err(e) => return Err(ReadHead::Bad(e.0)),
        }
    }
    Ok(false)
}

/// Reads the instance's response head into `resp`, within `deadline`.
pub async fn read_head<R: AsyncRead + Unpin>(
    ur: &mut R,
    rb: &mut RecvBuf,
    resp: &mut ResponseHead,
    is_head: bool,
    deadline: Instant,
) -> Result<(), ReadHead> {
    let mut got_any = !rb.is_empty();
    loop {
        if parse_head(rb, resp, is_head)? {
            return Ok(());
        }
        match tokio::time::timeout_at(deadline, rb.fill(ur, MAX_RESPONSE_HEAD)).await {
            Err(_) => return Err(ReadHead::Timeout),
            Ok(Ok(0)) | Ok(Err(_)) if !got_any => return Err(ReadHead::Closed),
            Ok(Ok(0)) | Ok(Err(_)) => return Err(ReadHead::Io),
            Ok(Ok(_)) => got_any = true,
        }
    }
}

/// How the client's copy of the response is framed and whether its connection closes after.
pub struct ClientFraming {
    pub http10: bool,
    pub close: bool,
}

impl ClientFraming {
    /// Chunked is re-framed; to an HTTP/1.0 client it becomes close-delimited, as does a body the
    /// instance delimits by closing.
    pub fn new(resp: &ResponseHead, http10: bool, keep_alive: bool) -> ClientFraming {
        let framing = resp.framing.unwrap_or(BodyFraming::Close);
        ClientFraming {
            http10,
            close: !keep_alive
                || matches!(framing, BodyFraming::Close)
                || (http10 && matches!(framing, BodyFraming::Chunked)),
        }
    }
}

/// Writes the response head and body to the client. `Err`: the exchange broke off (client gone
/// or instance failed mid-body); neither connection can be reused.
pub async fn relay<R, W>(
    ur: &mut R,
    rb: &mut RecvBuf,
    cw: &mut W,
    out: &mut Vec<u8>,
    resp: &ResponseHead,
    cf: &ClientFraming,
    idle: Duration,
) -> Result<(), ()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let framing = resp.framing.unwrap_or(BodyFraming::Close);
    out.clear();
    write_client_head(out, resp, rb.pending(), framing, cf.http10, cf.close);
    rb.consume(resp.head_len);
    match framing {
        BodyFraming::None => cw.write_all(out).await.map_err(drop)?,
        BodyFraming::Length(mut left) => {
            // The head and what already arrived of the body go out in one write.
            let n = rb.pending().len().min(left as usize);
            out.extend_from_slice(&rb.pending()[..n]);
            rb.consume(n);
            left -= n as u64;
            cw.write_all(out).await.map_err(drop)?;
            while left > 0 {
                fill(ur, rb, idle).await?;
                let n = rb.pending().len().min(left as usize);
                cw.write_all(&rb.pending()[..n]).await.map_err(drop)?;
                rb.consume(n);
                left -= n as u64;
            }
        }
        BodyFraming::Chunked => {
            let mut dec = Decoder::default();
            let reframe = !cf.http10;
            loop {
                let n = dec
                    .decode(rb.pending(), |d| {
                        if reframe {
                            chunked::encode_chunk(out, d)
                        } else {
                            out.extend_from_slice(d)
                        }
                    })
                    .map_err(|e| tracing::debug!("malformed chunked response: {e}"))?;
                rb.consume(n);
                if dec.is_done() && reframe {
                    out.extend_from_slice(chunked::LAST_CHUNK);
                }
                if !out.is_empty() {
                    cw.write_all(out).await.map_err(drop)?;
                    out.clear();
                }
                if dec.is_done() {
                    break;
                }
                fill(ur, rb, idle).await?;
            }
        }
        BodyFraming::Close => {
            cw.write_all(out).await.map_err(drop)?;
            loop {
                if !rb.is_empty() {
                    cw.write_all(rb.pending()).await.map_err(drop)?;
                    let n = rb.pending().len();
                    rb.consume(n);
                }
                match tokio::time::timeout(idle, rb.fill(ur, usize::MAX)).await {
                    Ok(Ok(0)) => break,
                    Ok(Ok(_)) => {}
                    _ => return Err(()),
                }
            }
        }
    }
    cw.flush().await.map_err(drop)
}

async fn fill<R: AsyncRead + Unpin>(
    ur: &mut R,
    rb: &mut RecvBuf,
    idle: Duration,
) -> Result<(), ()> {
    match tokio::time::timeout(idle, rb.fill(ur, usize::MAX)).await {
        Ok(Ok(n)) if n > 0 => Ok(()),
        _ => Err(()),
    }
}
