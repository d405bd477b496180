//! The incremental, zero-copy parser of the NATS client protocol.
//!
//! Sans-IO: bytes in ([`BytesMut`] the caller reads into), operations out.
//! Every subject, sid, header block and payload handed out is a [`Bytes`]
//! view of the read buffer, never a copy. The parser keeps only a few
//! integers of state between calls, so a protocol line or a payload may
//! arrive split anywhere.
//!
//! Limits are checked before anything is buffered: a control line longer
//! than `max_control_line` is refused as soon as that many bytes arrived
//! without a line end, and a payload larger than `max_payload` is refused
//! from its `PUB`/`HPUB` line, before its bytes are read.

use bytes::{Buf, Bytes, BytesMut};

/// Operations a client sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientOp {
    /// `CONNECT {json}`: the raw JSON options.
    Connect(Bytes),
    /// `PUB <subject> [reply] <size>` and its payload.
    Pub {
        /// Publish subject (not validated here).
        subject: Bytes,
        /// Reply subject, if given.
        reply: Option<Bytes>,
        /// The payload.
        payload: Bytes,
    },
    /// `HPUB <subject> [reply] <header size> <total size>`, headers and
    /// payload.
    HPub {
        /// Publish subject (not validated here).
        subject: Bytes,
        /// Reply subject, if given.
        reply: Option<Bytes>,
        /// The header block, `NATS/1.0…\r\n\r\n` (not validated here).
        headers: Bytes,
        /// The payload after the header block.
        payload: Bytes,
    },
    /// `SUB <subject> [queue] <sid>`.
    Sub {
        /// Subscription pattern (not validated here).
        subject: Bytes,
        /// Queue group, if given.
        queue: Option<Bytes>,
        /// Client-chosen subscription id.
        sid: Bytes,
    },
    /// `UNSUB <sid> [max]`.
    Unsub {
        /// The subscription id.
        sid: Bytes,
        /// Unsubscribe after this many messages in total.
        max: Option<u64>,
    },
    /// `PING`.
    Ping,
    /// `PONG`.
    Pong,
}

/// Why the byte stream is not valid protocol. Every variant is fatal: the
/// server answers [`ParseError::nats_message`] and closes the connection.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// An operation name the server does not know (or one only servers
    /// send), or an empty line.
    #[error("unknown protocol operation")]
    UnknownOp,
    /// Wrong number of arguments or a malformed size/count for a known
    /// operation.
    #[error("malformed arguments for {0}")]
    BadArgs(&'static str),
    /// A control line longer than the limit.
    #[error("control line longer than {max} bytes")]
    ControlLineTooLong {
        /// The limit in force.
        max: usize,
    },
    /// A payload (headers included) larger than the limit.
    #[error("payload of {size} bytes exceeds the maximum of {max}")]
    PayloadTooLarge {
        /// The announced size.
        size: usize,
        /// The limit in force.
        max: usize,
    },
    /// The bytes after a payload were not `\r\n`.
    #[error("payload not followed by CRLF")]
    BadPayloadEnd,
}

impl ParseError {
    /// The `-ERR` text nats-server sends for this error.
    pub fn nats_message(&self) -> &'static str {
        match self {
            ParseError::UnknownOp | ParseError::BadArgs(_) | ParseError::BadPayloadEnd => {
                "Unknown Protocol Operation"
            }
            ParseError::ControlLineTooLong { .. } => "maximum control line exceeded",
            ParseError::PayloadTooLarge { .. } => "Maximum Payload Violation",
        }
    }

    /// A short static label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            ParseError::UnknownOp => "unknown_op",
            ParseError::BadArgs(_) => "bad_args",
            ParseError::ControlLineTooLong { .. } => "max_control_line",
            ParseError::PayloadTooLarge { .. } => "max_payload",
            ParseError::BadPayloadEnd => "bad_payload_end",
        }
    }
}

/// Limits the parser enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest control line, bytes, without its line end (nats-server:
    /// 4096).
    pub max_control_line: usize,
    /// Largest payload, headers included (nats-server: 1 MiB).
    pub max_payload: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_control_line: 4096,
            max_payload: 1024 * 1024,
        }
    }
}

