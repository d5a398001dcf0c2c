//! whoami's gRPC side: on the same port as its HTTP endpoints, a request with a gRPC content type
//! over h2c reaches `wakeway.whoami.v1.Whoami` (one method of each kind) or the standard
//! `grpc.health.v1.Health/Check`. Served by tonic's codec and server traits with messages written
//! out by hand, so no protobuf compiler is needed.
//!
//! - `Unary(Call) -> Reply`: after `sleep_ms`, one reply naming the instance.
//! - `ServerStream(Call) -> stream Reply`: `count` replies, `sleep_ms` apart.
//! - `ClientStream(stream Call) -> Reply`: the messages joined with `,`; `seq` is how many.
//! - `Bidi(stream Call) -> stream Reply`: each call echoed back as it arrives.
//! - `grpc.health.v1.Health/Check`: `SERVING` while `/healthz` answers 2xx (`POST
//!   /healthz?status=503` turns it to `NOT_SERVING`), for the server (`""`) and
//!   `wakeway.whoami.v1.Whoami`; any other service name is `NOT_FOUND`.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::{FutureExt, StreamExt};
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use tonic::server::{
    ClientStreamingService, Grpc, ServerStreamingService, StreamingService, UnaryService,
};
use tonic::{Status, Streaming};
use tonic_prost::ProstCodec;

use crate::service::probe_grpc::{HealthCheckRequest, HealthCheckResponse, ServingStatus};

/// The whoami service's name, as health checks ask for it.
pub const SERVICE: &str = "wakeway.whoami.v1.Whoami";
pub const UNARY: &str = "/wakeway.whoami.v1.Whoami/Unary";
pub const SERVER_STREAM: &str = "/wakeway.whoami.v1.Whoami/ServerStream";
pub const CLIENT_STREAM: &str = "/wakeway.whoami.v1.Whoami/ClientStream";
pub const BIDI: &str = "/wakeway.whoami.v1.Whoami/Bidi";

/// `wakeway.whoami.v1.Call`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Call {
    #[prost(string, tag = "1")]
    pub message: String,
    /// Replies a server-streaming call sends.
    #[prost(uint32, tag = "2")]
    pub count: u32,
    /// How long to wait before (each) reply.
    #[prost(uint64, tag = "3")]
    pub sleep_ms: u64,
}

/// `wakeway.whoami.v1.Reply`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Reply {
    #[prost(string, tag = "1")]
    pub message: String,
    /// `WAKEWAY_INSTANCE` of the process that answered.
    #[prost(string, tag = "2")]
    pub instance: String,
    #[prost(uint32, tag = "3")]
    pub seq: u32,
}

type Out = UnsyncBoxBody<Bytes, hyper::Error>;

/// Answers one gRPC call. `healthy` is what `/healthz` says now.
pub async fn handle(instance: &str, healthy: bool, req: Request<Incoming>) -> Response<Out> {
    let me = Me(Arc::from(instance));
    let resp = match req.uri().path() {
        UNARY => codec().unary(me, req).await,
        SERVER_STREAM => codec().server_streaming(me, req).await,
        CLIENT_STREAM => codec().client_streaming(me, req).await,
        BIDI => codec().streaming(me, req).await,
        crate::service::probe_grpc::CHECK_PATH => {
            Grpc::new(ProstCodec::<HealthCheckResponse, HealthCheckRequest>::default())
                .unary(Health(healthy), req)
                .await
        }
        other => Status::unimplemented(format!("whoami has no method {other}")).into_http(),
    };
    resp.map(|b| EndOnError(b).boxed_unsync())
}

fn codec() -> Grpc<ProstCodec<Reply, Call>> {
    Grpc::new(ProstCodec::default())
}

fn pause(ms: u64) -> tokio::time::Sleep {
    tokio::time::sleep(Duration::from_millis(ms))
}

/// The instance answering.
#[derive(Clone)]
struct Me(Arc<str>);

impl Me {
    fn reply(&self, message: String, seq: u32) -> Reply {
        Reply {
            message,
            instance: self.0.to_string(),
            seq,
        }
    }
}

type Answer<T> = BoxFuture<'static, Result<tonic::Response<T>, Status>>;
type Replies = BoxStream<'static, Result<Reply, Status>>;

impl UnaryService<Call> for Me {
    type Response = Reply;
    type Future = Answer<Reply>;

    fn call(&mut self, req: tonic::Request<Call>) -> Self::Future {
        let me = self.clone();
        async move {
            let c = req.into_inner();
            pause(c.sleep_ms).await;
            Ok(tonic::Response::new(me.reply(c.message, 0)))
        }
        .boxed()
    }
}

impl ServerStreamingService<Call> for Me {
    type Response = Reply;
    type ResponseStream = Replies;
    type Future = Answer<Replies>;

    fn call(&mut self, req: tonic::Request<Call>) -> Self::Future {
        let me = self.clone();
        let c = req.into_inner();
        let replies = futures_util::stream::iter(0..c.count)
            .then(move |seq| {
                let me = me.clone();
                let message = c.message.clone();
                async move {
                    pause(c.sleep_ms).await;
                    Ok(me.reply(message, seq))
                }
            })
            .boxed();
        futures_util::future::ready(Ok(tonic::Response::new(replies))).boxed()
    }
}

impl ClientStreamingService<Call> for Me {
    type Response = Reply;
    type Future = Answer<Reply>;

    fn call(&mut self, req: tonic::Request<Streaming<Call>>) -> Self::Future {
        let me = self.clone();
        async move {
            let mut calls = req.into_inner();
            let mut seen = Vec::new();
            while let Some(c) = calls.next().await {
                seen.push(c?.message);
            }
            Ok(tonic::Response::new(
                me.reply(seen.join(","), seen.len() as u32),
            ))
        }
        .boxed()
    }
}

impl StreamingService<Call> for Me {
    type Response = Reply;
    type ResponseStream = Replies;
    type Future = Answer<Replies>;

    fn call(&mut self, req: tonic::Request<Streaming<Call>>) -> Self::Future {
        let me = self.clone();
        let replies = req
            .into_inner()
            .enumerate()
            .then(move |(seq, c)| {
                let me = me.clone();
                async move {
                    let c = c?;
                    pause(c.sleep_ms).await;
                    Ok(me.reply(c.message, seq as u32))
                }
            })
            .boxed();
        futures_util::future::ready(Ok(tonic::Response::new(replies))).boxed()
    }
}

/// `grpc.health.v1.Health`, answering as `/healthz` does.
struct Health(bool);

impl UnaryService<HealthCheckRequest> for Health {
    type Response = HealthCheckResponse;
    type Future = Answer<HealthCheckResponse>;

    fn call(&mut self, req: tonic::Request<HealthCheckRequest>) -> Self::Future {
        let service = req.into_inner().service;
        let answer = if service.is_empty() || service == SERVICE {
            let status = if self.0 {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            Ok(tonic::Response::new(HealthCheckResponse {
                status: status as i32,
            }))
        } else {
            Err(Status::not_found(format!("unknown service {service}")))
        };
        futures_util::future::ready(answer).boxed()
    }
}

/// tonic's body ends a call with its status in the trailers; an error from it is only the
/// client gone, which ends the stream here too.
struct EndOnError(tonic::body::Body);

impl Body for EndOnError {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match Pin::new(&mut self.get_mut().0).poll_frame(cx) {
            Poll::Ready(Some(Ok(f))) => Poll::Ready(Some(Ok(f))),
            Poll::Ready(_) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.0.size_hint()
    }
}
