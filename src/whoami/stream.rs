//! The endpoints that stream: `/echo` sends the request body back as it arrives, `/ws` echoes
//! WebSocket messages. Each counts in flight until its body or tunnel ends.

use super::*;

/// `/echo`: the request body streams back as the response body.
pub(super) fn echo(state: &Arc<State>, req: Request<Incoming>) -> Response<RespBody> {
    let (guard, _) = state.enter();
    let content_type = req.headers().get(header::CONTENT_TYPE).cloned();
    let body = EchoBody {
        inner: req.into_body(),
        guard,
    };
    let mut resp = Response::new(body.boxed_unsync());
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        content_type.unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    resp
}

/// The request body, counted in flight until it ends (or is dropped).
struct EchoBody {
    inner: Incoming,
    guard: InFlight,
}

impl Body for EchoBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        loop {
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                // Only echo data: request trailers are not response trailers.
                Poll::Ready(Some(Ok(frame))) if !frame.is_data() => continue,
                Poll::Ready(Some(Ok(frame))) => return Poll::Ready(Some(Ok(frame))),
                Poll::Ready(other) => {
                    this.guard.release();
                    return Poll::Ready(other);
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// `/ws`: a WebSocket echo server.
pub(super) fn websocket(state: &Arc<State>, mut req: Request<Incoming>) -> Response<RespBody> {
    let headers = req.headers();
    let is_upgrade = req.method() == Method::GET
        && header_has_token(headers.get(header::CONNECTION), "upgrade")
        && header_has_token(headers.get(header::UPGRADE), "websocket");
    let key = headers.get(header::SEC_WEBSOCKET_KEY).cloned();
    let (true, Some(key)) = (is_upgrade, key) else {
        return text(
            StatusCode::BAD_REQUEST,
            "/ws expects a WebSocket upgrade request\n",
        );
    };
    let accept = derive_accept_key(key.as_bytes());

    // The tunnel counts as one request in flight for as long as it is open.
    let (guard, _) = state.enter();
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let _guard = guard;
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(err) => {
                eprintln!("whoami: websocket upgrade failed: {err}");
                return;
            }
        };
        let mut ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        while let Some(msg) = ws.next().await {
            let msg = match msg {
                Ok(m) => m,
                Err(_) => break,
            };
            match msg {
                Message::Text(_) | Message::Binary(_) => {
                    if ws.send(msg).await.is_err() {
                        break;
                    }
                }
                Message::Close(_) => break,
                // Pings are answered by tungstenite itself; make sure the pong goes out.
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {
                    if ws.flush().await.is_err() {
                        break;
                    }
                }
            }
        }
        // Completes the closing handshake if the peer started it; errors mean it is gone.
        let _ = ws.close(None).await;
    });

    let mut resp = Response::new(full(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    resp
}

pub(super) fn header_has_token(value: Option<&HeaderValue>, token: &str) -> bool {
    value
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}
