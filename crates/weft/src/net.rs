//! The network facade: how a node opens sockets.
//!
//! The node never names `tokio::net` directly; it asks a [`Net`]. Production
//! uses [`TokioNet`]; deterministic simulations pass an implementation over
//! turmoil's simulated sockets (see `tests/common/sim_net.rs`). Injecting it
//! at run time, rather than choosing it with a cargo feature, keeps
//! `cargo test --workspace` from unifying simulated networking into every
//! build.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use futures::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite};

/// A byte stream (TCP, or TLS over TCP, or a simulated stream).
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

/// An owned, boxed [`Stream`].
pub type BoxStream = Box<dyn Stream>;

/// A bound TCP listener.
pub trait Listener: Send + 'static {
    /// Waits for the next inbound connection.
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxStream, SocketAddr)>>;
    /// The address actually bound (resolves port 0).
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

/// A bound UDP socket.
pub trait Datagram: Send + Sync + 'static {
    /// Sends one datagram to `to`.
    fn send_to<'a>(&'a self, buf: &'a [u8], to: SocketAddr) -> BoxFuture<'a, io::Result<usize>>;
    /// Receives one datagram into `buf`.
    fn recv_from<'a>(&'a self, buf: &'a mut [u8]) -> BoxFuture<'a, io::Result<(usize, SocketAddr)>>;
}

/// Opens sockets for a node.
pub trait Net: Send + Sync + 'static {
    /// Binds a TCP listener.
    fn bind_tcp(&self, addr: SocketAddr) -> BoxFuture<'_, io::Result<Box<dyn Listener>>>;
    /// Opens a TCP connection (with `TCP_NODELAY`: weft batches its own
    /// writes).
    fn connect(&self, addr: SocketAddr) -> BoxFuture<'_, io::Result<BoxStream>>;
    /// Binds a UDP socket.
    fn bind_udp(&self, addr: SocketAddr) -> BoxFuture<'_, io::Result<Arc<dyn Datagram>>>;
}

/// Real sockets from `tokio::net`.
#[derive(Clone, Copy, Debug, Default)]
pub struct TokioNet;

struct TokioListener(tokio::net::TcpListener);

impl Listener for TokioListener {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxStream, SocketAddr)>> {
        Box::pin(async move {
            let (s, addr) = self.0.accept().await?;
            s.set_nodelay(true)?;
            Ok((Box::new(s) as BoxStream, addr))
        })
    }
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

struct TokioUdp(tokio::net::UdpSocket);

impl Datagram for TokioUdp {
    fn send_to<'a>(&'a self, buf: &'a [u8], to: SocketAddr) -> BoxFuture<'a, io::Result<usize>> {
        Box::pin(self.0.send_to(buf, to))
    }
    fn recv_from<'a>(&'a self, buf: &'a mut [u8]) -> BoxFuture<'a, io::Result<(usize, SocketAddr)>> {
        Box::pin(self.0.recv_from(buf))
    }
}

impl Net for TokioNet {
    fn bind_tcp(&self, addr: SocketAddr) -> BoxFuture<'_, io::Result<Box<dyn Listener>>> {
        Box::pin(async move {
            let l = tokio::net::TcpListener::bind(addr).await?;
            Ok(Box::new(TokioListener(l)) as Box<dyn Listener>)
        })
    }
    fn connect(&self, addr: SocketAddr) -> BoxFuture<'_, io::Result<BoxStream>> {
        Box::pin(async move {
            let s = tokio::net::TcpStream::connect(addr).await?;
            s.set_nodelay(true)?;
            Ok(Box::new(s) as BoxStream)
        })
    }
    fn bind_udp(&self, addr: SocketAddr) -> BoxFuture<'_, io::Result<Arc<dyn Datagram>>> {
        Box::pin(async move {
            let u = tokio::net::UdpSocket::bind(addr).await?;
            Ok(Arc::new(TokioUdp(u)) as Arc<dyn Datagram>)
        })
    }
}