/// A publish waiting for its payload.
#[derive(Debug)]
struct PendingPub {
    subject: Bytes,
    reply: Option<Bytes>,
    /// Header block length (`HPUB`), `None` for `PUB`.
    header_len: Option<usize>,
    total: usize,
}

#[derive(Debug)]
enum State {
    /// Looking for the end of a control line; `scanned` bytes at the
    /// front of the buffer are known to hold no `\n`.
    Line { scanned: usize },
    /// Waiting for `total + 2` bytes of payload and CRLF.
    Payload(PendingPub),
    /// A previous call failed: the stream is unusable.
    Failed(ParseError),
}

/// The incremental parser. One per connection.
#[derive(Debug)]
pub struct Parser {
    limits: Limits,
    state: State,
}

impl Parser {
    /// A parser enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            state: State::Line { scanned: 0 },
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Takes the next complete operation off the front of `buf`.
    ///
    /// `Ok(None)`: more bytes are needed (everything consumed so far is
    /// remembered; call again after appending to `buf`). An error is
    /// final: every later call returns it again.
    pub fn parse(&mut self, buf: &mut BytesMut) -> Result<Option<ClientOp>, ParseError> {
        loop {
            match &mut self.state {
                State::Failed(e) => return Err(e.clone()),
                State::Payload(p) => {
                    let need = p.total + 2;
                    if buf.len() < need {
                        return Ok(None);
                    }
                    if &buf[p.total..need] != b"\r\n" {
                        return Err(self.fail(ParseError::BadPayloadEnd));
                    }
                    let State::Payload(p) = std::mem::replace(&mut self.state, State::Line { scanned: 0 })
                    else {
                        unreachable!("state checked above");
                    };
                    let mut body = buf.split_to(p.total).freeze();
                    buf.advance(2);
                    return Ok(Some(match p.header_len {
                        None => ClientOp::Pub {
                            subject: p.subject,
                            reply: p.reply,
                            payload: body,
                        },
                        Some(h) => {
                            let headers = body.split_to(h);
                            ClientOp::HPub {
                                subject: p.subject,
                                reply: p.reply,
                                headers,
                                payload: body,
                            }
                        }
                    }));
                }
                State::Line { scanned } => {
                    let max = self.limits.max_control_line;
                    // A line may be `max` bytes plus "\r\n".
                    let window = buf.len().min(max + 2);
                    let found = memchr::memchr(b'\n', &buf[*scanned..window]).map(|i| i + *scanned);
                    let Some(end) = found else {
                        if buf.len() >= max + 2 {
                            return Err(self.fail(ParseError::ControlLineTooLong { max }));
                        }
                        *scanned = window;
                        return Ok(None);
                    };
                    let mut line = buf.split_to(end + 1).freeze();
                    line.truncate(end);
                    if line.last() == Some(&b'\r') {
                        line.truncate(end - 1);
                    }
                    if line.len() > max {
                        return Err(self.fail(ParseError::ControlLineTooLong { max }));
                    }
                    self.state = State::Line { scanned: 0 };
                    match self.line(line) {
                        Ok(Some(op)) => return Ok(Some(op)),
                        // A publish line: its payload comes next.
                        Ok(None) => continue,
                        Err(e) => return Err(self.fail(e)),
                    }
                }
            }
        }
    }

    fn fail(&mut self, e: ParseError) -> ParseError {
        self.state = State::Failed(e.clone());
        e
    }

