//! Small network probes used by `weft up`: free-port checks and a
//! minimal HTTP/1.0 GET for the admin API.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Fails if TCP port `port` on 127.0.0.1 cannot be bound now.
pub fn tcp_port_free(port: u16) -> std::io::Result<()> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).map(drop)
}

/// Fails if UDP port `port` on 127.0.0.1 cannot be bound now.
pub fn udp_port_free(port: u16) -> std::io::Result<()> {
    UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).map(drop)
}

/// The largest response accepted from the admin API.
const MAX_RESPONSE: u64 = 4 * 1024 * 1024;

/// `GET path` over HTTP/1.0; returns the status code and the body.
pub async fn http_get(addr: SocketAddr, path: &str, timeout: Duration) -> anyhow::Result<(u16, String)> {
    tokio::time::timeout(timeout, async {
        let mut stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect {addr}"))?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.take(MAX_RESPONSE).read_to_end(&mut raw).await?;
        let text = String::from_utf8_lossy(&raw);
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| anyhow!("malformed HTTP response from {addr}"))?;
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| anyhow!("malformed HTTP status line from {addr}"))?;
        Ok((status, body.to_string()))
    })
    .await
    .map_err(|_| anyhow!("GET http://{addr}{path} timed out"))?
}

/// How many members the node at `admin` reports `up`.
pub async fn members_up(admin: SocketAddr) -> anyhow::Result<usize> {
    let (status, body) = http_get(admin, "/api/v1/cluster", Duration::from_secs(2)).await?;
    if status != 200 {
        bail!("GET /api/v1/cluster on {admin}: HTTP {status}");
    }
    let view: serde_json::Value = serde_json::from_str(&body).context("cluster view is not JSON")?;
    let members = view
        .get("members")
        .and_then(|m| m.as_array())
        .ok_or_else(|| anyhow!("cluster view without members"))?;
    Ok(members
        .iter()
        .filter(|m| m.get("state").and_then(|s| s.as_str()) == Some("up"))
        .count())
}
