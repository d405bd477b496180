//! NATS header blocks (`NATS/1.0[ status]\r\nKey: Value\r\n…\r\n`) and
//! weft's ordered `(key, value)` headers.
//!
//! A status line (`NATS/1.0 503 No Responders`) is kept as the
//! pseudo-header [`STATUS_KEY`] in first position, so a block survives the
//! round trip through weft unchanged (except that the spaces after each
//! `:` are normalised to one).

use bytes::{BufMut, BytesMut};

/// Pseudo-header carrying the status of a header block's first line.
pub const STATUS_KEY: &str = ":status";

/// Pseudo-header (empty value) marking a message published with an empty
/// header block, `NATS/1.0\r\n\r\n`: weft's empty headers mean "no
/// block", and nats-server delivers such a message as `HMSG` with the
/// block. Stripped on delivery to NATS clients; native weft subscribers
/// see it.
pub const EMPTY_BLOCK_KEY: &str = ":weft-nats-empty-block";

const VERSION: &[u8] = b"NATS/1.0";

/// Why a header block was refused (the message is dropped, the connection
/// stays open).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The block does not start with `NATS/1.0`.
    #[error("header block does not start with NATS/1.0")]
    NoVersion,
    /// The block does not end with an empty line.
    #[error("header block does not end with CRLF CRLF")]
    Unterminated,
    /// A line without `:`.
    #[error("header line without ':'")]
    NoColon,
    /// Keys and values must be UTF-8.
    #[error("header is not UTF-8")]
    NotUtf8,
}

/// Parses a header block into ordered headers.
pub fn parse(block: &[u8]) -> Result<Vec<(String, String)>, HeaderError> {
    let rest = block.strip_prefix(VERSION).ok_or(HeaderError::NoVersion)?;
    let body = rest.strip_suffix(b"\r\n\r\n").ok_or(HeaderError::Unterminated)?;
    let mut lines = body
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let mut out = Vec::new();
    let first = lines.next().unwrap_or_default();
    let status = utf8(first)?.trim();
    if !status.is_empty() {
        // Anything after the version must be separated by a space.
        if !first.starts_with(b" ") && !first.starts_with(b"\t") {
            return Err(HeaderError::NoVersion);
        }
        out.push((STATUS_KEY.to_string(), status.to_string()));
    }
    for line in lines {
        if line.is_empty() {
            continue;
        }
        let colon = line.iter().position(|&b| b == b':').ok_or(HeaderError::NoColon)?;
        let key = utf8(&line[..colon])?.trim();
        let value = utf8(&line[colon + 1..])?.trim();
        out.push((key.to_string(), value.to_string()));
    }
    Ok(out)
}

fn utf8(b: &[u8]) -> Result<&str, HeaderError> {
    std::str::from_utf8(b).map_err(|_| HeaderError::NotUtf8)
}

/// The encoded length of `headers` (what [`write`] appends).
pub fn encoded_len<'a>(headers: impl Iterator<Item = &'a (String, String)>) -> usize {
    let mut n = VERSION.len() + 4;
    for (i, (k, v)) in headers.enumerate() {
        if i == 0 && k == STATUS_KEY {
            n += 1 + v.len();
        } else {
            n += k.len() + 2 + v.len() + 2;
        }
    }
    n
}

/// Appends the header block of `headers` to `out`.
pub fn write<'a>(out: &mut BytesMut, headers: impl Iterator<Item = &'a (String, String)>) {
    out.put_slice(VERSION);
    let mut first = true;
    for (k, v) in headers {
        if first && k == STATUS_KEY {
            out.put_u8(b' ');
            out.put_slice(v.as_bytes());
            out.put_slice(b"\r\n");
        } else {
            if first {
                out.put_slice(b"\r\n");
            }
            out.put_slice(k.as_bytes());
            out.put_slice(b": ");
            out.put_slice(v.as_bytes());
            out.put_slice(b"\r\n");
        }
        first = false;
    }
    if first {
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(h: &[(String, String)]) -> Vec<u8> {
        let mut out = BytesMut::new();
        write(&mut out, h.iter());
        assert_eq!(out.len(), encoded_len(h.iter()));
        out.to_vec()
    }

    fn kv(k: &str, v: &str) -> (String, String) {
        (k.to_string(), v.to_string())
    }

    #[test]
    fn round_trips() {
        for h in [
            vec![],
            vec![kv("A", "1"), kv("a", "2"), kv("B", "x y")],
            vec![kv(STATUS_KEY, "503")],
            vec![kv(STATUS_KEY, "404 No Messages"), kv("K", "v")],
        ] {
            let block = enc(&h);
            assert_eq!(
                parse(&block).expect("parses"),
                h,
                "{}",
                String::from_utf8_lossy(&block)
            );
        }
        assert_eq!(enc(&[kv(STATUS_KEY, "503")]), b"NATS/1.0 503\r\n\r\n");
        assert_eq!(enc(&[]), b"NATS/1.0\r\n\r\n");
        assert_eq!(enc(&[kv("K", "v")]), b"NATS/1.0\r\nK: v\r\n\r\n");
    }

    #[test]
    fn refuses_malformed_blocks() {
        assert_eq!(parse(b"HTTP/1.1\r\n\r\n"), Err(HeaderError::NoVersion));
        assert_eq!(parse(b"NATS/1.0\r\nK: v\r\n"), Err(HeaderError::Unterminated));
        assert_eq!(parse(b"NATS/1.0\r\nnocolon\r\n\r\n"), Err(HeaderError::NoColon));
        assert_eq!(parse(b"NATS/1.0\r\nK: \xff\r\n\r\n"), Err(HeaderError::NotUtf8));
        assert_eq!(parse(b"NATS/1.0\r\nK:v\r\n\r\n"), Ok(vec![kv("K", "v")]));
    }
}