    /// Interprets one control line (without its line end). `Ok(None)`
    /// means a publish whose payload is now awaited.
    fn line(&mut self, line: Bytes) -> Result<Option<ClientOp>, ParseError> {
        let op_end = line
            .iter()
            .position(|&b| b == b' ' || b == b'\t')
            .unwrap_or(line.len());
        let op = &line[..op_end];
        let view = |r: std::ops::Range<usize>| line.slice(r);
        if op.eq_ignore_ascii_case(b"PUB") {
            let mut a = Args::new(&line, op_end);
            let (subject, reply, size) = match (a.next(), a.next(), a.next(), a.next()) {
                (Some(s), Some(n), None, None) => (s, None, n),
                (Some(s), Some(r), Some(n), None) => (s, Some(r), n),
                _ => return Err(ParseError::BadArgs("PUB")),
            };
            let total = parse_size(&line[size]).ok_or(ParseError::BadArgs("PUB"))?;
            self.expect_payload(view(subject), reply.map(view), None, total)?;
            Ok(None)
        } else if op.eq_ignore_ascii_case(b"HPUB") {
            let mut a = Args::new(&line, op_end);
            let (subject, reply, hsize, tsize) = match (a.next(), a.next(), a.next(), a.next(), a.next()) {
                (Some(s), Some(h), Some(t), None, None) => (s, None, h, t),
                (Some(s), Some(r), Some(h), Some(t), None) => (s, Some(r), h, t),
                _ => return Err(ParseError::BadArgs("HPUB")),
            };
            let header_len = parse_size(&line[hsize]).ok_or(ParseError::BadArgs("HPUB"))?;
            let total = parse_size(&line[tsize]).ok_or(ParseError::BadArgs("HPUB"))?;
            if header_len > total {
                return Err(ParseError::BadArgs("HPUB"));
            }
            self.expect_payload(view(subject), reply.map(view), Some(header_len), total)?;
            Ok(None)
        } else if op.eq_ignore_ascii_case(b"SUB") {
            let mut a = Args::new(&line, op_end);
            match (a.next(), a.next(), a.next(), a.next()) {
                (Some(subject), Some(sid), None, None) => Ok(Some(ClientOp::Sub {
                    subject: view(subject),
                    queue: None,
                    sid: view(sid),
                })),
                (Some(subject), Some(q), Some(sid), None) => Ok(Some(ClientOp::Sub {
                    subject: view(subject),
                    queue: Some(view(q)),
                    sid: view(sid),
                })),
                _ => Err(ParseError::BadArgs("SUB")),
            }
        } else if op.eq_ignore_ascii_case(b"UNSUB") {
            let mut a = Args::new(&line, op_end);
            match (a.next(), a.next(), a.next()) {
                (Some(sid), None, None) => Ok(Some(ClientOp::Unsub {
                    sid: view(sid),
                    max: None,
                })),
                (Some(sid), Some(max), None) => {
                    let max = parse_size(&line[max]).ok_or(ParseError::BadArgs("UNSUB"))?;
                    Ok(Some(ClientOp::Unsub {
                        sid: view(sid),
                        max: Some(max as u64),
                    }))
                }
                _ => Err(ParseError::BadArgs("UNSUB")),
            }
        } else if op.eq_ignore_ascii_case(b"PING") {
            no_args(&line[op_end..], "PING")?;
            Ok(Some(ClientOp::Ping))
        } else if op.eq_ignore_ascii_case(b"PONG") {
            no_args(&line[op_end..], "PONG")?;
            Ok(Some(ClientOp::Pong))
        } else if op.eq_ignore_ascii_case(b"CONNECT") {
            let json = trim(line.slice(op_end..));
            if json.is_empty() {
                return Err(ParseError::BadArgs("CONNECT"));
            }
            Ok(Some(ClientOp::Connect(json)))
        } else {
            Err(ParseError::UnknownOp)
        }
    }

    fn expect_payload(
        &mut self,
        subject: Bytes,
        reply: Option<Bytes>,
        header_len: Option<usize>,
        total: usize,
    ) -> Result<(), ParseError> {
        if total > self.limits.max_payload {
            return Err(ParseError::PayloadTooLarge {
                size: total,
                max: self.limits.max_payload,
            });
        }
        self.state = State::Payload(PendingPub {
            subject,
            reply,
            header_len,
            total,
        });
        Ok(())
    }
}

