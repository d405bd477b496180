//! Arbitrary bytes into both sides of the link handshake.
//!
//! The first input byte picks the case:
//! - bit 0: our role (acceptor or dialer);
//! - bits 1-2: how much of an honest peer's traffic comes before the
//!   fuzzer's bytes (nothing; its preamble; preamble and hello; preamble,
//!   hello and its valid auth), so every step is reachable;
//! - bit 3: as acceptor, accept or reject once the peer is authenticated;
//! - bits 4-7: the size of the chunks the rest is fed in (1 to 16 bytes).
//!
//! Properties: never panics; once failed, stays failed; and without the
//! honest peer's valid proof in the prefix, the fuzzer can never get the
//! handshake to `Authenticated` or `Established` (no forged proof).
#![no_main]

use std::time::{Duration, Instant};

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use weft_proto::NodeId;
use weft_proto::frame::RejectCode;
use weft_proto::handshake::{Handshake, HandshakeConfig, Progress, Role};

fn config(name: &str) -> HandshakeConfig {
    HandshakeConfig {
        cluster: "fuzz".into(),
        local: NodeId::new(name, 1),
        addr: format!("{name}:1"),
        secret: b"fuzz-secret-0123456789".to_vec(),
        max_frame: 4096,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (role, other) = if mode & 1 == 0 {
        (Role::Acceptor, Role::Dialer)
    } else {
        (Role::Dialer, Role::Acceptor)
    };
    let level = (mode >> 1) & 3;
    let accept = mode & 8 == 0;
    let chunk = usize::from(mode >> 4) + 1;
    let now = Instant::now();
    let timeout = Duration::from_secs(5);

    let mut us = Handshake::new(role, config("us"), [1; 32], now, timeout);
    // The honest peer's traffic: preamble and hello at once, then its
    // auth once it has read ours.
    let mut them = Handshake::new(other, config("them"), [2; 32], now, timeout);
    let ours = us.take_transmit().expect("our preamble and hello");
    let their_hello = them.take_transmit().expect("their preamble and hello");
    let mut to_them = BytesMut::from(&ours[..]);
    assert_eq!(them.handle_input(&mut to_them), Ok(Progress::Pending));
    let their_auth = them.take_transmit().expect("their auth");

    let mut input = BytesMut::new();
    match level {
        0 => {}
        1 => input.extend_from_slice(&their_hello[..5]),
        2 => input.extend_from_slice(&their_hello),
        _ => {
            input.extend_from_slice(&their_hello);
            input.extend_from_slice(&their_auth);
        }
    }
    let honest_proof = level == 3;

    let mut failed = false;
    let mut decided = false;
    let mut feed = |input: &mut BytesMut, us: &mut Handshake| {
        let r = us.handle_input(input);
        let _ = us.take_transmit();
        match r {
            Err(_) => failed = true,
            Ok(p) => {
                assert!(!failed, "a failed handshake came back to life: {p:?}");
                match p {
                    Progress::Pending => {}
                    Progress::Authenticated(info) => {
                        assert!(honest_proof, "authenticated without a valid proof");
                        assert_eq!(role, Role::Acceptor);
                        assert_eq!(info.node.name, "them");
                        assert!(!decided);
                        decided = true;
                        if accept {
                            assert!(us.accept().is_ok());
                        } else {
                            let _ = us.reject(RejectCode::Duplicate, "fuzz");
                            failed = true;
                        }
                        let _ = us.take_transmit();
                    }
                    Progress::Established(info) => {
                        assert!(honest_proof, "established without a valid proof");
                        assert_eq!(info.node.name, "them");
                    }
                }
            }
        }
    };

    feed(&mut input, &mut us);
    for piece in rest.chunks(chunk) {
        input.extend_from_slice(piece);
        feed(&mut input, &mut us);
    }
    let late = us.handle_timeout(now + timeout);
    if failed {
        assert!(late.is_ok(), "a failed handshake does not time out again");
    }
});
