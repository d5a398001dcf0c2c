//! Connections to instances, owned by one worker each: HTTP/1.1 (`h1`) and h2c (`h2`), each
//! protocol in its own file.

pub mod h1;
pub mod h2;

pub use h1::*;
