//! Arbitrary bytes into the NATS client-protocol parser of weft-nats, and
//! every HPUB header block into the header parser.
//!
//! The parser modules are included by path: they need only `bytes`,
//! `memchr` and `thiserror`, while the weft-nats crate as a whole pulls in
//! the whole node runtime (tokio, rustls, ...), which would make every
//! fuzz build minutes longer under AddressSanitizer.
//!
//! Properties checked beyond "never panics":
//! - feeding the input in chunks (sizes picked by the first byte) yields
//!   exactly the operations and the same final error as feeding it whole;
//! - no payload exceeds `max_payload`, no error repeats differently (an
//!   error is final);
//! - every operation re-encodes to protocol text that parses back to the
//!   same operation;
//! - a header block that parses re-encodes and parses back to the same
//!   headers.
#![no_main]

use bytes::{BufMut, BytesMut};
use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../crates/weft-nats/src/proto/parser.rs"]
mod parser;

#[allow(dead_code)]
#[path = "../../crates/weft-nats/src/proto/headers.rs"]
mod headers;

use parser::{ClientOp, Limits, ParseError, Parser};

const LIMITS: Limits = Limits {
    max_control_line: 128,
    max_payload: 256,
};

fn parse_chunks(input: &[u8], chunk: usize) -> (Vec<ClientOp>, Option<ParseError>) {
    let mut p = Parser::new(LIMITS);
    let mut buf = BytesMut::new();
    let mut ops = Vec::new();
    for piece in input.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            match p.parse(&mut buf) {
                Ok(Some(op)) => ops.push(op),
                Ok(None) => break,
                Err(e) => {
                    assert_eq!(p.parse(&mut buf), Err(e.clone()), "an error is final");
                    return (ops, Some(e));
                }
            }
        }
    }
    (ops, None)
}

fn encode(op: &ClientOp, out: &mut BytesMut) {
    let sp = |out: &mut BytesMut, b: &[u8]| {
        out.put_u8(b' ');
        out.put_slice(b);
    };
    match op {
        ClientOp::Connect(j) => {
            out.put_slice(b"CONNECT ");
            out.put_slice(j);
        }
        ClientOp::Pub { subject, reply, payload } => {
            out.put_slice(b"PUB");
            sp(out, subject);
            if let Some(r) = reply {
                sp(out, r);
            }
            sp(out, payload.len().to_string().as_bytes());
            out.put_slice(b"\r\n");
            out.put_slice(payload);
        }
        ClientOp::HPub { subject, reply, headers, payload } => {
            out.put_slice(b"HPUB");
            sp(out, subject);
            if let Some(r) = reply {
                sp(out, r);
            }
            sp(out, headers.len().to_string().as_bytes());
            sp(out, (headers.len() + payload.len()).to_string().as_bytes());
            out.put_slice(b"\r\n");
            out.put_slice(headers);
            out.put_slice(payload);
        }
        ClientOp::Sub { subject, queue, sid } => {
            out.put_slice(b"SUB");
            sp(out, subject);
            if let Some(q) = queue {
                sp(out, q);
            }
            sp(out, sid);
        }
        ClientOp::Unsub { sid, max } => {
            out.put_slice(b"UNSUB");
            sp(out, sid);
            if let Some(m) = max {
                sp(out, m.to_string().as_bytes());
            }
        }
        ClientOp::Ping => out.put_slice(b"PING"),
        ClientOp::Pong => out.put_slice(b"PONG"),
    }
    out.put_slice(b"\r\n");
}

fuzz_target!(|data: &[u8]| {
    let (chunk, input) = match data.split_first() {
        Some((c, rest)) => (usize::from(*c % 17) + 1, rest),
        None => return,
    };
    let whole = parse_chunks(input, input.len().max(1));
    let split = parse_chunks(input, chunk);
    assert_eq!(whole, split, "split points must not matter");

    let generous = Limits {
        max_control_line: 4096,
        max_payload: 1 << 20,
    };
    for op in &whole.0 {
        match op {
            ClientOp::Pub { payload, .. } => assert!(payload.len() <= LIMITS.max_payload),
            ClientOp::HPub { headers: h, payload, .. } => {
                assert!(h.len() + payload.len() <= LIMITS.max_payload);
                if let Ok(parsed) = headers::parse(h) {
                    let mut again = BytesMut::new();
                    headers::write(&mut again, parsed.iter());
                    assert_eq!(again.len(), headers::encoded_len(parsed.iter()));
                    assert_eq!(headers::parse(&again).as_ref(), Ok(&parsed), "headers round trip");
                }
            }
            _ => {}
        }
        let mut text = BytesMut::new();
        encode(op, &mut text);
        let mut p = Parser::new(generous);
        let back = p.parse(&mut text);
        assert_eq!(back, Ok(Some(op.clone())), "re-encoded op parses back");
        assert!(text.is_empty());
    }
});
