//! A raw NATS protocol client over a plain TCP socket.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{Cluster, LIMIT};

/// A raw protocol client that keeps what it has read.
pub struct Raw {
    pub stream: TcpStream,
    seen: Vec<u8>,
    taken: usize,
}

impl Raw {
    pub async fn connect(c: &Cluster) -> Raw {
        Self::on(TcpStream::connect(c.servers[0].local_addr()).await.unwrap()).await
    }

    /// Connects to `addr` and reads its INFO line.
    pub async fn connect_to(addr: SocketAddr) -> Raw {
        Self::on(TcpStream::connect(addr).await.unwrap()).await
    }

    pub async fn on(stream: TcpStream) -> Raw {
        let mut r = Raw {
            stream,
            seen: Vec::new(),
            taken: 0,
        };
        let info = r.until("\r\n").await;
        assert!(info.starts_with("INFO {"), "{info}");
        r
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Reads until the unread text contains `needle`; returns the unread
    /// text up to and including it.
    pub async fn until(&mut self, needle: &str) -> String {
        let deadline = tokio::time::Instant::now() + LIMIT;
        loop {
            let unread = &self.seen[self.taken..];
            if let Some(i) = unread.windows(needle.len()).position(|w| w == needle.as_bytes()) {
                let end = self.taken + i + needle.len();
                let text = String::from_utf8_lossy(&self.seen[self.taken..end]).into_owned();
                self.taken = end;
                return text;
            }
            let mut chunk = [0u8; 64 * 1024];
            let n = tokio::time::timeout_at(deadline, self.stream.read(&mut chunk))
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "timed out waiting for {needle:?}; unread: {:?}",
                        String::from_utf8_lossy(&self.seen[self.taken..])
                    )
                })
                .unwrap_or(0);
            assert!(
                n > 0,
                "closed before {needle:?}; unread: {:?}",
                String::from_utf8_lossy(&self.seen[self.taken..])
            );
            self.seen.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads until the unread text ends with `needle` or the server
    /// closes; returns the unread text, with `<closed>` appended when it
    /// closed.
    pub async fn until_end_or_close(&mut self, needle: &str) -> String {
        let deadline = tokio::time::Instant::now() + LIMIT;
        let mut closed = false;
        while !self.seen[self.taken..].ends_with(needle.as_bytes()) {
            let mut chunk = [0u8; 64 * 1024];
            let read = tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await;
            match read {
                Err(_) => panic!(
                    "timed out waiting for {needle:?} or a close; unread: {:?}",
                    String::from_utf8_lossy(&self.seen[self.taken..])
                ),
                Ok(Ok(0)) | Ok(Err(_)) => {
                    closed = true;
                    break;
                }
                Ok(Ok(n)) => self.seen.extend_from_slice(&chunk[..n]),
            }
        }
        let mut text = String::from_utf8_lossy(&self.seen[self.taken..]).into_owned();
        self.taken = self.seen.len();
        if closed {
            text.push_str("<closed>");
        }
        text
    }

    /// Reads until the server closes; returns the unread text.
    pub async fn read_to_close(&mut self) -> String {
        let deadline = tokio::time::Instant::now() + LIMIT;
        let mut chunk = vec![0u8; 256 * 1024];
        loop {
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) => panic!("the server did not close the connection"),
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => self.seen.extend_from_slice(&chunk[..n]),
            }
        }
        let text = String::from_utf8_lossy(&self.seen[self.taken..]).into_owned();
        self.taken = self.seen.len();
        text
    }
}
