//! Encoders of what the server sends: `MSG`, `HMSG`, `-ERR`, `PING`…
//! Everything is appended to a caller's [`BytesMut`], so many messages
//! share one buffer and one write.

use bytes::{BufMut, BytesMut};

use super::headers;

/// `PING\r\n`.
pub const PING: &[u8] = b"PING\r\n";
/// `PONG\r\n`.
pub const PONG: &[u8] = b"PONG\r\n";
/// `+OK\r\n`.
pub const OK: &[u8] = b"+OK\r\n";

/// Appends the decimal digits of `n`.
pub fn put_uint(out: &mut BytesMut, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put_slice(&digits[i..]);
}

/// Appends `MSG <subject> <sid> [reply] <size>\r\n<payload>\r\n`.
pub fn msg(out: &mut BytesMut, subject: &[u8], sid: &[u8], reply: Option<&[u8]>, payload: &[u8]) {
    out.reserve(subject.len() + sid.len() + reply.map_or(0, <[u8]>::len) + payload.len() + 32);
    out.put_slice(b"MSG ");
    out.put_slice(subject);
    out.put_u8(b' ');
    out.put_slice(sid);
    out.put_u8(b' ');
    if let Some(r) = reply {
        out.put_slice(r);
        out.put_u8(b' ');
    }
    put_uint(out, payload.len() as u64);
    out.put_slice(b"\r\n");
    out.put_slice(payload);
    out.put_slice(b"\r\n");
}

/// Appends `HMSG <subject> <sid> [reply] <hdr size> <total size>\r\n`, the
/// header block of `hdrs`, the payload and `\r\n`.
pub fn hmsg<'a, I>(
    out: &mut BytesMut,
    subject: &[u8],
    sid: &[u8],
    reply: Option<&[u8]>,
    hdrs: I,
    payload: &[u8],
) where
    I: Iterator<Item = &'a (String, String)> + Clone,
{
    let hlen = headers::encoded_len(hdrs.clone());
    out.reserve(subject.len() + sid.len() + reply.map_or(0, <[u8]>::len) + hlen + payload.len() + 48);
    out.put_slice(b"HMSG ");
    out.put_slice(subject);
    out.put_u8(b' ');
    out.put_slice(sid);
    out.put_u8(b' ');
    if let Some(r) = reply {
        out.put_slice(r);
        out.put_u8(b' ');
    }
    put_uint(out, hlen as u64);
    out.put_u8(b' ');
    put_uint(out, (hlen + payload.len()) as u64);
    out.put_slice(b"\r\n");
    headers::write(out, hdrs);
    out.put_slice(payload);
    out.put_slice(b"\r\n");
}

/// The no-responders status message nats-server sends to a requester:
/// `HMSG <reply> <sid> 16 16\r\nNATS/1.0 503\r\n\r\n\r\n`.
pub fn no_responders(out: &mut BytesMut, reply: &[u8], sid: &[u8]) {
    out.put_slice(b"HMSG ");
    out.put_slice(reply);
    out.put_u8(b' ');
    out.put_slice(sid);
    out.put_slice(b" 16 16\r\nNATS/1.0 503\r\n\r\n\r\n");
}

/// Appends `-ERR '<text>'\r\n`.
pub fn err(out: &mut BytesMut, text: &str) {
    out.put_slice(b"-ERR '");
    out.put_slice(text.as_bytes());
    out.put_slice(b"'\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(b: &BytesMut) -> String {
        String::from_utf8_lossy(b).into_owned()
    }

    #[test]
    fn formats_like_nats_server() {
        let mut out = BytesMut::new();
        msg(&mut out, b"a.b", b"7", None, b"hello");
        msg(&mut out, b"a.b", b"7", Some(b"_INBOX.x"), b"");
        assert_eq!(s(&out), "MSG a.b 7 5\r\nhello\r\nMSG a.b 7 _INBOX.x 0\r\n\r\n");
        out.clear();
        let h = [("K".to_string(), "v".to_string())];
        hmsg(&mut out, b"s", b"1", Some(b"r"), h.iter(), b"xy");
        assert_eq!(s(&out), "HMSG s 1 r 18 20\r\nNATS/1.0\r\nK: v\r\n\r\nxy\r\n");
        out.clear();
        no_responders(&mut out, b"_INBOX.a.b", b"3");
        assert_eq!(s(&out), "HMSG _INBOX.a.b 3 16 16\r\nNATS/1.0 503\r\n\r\n\r\n");
        let mut check = BytesMut::new();
        let status = [(headers::STATUS_KEY.to_string(), "503".to_string())];
        hmsg(&mut check, b"_INBOX.a.b", b"3", None, status.iter(), b"");
        assert_eq!(out, check);
        out.clear();
        err(&mut out, "Slow Consumer");
        assert_eq!(s(&out), "-ERR 'Slow Consumer'\r\n");
        out.clear();
        for n in [0u64, 9, 10, 1_048_576, u64::MAX] {
            out.clear();
            put_uint(&mut out, n);
            assert_eq!(s(&out), n.to_string());
        }
    }
}
