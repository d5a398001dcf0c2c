//! HTTP/1.x on wakeway's own parser: a strict reading of the request (`request`), the instance's
//! answer (`response`), chunked framing (`chunked`), and the connection loop (`conn`).

pub mod chunked;
pub mod conn;
pub mod exchange;
pub mod observe;
pub mod request;
pub mod response;
pub mod transfer;
pub mod write;

#[cfg(test)]
mod proptests;
