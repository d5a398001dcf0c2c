//! The gRPC health probe (`health.kind = "grpc"`): the standard `grpc.health.v1.Health/Check` on
//! a fresh h2c connection, passing only on `SERVING`. The messages are written out by hand (two
//! fields) rather than generated, and whoami's health service answers with the same ones.

use std::net::SocketAddr;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;

use crate::config::HealthConfig;

/// The method the probe calls.
pub const CHECK_PATH: &str = "/grpc.health.v1.Health/Check";

/// `grpc.health.v1.HealthCheckRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HealthCheckRequest {
    #[prost(string, tag = "1")]
    pub service: String,
}

/// `grpc.health.v1.HealthCheckResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HealthCheckResponse {
    #[prost(enumeration = "ServingStatus", tag = "1")]
    pub status: i32,
}

/// `grpc.health.v1.HealthCheckResponse.ServingStatus`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ServingStatus {
    Unknown = 0,
    Serving = 1,
    NotServing = 2,
    ServiceUnknown = 3,
}

/// One `Check`, on a connection of its own (the caller bounds it by `health.timeout`).
pub async fn check(addr: SocketAddr, cfg: &HealthConfig) -> Result<(), String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("h2c handshake with {addr}: {e}"))?;
    let conn = tokio::spawn(conn);
    let asked = HealthCheckRequest {
        service: cfg.grpc_service.clone(),
    };
    let req = http::Request::post(format!("http://{addr}{CHECK_PATH}"))
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header(http::header::TE, "trailers")
        .header(http::header::USER_AGENT, "wakeway-health")
        .body(Full::new(frame(&asked)))
        .map_err(|e| format!("bad probe request: {e}"))?;
    let answered = async {
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("{CHECK_PATH}: {e}"))?;
        let status = resp.status();
        if status != http::StatusCode::OK {
            return Err(format!("{CHECK_PATH} answered HTTP {status}"));
        }
        let head = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{CHECK_PATH}: {e}"))?;
        let trailers = body.trailers().cloned().unwrap_or_default();
        // Trailers-only answers carry the status in the head.
        let code = trailers
            .get("grpc-status")
            .or_else(|| head.get("grpc-status"))
            .and_then(|v| v.to_str().ok())
            .unwrap_or("missing");
        if code != "0" {
            let msg = trailers
                .get("grpc-message")
                .or_else(|| head.get("grpc-message"))
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            return Err(format!("{CHECK_PATH} answered grpc-status {code} {msg}"));
        }
        let reply: HealthCheckResponse = unframe(body.to_bytes())?;
        match ServingStatus::try_from(reply.status) {
            Ok(ServingStatus::Serving) => Ok(()),
            Ok(s) => Err(format!("{CHECK_PATH} answered {s:?}")),
            Err(_) => Err(format!("{CHECK_PATH} answered status {}", reply.status)),
        }
    }
    .await;
    conn.abort();
    answered
}

/// One gRPC message: uncompressed flag, big-endian length, the message.
pub fn frame<M: prost::Message>(m: &M) -> Bytes {
    let len = m.encoded_len();
    let mut b = BytesMut::with_capacity(5 + len);
    b.put_u8(0);
    b.put_u32(len as u32);
    // Cannot fail: the buffer has room for `encoded_len`.
    let _ = m.encode(&mut b);
    b.freeze()
}

/// The one message of a unary answer.
pub fn unframe<M: prost::Message + Default>(mut b: Bytes) -> Result<M, String> {
    if b.len() < 5 {
        return Err(format!("{CHECK_PATH}: answer without a message"));
    }
    if b.get_u8() != 0 {
        return Err(format!("{CHECK_PATH}: compressed answer"));
    }
    let len = b.get_u32() as usize;
    if b.len() != len {
        return Err(format!(
            "{CHECK_PATH}: message of {} bytes, said {len}",
            b.len()
        ));
    }
    M::decode(b).map_err(|e| format!("{CHECK_PATH}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_bad_frames_are_named() {
        let m = HealthCheckResponse {
            status: ServingStatus::Serving as i32,
        };
        let b = frame(&m);
        assert_eq!(&b[..5], &[0, 0, 0, 0, 2]);
        assert_eq!(unframe::<HealthCheckResponse>(b.clone()).unwrap(), m);
        let short = b.slice(..6);
        assert!(
            unframe::<HealthCheckResponse>(short)
                .unwrap_err()
                .contains("said 2")
        );
        assert!(unframe::<HealthCheckResponse>(Bytes::new()).is_err());
    }
}
