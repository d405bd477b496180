//! Errors of the NATS front end.

use std::net::SocketAddr;

/// Why a [`crate::NatsServer`] could not start.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    /// The configuration is invalid (the message names the field).
    #[error("invalid NATS configuration: {0}")]
    Config(String),
    /// The client address could not be bound.
    #[error("cannot bind the NATS client address {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
}
