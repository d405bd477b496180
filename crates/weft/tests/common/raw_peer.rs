//! A hand-driven weft peer for bad-input tests: runs the sans-IO handshake
//! over a raw TCP stream with any identity, then writes arbitrary frames.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weft::weft_proto::handshake::{Handshake, HandshakeConfig, HandshakeError, PeerInfo, Progress, Role};
use weft::weft_proto::{DEFAULT_MAX_FRAME, Frame, NodeId};

/// An authenticated raw connection.
pub struct RawPeer {
    /// The TCP stream, after the handshake.
    pub stream: TcpStream,
    /// Bytes read past the handshake.
    pub buf: BytesMut,
    /// The node that accepted us.
    pub peer: PeerInfo,
}

/// Dials `addr` as `me` and runs the handshake.
pub async fn dial(
    addr: SocketAddr,
    cluster: &str,
    me: NodeId,
    secret: &[u8],
) -> Result<RawPeer, HandshakeError> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|_| HandshakeError::Closed)?;
    let config = HandshakeConfig {
        cluster: cluster.into(),
        local: me,
        addr: "127.0.0.1:9".into(),
        secret: secret.to_vec(),
        max_frame: DEFAULT_MAX_FRAME,
    };
    let mut hs = Handshake::new(
        Role::Dialer,
        config,
        [0x33; 32],
        Instant::now(),
        Duration::from_secs(10),
    );
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        while let Some(out) = hs.poll_transmit() {
            stream.write_all(&out).await.map_err(|_| HandshakeError::Closed)?;
        }
        match hs.handle_input(&mut buf)? {
            Progress::Established(peer) => return Ok(RawPeer { stream, buf, peer }),
            Progress::Pending => {}
            Progress::Authenticated(_) => return Err(HandshakeError::Unexpected("decision")),
        }
        while let Some(out) = hs.poll_transmit() {
            stream.write_all(&out).await.map_err(|_| HandshakeError::Closed)?;
        }
        buf.reserve(4096);
        match tokio::time::timeout(Duration::from_secs(10), stream.read_buf(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return Err(HandshakeError::Closed),
        }
    }
}

impl RawPeer {
    /// Writes one frame.
    pub async fn send(&mut self, frame: &Frame) {
        let mut out = BytesMut::new();
        frame.encode_into(DEFAULT_MAX_FRAME, &mut out).expect("encode");
        self.stream.write_all(&out).await.expect("write");
    }
}
