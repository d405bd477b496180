//! Authenticated node links: handshake driving, connections, and the
//! per-peer link manager.

pub(crate) mod conn;
pub(crate) mod manager;
pub(crate) mod tls;

pub use conn::FrameHandler;
pub use manager::{LinkEvent, LinkInfo, Links};
pub use tls::TlsContext;
