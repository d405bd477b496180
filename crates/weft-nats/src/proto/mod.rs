//! The NATS client protocol without I/O: the incremental parser of what
//! clients send, the encoders of what the server sends, header blocks and
//! the JSON of `INFO` and `CONNECT`.

pub mod encode;
pub mod headers;
pub mod json;
pub mod parser;

pub use parser::{ClientOp, Limits, ParseError, Parser};
