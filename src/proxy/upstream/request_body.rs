//! The client's request body on its way to an instance. If the client library drops it unread
//! (the connect failed, nothing was sent), it is handed back so the request can be retried on
//! another instance, POST included; with the access log on, it counts the bytes that went.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::sync::oneshot;

pub struct RequestBody {
    inner: Option<Incoming>,
    polled: bool,
    give_back: Option<oneshot::Sender<Incoming>>,
    /// The bytes that went upstream, for the access log (kept only when it is on).
    sent: Option<Arc<AtomicU64>>,
}

impl RequestBody {
    /// Wraps a body; the receiver gets it back if it is dropped without being read.
    /// `None`: an empty body (one that had ended may be sent again).
    pub fn new(
        inner: Option<Incoming>,
        sent: Option<Arc<AtomicU64>>,
    ) -> (RequestBody, oneshot::Receiver<Incoming>) {
        let (tx, rx) = oneshot::channel();
        (
            RequestBody {
                inner,
                polled: false,
                give_back: Some(tx),
                sent,
            },
            rx,
        )
    }
}

impl Drop for RequestBody {
    fn drop(&mut self) {
        if !self.polled
            && let (Some(body), Some(tx)) = (self.inner.take(), self.give_back.take())
        {
            let _ = tx.send(body);
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        this.polled = true;
        let Some(b) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let r = Pin::new(b).poll_frame(cx);
        if let (Poll::Ready(Some(Ok(f))), Some(sent)) = (&r, &this.sent)
            && let Some(d) = f.data_ref()
        {
            sent.fetch_add(d.len() as u64, Ordering::Relaxed);
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or(SizeHint::with_exact(0), |b| b.size_hint())
    }
}
