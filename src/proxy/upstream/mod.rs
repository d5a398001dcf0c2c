//! Connections to instances, owned by one worker each: HTTP/1.1 today (`h1`), each protocol in its
//! own file beside it.

pub mod h1;

pub use h1::*;
