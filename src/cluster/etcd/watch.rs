//! A watch on a key prefix: one Watch stream whose request side stays open (etcd ends the
//! watch when it closes) and whose answers are read as they come.

use std::convert::Infallible;

use bytes::{Bytes, BytesMut};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use tokio::sync::mpsc;

use super::proto::*;
use super::{Client, Error, Result, frame, grpc_request, next_message, prefix_end};

/// One change under the watched prefix.
#[derive(Debug, Clone)]
pub enum WatchEvent {
    Put(KeyValue),
    Deleted { key: Vec<u8>, revision: i64 },
}

pub struct Watcher {
    /// Held so the request stream stays open.
    _requests: mpsc::Sender<Bytes>,
    body: hyper::body::Incoming,
    buf: BytesMut,
}

impl Client {
    /// Watches every key under `prefix` from `start_revision` (inclusive) on.
    pub async fn watch(&self, prefix: &str, start_revision: i64) -> Result<Watcher> {
        let (i, mut sender) = self.sender().await?;
        let (tx, rx) = mpsc::channel::<Bytes>(4);
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv()
                .await
                .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
        });
        let req = grpc_request(
            &self.endpoints[i],
            "/etcdserverpb.Watch/Watch",
            StreamBody::new(stream).boxed(),
        );
        let create = WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(
                WatchCreateRequest {
                    key: prefix.as_bytes().to_vec(),
                    range_end: prefix_end(prefix.as_bytes()),
                    start_revision,
                    progress_notify: true,
                },
            )),
        };
        let _ = tx.send(frame(&create)).await;
        let resp = match tokio::time::timeout(super::CALL_TIMEOUT, sender.send_request(req)).await {
            Ok(Ok(resp)) => resp,
            Ok(Err(e)) => {
                self.failed(i).await;
                return Err(Error::Unreachable(e.to_string()));
            }
            Err(_) => {
                self.failed(i).await;
                return Err(Error::Unreachable("watch: no answer".into()));
            }
        };
        super::check_status(resp.headers(), &http::HeaderMap::new()).or_else(|e| match e {
            // The status comes in the trailers of a stream that goes on.
            Error::Protocol(_) => Ok(()),
            e => Err(e),
        })?;
        let mut watcher = Watcher {
            _requests: tx,
            body: resp.into_body(),
            buf: BytesMut::new(),
        };
        // The first answer confirms the watch.
        let first = watcher.next_response().await?;
        if !first.created || first.canceled {
            return Err(Error::Protocol(format!(
                "watch not created: {}",
                first.cancel_reason
            )));
        }
        Ok(watcher)
    }
}

impl Watcher {
    async fn next_response(&mut self) -> Result<WatchResponse> {
        loop {
            if let Some(m) = next_message::<WatchResponse>(&mut self.buf)? {
                return Ok(m);
            }
            match self.body.frame().await {
                Some(Ok(f)) => {
                    if let Ok(data) = f.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) => return Err(Error::Unreachable(format!("watch: {e}"))),
                None => return Err(Error::Unreachable("watch stream ended".into())),
            }
        }
    }

    /// The next changes (never empty), or an error: the watch is over and must be made again.
    pub async fn next(&mut self) -> Result<Vec<WatchEvent>> {
        loop {
            let r = self.next_response().await?;
            if r.canceled {
                return Err(Error::Protocol(format!(
                    "watch cancelled (compacted at {}): {}",
                    r.compact_revision, r.cancel_reason
                )));
            }
            let revision = r.header.as_ref().map_or(0, |h| h.revision);
            let events: Vec<WatchEvent> = r
                .events
                .into_iter()
                .filter_map(|e| {
                    let kv = e.kv?;
                    Some(if e.r#type == EventType::Delete as i32 {
                        WatchEvent::Deleted {
                            key: kv.key,
                            revision: kv.mod_revision.max(revision),
                        }
                    } else {
                        WatchEvent::Put(kv)
                    })
                })
                .collect();
            if !events.is_empty() {
                return Ok(events);
            }
        }
    }
}