fn is_space(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn trim(b: Bytes) -> Bytes {
    let start = b.iter().position(|&c| !is_space(c)).unwrap_or(b.len());
    let end = b.iter().rposition(|&c| !is_space(c)).map_or(start, |i| i + 1);
    b.slice(start..end.max(start))
}

fn no_args(rest: &[u8], op: &'static str) -> Result<(), ParseError> {
    if rest.iter().all(|&b| is_space(b)) {
        Ok(())
    } else {
        Err(ParseError::BadArgs(op))
    }
}

/// A decimal size or count: digits only, at most 18 of them.
fn parse_size(b: &[u8]) -> Option<usize> {
    if b.is_empty() || b.len() > 18 {
        return None;
    }
    let mut n: usize = 0;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n * 10 + usize::from(c - b'0');
    }
    Some(n)
}

/// Whitespace-separated arguments of a line, as byte ranges: only the
/// arguments an operation keeps (subject, reply, sid...) become `Bytes`
/// views, so sizes and counts cost no reference count traffic.
struct Args<'a> {
    line: &'a [u8],
    pos: usize,
}

impl<'a> Args<'a> {
    fn new(line: &'a [u8], pos: usize) -> Self {
        Self { line, pos }
    }
}

impl Iterator for Args<'_> {
    type Item = std::ops::Range<usize>;
    fn next(&mut self) -> Option<std::ops::Range<usize>> {
        let b = self.line;
        let mut i = self.pos;
        while i < b.len() && is_space(b[i]) {
            i += 1;
        }
        if i == b.len() {
            self.pos = i;
            return None;
        }
        let start = i;
        while i < b.len() && !is_space(b[i]) {
            i += 1;
        }
        self.pos = i;
        Some(start..i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(input: &[u8], limits: Limits) -> (Vec<ClientOp>, Option<ParseError>) {
        let mut p = Parser::new(limits);
        let mut buf = BytesMut::from(input);
        let mut ops = Vec::new();
        loop {
            match p.parse(&mut buf) {
                Ok(Some(op)) => ops.push(op),
                Ok(None) => return (ops, None),
                Err(e) => return (ops, Some(e)),
            }
        }
    }

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn every_operation_case_insensitive() {
        let input = b"connect {\"verbose\":false}\r\npub a.b 5\r\nhello\r\nPuB a.b r.1 0\r\n\r\n\
hpub h 12 14\r\nNATS/1.0\r\n\r\nhi\r\nSUB x.* 1\r\nsub x.> q 2\r\nUnSub 1\r\nunsub 2 10\r\nping\r\nPONG\n";
        let (ops, err) = all(input, Limits::default());
        assert_eq!(err, None);
        assert_eq!(
            ops,
            vec![
                ClientOp::Connect(b("{\"verbose\":false}")),
                ClientOp::Pub {
                    subject: b("a.b"),
                    reply: None,
                    payload: b("hello")
                },
                ClientOp::Pub {
                    subject: b("a.b"),
                    reply: Some(b("r.1")),
                    payload: b("")
                },
                ClientOp::HPub {
                    subject: b("h"),
                    reply: None,
                    headers: b("NATS/1.0\r\n\r\n"),
                    payload: b("hi")
                },
                ClientOp::Sub {
                    subject: b("x.*"),
                    queue: None,
                    sid: b("1")
                },
                ClientOp::Sub {
                    subject: b("x.>"),
                    queue: Some(b("q")),
                    sid: b("2")
                },
                ClientOp::Unsub {
                    sid: b("1"),
                    max: None
                },
                ClientOp::Unsub {
                    sid: b("2"),
                    max: Some(10)
                },
                ClientOp::Ping,
                ClientOp::Pong,
            ]
        );
    }

    #[test]
    fn byte_at_a_time_gives_the_same_ops() {
        let input = b"PUB a 3\r\nabc\r\nHPUB b r 12 15\r\nNATS/1.0\r\n\r\nxyz\r\nPING\r\nSUB a b c\r\n";
        let (whole, _) = all(input, Limits::default());
        let mut p = Parser::new(Limits::default());
        let mut buf = BytesMut::new();
        let mut ops = Vec::new();
        for &byte in input.iter() {
            buf.extend_from_slice(&[byte]);
            while let Some(op) = p.parse(&mut buf).expect("valid") {
                ops.push(op);
            }
        }
        assert_eq!(ops, whole);
        assert_eq!(ops.len(), 4);
    }

    #[test]
    fn errors_are_the_nats_server_ones() {
        let small = Limits {
            max_control_line: 16,
            max_payload: 8,
        };
        let cases: &[(&[u8], &str)] = &[
            (b"FOO bar\r\n", "Unknown Protocol Operation"),
            (b"\r\n", "Unknown Protocol Operation"),
            (b"MSG a 1 2\r\n", "Unknown Protocol Operation"),
            (b"PUB a\r\n", "Unknown Protocol Operation"),
            (b"PUB a x\r\n", "Unknown Protocol Operation"),
            (b"HPUB a 5 3\r\n", "Unknown Protocol Operation"),
            (b"PING x\r\n", "Unknown Protocol Operation"),
            (b"PUB a 2\r\nabXY", "Unknown Protocol Operation"),
            (
                b"SUB aaaaaaaaaaaaaaaaaaaaaaa 1\r\n",
                "maximum control line exceeded",
            ),
            (
                b"SUB aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                "maximum control line exceeded",
            ),
            (b"PUB a 9\r\n", "Maximum Payload Violation"),
            (b"HPUB a 2 9\r\n", "Maximum Payload Violation"),
        ];
        for (input, want) in cases {
            let (_, err) = all(input, small);
            let err = err.unwrap_or_else(|| panic!("{:?} must fail", String::from_utf8_lossy(input)));
            assert_eq!(err.nats_message(), *want, "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn an_error_is_final() {
        let mut p = Parser::new(Limits::default());
        let mut buf = BytesMut::from(&b"BAD\r\n"[..]);
        assert_eq!(p.parse(&mut buf), Err(ParseError::UnknownOp));
        buf.extend_from_slice(b"PING\r\n");
        assert_eq!(p.parse(&mut buf), Err(ParseError::UnknownOp));
    }

    #[test]
    fn a_line_of_exactly_the_limit_passes() {
        let limits = Limits {
            max_control_line: 8,
            max_payload: 8,
        };
        let (ops, err) = all(b"SUB a 12\r\n", limits);
        assert_eq!(err, None);
        assert_eq!(ops.len(), 1);
        let (_, err) = all(b"SUB a 123\r\n", limits);
        assert!(matches!(err, Some(ParseError::ControlLineTooLong { .. })));
    }

    #[test]
    fn payload_views_share_the_read_buffer() {
        let mut p = Parser::new(Limits::default());
        let mut buf = BytesMut::from(&b"PUB a 4\r\nbody\r\n"[..]);
        let base = buf.as_ptr() as usize;
        let Some(ClientOp::Pub { payload, .. }) = p.parse(&mut buf).expect("ok") else {
            panic!("a pub");
        };
        assert_eq!(payload.as_ptr() as usize, base + 9, "no copy");
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_split_points_do_not_matter(
            input in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256),
            cut in 0usize..256,
        ) {
            let limits = Limits { max_control_line: 64, max_payload: 64 };
            let whole = all(&input, limits);
            let cut = cut.min(input.len());
            let mut p = Parser::new(limits);
            let mut buf = BytesMut::from(&input[..cut]);
            let mut ops = Vec::new();
            let mut err = None;
            loop {
                match p.parse(&mut buf) {
                    Ok(Some(op)) => ops.push(op),
                    Ok(None) => break,
                    Err(e) => { err = Some(e); break; }
                }
            }
            if err.is_none() {
                buf.extend_from_slice(&input[cut..]);
                loop {
                    match p.parse(&mut buf) {
                        Ok(Some(op)) => ops.push(op),
                        Ok(None) => break,
                        Err(e) => { err = Some(e); break; }
                    }
                }
            }
            proptest::prop_assert_eq!(ops, whole.0);
            proptest::prop_assert_eq!(err, whole.1);
        }
    }
}
