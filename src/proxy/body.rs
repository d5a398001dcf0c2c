//! The response body of the request path (the request's own is `upstream::RequestBody`).
//!
//! `ProxyBody` carries an upstream response to the client and holds the request's in-flight
//! guard until the body ends or is dropped (client gone), so a slow or streaming response counts
//! for as long as it runs; an upstream silent for `upstream_read_timeout` between two frames
//! ends it with an error (for h2, an RST_STREAM).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

use crate::proxy::upstream::h2::StreamSlot;
use crate::service::InFlight;

/// What ends a response body early: the upstream's own error, or its silence.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

pub enum ProxyBody {
    Upstream {
        inner: Incoming,
        guard: Option<InFlight>,
        read_timeout: Duration,
        /// Armed when the upstream first makes the body wait, and re-armed at each frame: a body
        /// that arrives with its head never allocates a timer.
        silence: Option<Pin<Box<Sleep>>>,
        /// An h2 upstream stream's place on its connection, freed with the guard.
        stream: Option<StreamSlot>,
    },
    Full(Option<Bytes>),
    /// A body watched to its end by whoever wrapped it: a gRPC call for its final
    /// `grpc-status` (`grpc::CallBody`), an h2 response for its access line
    /// (`access_line::LoggedBody`).
    Watched(Box<dyn Body<Data = Bytes, Error = BodyError> + Unpin>),
}

impl ProxyBody {
    pub fn upstream(inner: Incoming, guard: Option<InFlight>, read_timeout: Duration) -> ProxyBody {
        ProxyBody::Upstream {
            inner,
            guard,
            read_timeout,
            silence: None,
            stream: None,
        }
    }

    /// An h2 upstream's response: the stream counts on its instance (and on its connection)
    /// until the end of its trailers, or its reset.
    pub fn stream(
        inner: Incoming,
        guard: InFlight,
        stream: StreamSlot,
        read_timeout: Duration,
    ) -> ProxyBody {
        ProxyBody::Upstream {
            inner,
            guard: Some(guard),
            read_timeout,
            silence: None,
            stream: Some(stream),
        }
    }

    pub fn full(b: impl Into<Bytes>) -> ProxyBody {
        ProxyBody::Full(Some(b.into()))
    }

    pub fn empty() -> ProxyBody {
        ProxyBody::Full(None)
    }

    /// The instance streaming this body, if an instance answered (for the access log).
    pub fn instance(&self) -> Option<&std::sync::Arc<crate::service::instance::Instance>> {
        match self {
            ProxyBody::Upstream { guard, .. } => guard.as_ref().map(InFlight::instance),
            ProxyBody::Full(_) | ProxyBody::Watched(_) => None,
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            ProxyBody::Upstream {
                inner,
                guard,
                read_timeout,
                silence,
                stream,
            } => {
                let r = Pin::new(&mut *inner).poll_frame(cx);
                match &r {
                    Poll::Ready(None) | Poll::Ready(Some(Err(_))) => {
                        // End of stream: free the slot now rather than when hyper drops the body.
                        guard.take();
                        stream.take();
                    }
                    Poll::Ready(Some(Ok(_))) => {
                        if let Some(s) = silence {
                            s.as_mut().reset(Instant::now() + *read_timeout);
                        }
                    }
                    Poll::Pending => {
                        let timer = silence
                            .get_or_insert_with(|| Box::pin(tokio::time::sleep(*read_timeout)));
                        if timer.as_mut().poll(cx).is_ready() {
                            guard.take();
                            stream.take();
                            return Poll::Ready(Some(Err(format!(
                                "the instance sent nothing for upstream_read_timeout ({read_timeout:?})"
                            )
                            .into())));
                        }
                    }
                }
                r.map(|f| f.map(|f| f.map_err(BodyError::from)))
            }
            ProxyBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            ProxyBody::Watched(w) => Pin::new(&mut **w).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Upstream { inner, .. } => inner.is_end_stream(),
            ProxyBody::Full(b) => b.is_none(),
            ProxyBody::Watched(w) => w.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Upstream { inner, .. } => inner.size_hint(),
            ProxyBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            ProxyBody::Full(None) => SizeHint::with_exact(0),
            ProxyBody::Watched(w) => w.size_hint(),
        }
    }
}
