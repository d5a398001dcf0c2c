//! The two body wrappers of the request path.
//!
//! `ProxyBody` carries an upstream response to the client and holds the request's in-flight
//! guard until the body ends or is dropped (client gone), so a slow or streaming response counts
//! for as long as it runs. `RequestBody` carries the client's body upstream and, if the client
//! library drops it unread (the connect failed, nothing was sent), hands it back so the request
//! can be retried on another instance, POST included.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::sync::oneshot;

use crate::proxy::upstream::h2::StreamSlot;
use crate::service::InFlight;

pub enum ProxyBody {
    Upstream {
        inner: Incoming,
        guard: Option<InFlight>,
        /// An h2 upstream stream's place on its connection, freed with the guard.
        stream: Option<StreamSlot>,
    },
    Full(Option<Bytes>),
    /// A gRPC call, watched for its final `grpc-status`.
    Grpc(Box<crate::proxy::grpc::CallBody>),
}

impl ProxyBody {
    pub fn upstream(inner: Incoming, guard: Option<InFlight>) -> ProxyBody {
        ProxyBody::Upstream {
            inner,
            guard,
            stream: None,
        }
    }

    /// An h2 upstream's response: the stream counts on its instance (and on its connection)
    /// until the end of its trailers, or its reset.
    pub fn stream(inner: Incoming, guard: InFlight, stream: StreamSlot) -> ProxyBody {
        ProxyBody::Upstream {
            inner,
            guard: Some(guard),
            stream: Some(stream),
        }
    }

    pub fn full(b: impl Into<Bytes>) -> ProxyBody {
        ProxyBody::Full(Some(b.into()))
    }

    pub fn empty() -> ProxyBody {
        ProxyBody::Full(None)
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ProxyBody::Upstream {
                inner,
                guard,
                stream,
            } => {
                let r = Pin::new(&mut *inner).poll_frame(cx);
                if let Poll::Ready(None) | Poll::Ready(Some(Err(_))) = &r {
                    // End of stream: free the slot now rather than when hyper drops the body.
                    guard.take();
                    stream.take();
                }
                r
            }
            ProxyBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            ProxyBody::Grpc(c) => Pin::new(&mut **c).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Upstream { inner, .. } => inner.is_end_stream(),
            ProxyBody::Full(b) => b.is_none(),
            ProxyBody::Grpc(c) => c.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Upstream { inner, .. } => inner.size_hint(),
            ProxyBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            ProxyBody::Full(None) => SizeHint::with_exact(0),
            ProxyBody::Grpc(c) => c.size_hint(),
        }
    }
}

pub struct RequestBody {
    inner: Option<Incoming>,
    polled: bool,
    give_back: Option<oneshot::Sender<Incoming>>,
}

impl RequestBody {
    /// Wraps a body; the receiver gets it back if it is dropped without being read.
    pub fn new(inner: Incoming) -> (RequestBody, oneshot::Receiver<Incoming>) {
        let (tx, rx) = oneshot::channel();
        (
            RequestBody {
                inner: Some(inner),
                polled: false,
                give_back: Some(tx),
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
        match this.inner.as_mut() {
            Some(b) => Pin::new(b).poll_frame(cx),
            None => Poll::Ready(None),
        }
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
