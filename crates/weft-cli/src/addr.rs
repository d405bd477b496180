//! `HOST:PORT` parsing and name resolution for addresses given on the
//! command line or in the configuration file.

use std::net::{SocketAddr, ToSocketAddrs};

use anyhow::{Context, anyhow, bail};

/// Parses `HOST:PORT` (an IP literal, `[v6]:port`, or a hostname that is
/// resolved now) into one socket address, preferring IPv4 when a name
/// resolves to both families. `what` names the setting in errors.
pub fn resolve(what: &str, text: &str) -> anyhow::Result<SocketAddr> {
    let text = text.trim();
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let (host, port) = split_host_port(text)
        .ok_or_else(|| anyhow!("{what} {text:?}: expected HOST:PORT (for example 127.0.0.1:7420)"))?;
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .with_context(|| format!("{what} {text:?}: cannot resolve host {host:?}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| anyhow!("{what} {text:?}: host {host:?} has no addresses"))
}

/// Splits `host:port` with a non-empty host (no bare IPv6) and a valid port.
fn split_host_port(text: &str) -> Option<(&str, u16)> {
    let (host, port) = text.rsplit_once(':')?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() || host.contains(char::is_whitespace) || (host.contains(':') && !text.starts_with('['))
    {
        return None;
    }
    let port = port.parse::<u16>().ok()?;
    Some((host, port))
}

/// Resolves every entry of a list of `HOST:PORT` strings.
pub fn resolve_all(what: &str, texts: &[String]) -> anyhow::Result<Vec<SocketAddr>> {
    texts.iter().map(|t| resolve(what, t)).collect()
}

/// Fails when `addr` has port 0 where a fixed port is needed.
pub fn require_port(what: &str, addr: SocketAddr) -> anyhow::Result<SocketAddr> {
    if addr.port() == 0 {
        bail!("{what} {addr}: port 0 is not allowed here");
    }
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_and_names() {
        assert_eq!(
            resolve("x", "127.0.0.1:7420").unwrap(),
            "127.0.0.1:7420".parse().unwrap()
        );
        assert_eq!(resolve("x", "[::1]:80").unwrap(), "[::1]:80".parse().unwrap());
        assert_eq!(resolve("x", "localhost:81").unwrap().port(), 81);
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "nope",
            "127.0.0.1",
            "127.0.0.1:",
            "127.0.0.1:99999",
            ":80",
            "::1:80",
            "a b:1",
        ] {
            let err = resolve("listen", bad).unwrap_err().to_string();
            assert!(err.contains("listen"), "{bad}: {err}");
        }
    }
}
