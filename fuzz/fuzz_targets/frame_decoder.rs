//! Arbitrary bytes into the frame decoder and the preamble reader.
//!
//! Properties checked beyond "never panics":
//! - a decoded frame re-encodes within the same maximum and decodes back
//!   to the same frame;
//! - decoding the input fed one byte at a time yields exactly the frames
//!   (and the same final error or wait) as decoding it whole;
//! - `Ok(None)` consumes nothing.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use weft_proto::codec::{MIN_MAX_FRAME, decode_preamble};
use weft_proto::{Frame, FrameDecoder, FrameError};

/// Small, so the oversized path and the limit itself are reachable.
const MAX: usize = MIN_MAX_FRAME;

fn decode_all(buf: &mut BytesMut, dec: &mut FrameDecoder, out: &mut Vec<Frame>) -> Option<FrameError> {
    loop {
        let before = buf.len();
        match dec.decode(buf) {
            Ok(Some(frame)) => {
                assert!(buf.len() < before, "a frame consumes bytes");
                out.push(frame);
            }
            Ok(None) => {
                assert_eq!(buf.len(), before, "waiting consumes nothing");
                return None;
            }
            Err(e) => return Some(e),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // Whole.
    let mut buf = BytesMut::from(data);
    let mut dec = FrameDecoder::new(MAX);
    let mut whole = Vec::new();
    let whole_end = decode_all(&mut buf, &mut dec, &mut whole);

    for frame in &whole {
        let mut enc = BytesMut::new();
        frame
            .encode_into(MAX, &mut enc)
            .expect("a decoded frame re-encodes within the maximum");
        let again = FrameDecoder::new(MAX)
            .decode(&mut enc)
            .expect("a re-encoded frame decodes")
            .expect("a re-encoded frame is complete");
        assert_eq!(&again, frame);
        assert!(enc.is_empty());
    }

    // One byte at a time.
    let mut buf = BytesMut::new();
    let mut dec = FrameDecoder::new(MAX);
    let mut pieces = Vec::new();
    let mut pieces_end = None;
    for &b in data {
        buf.extend_from_slice(&[b]);
        if let Some(e) = decode_all(&mut buf, &mut dec, &mut pieces) {
            pieces_end = Some(e);
            break;
        }
    }
    assert_eq!(pieces, whole, "incremental decoding agrees with whole");
    assert_eq!(pieces_end, whole_end, "incremental decoding ends alike");

    // The preamble reader.
    let mut p = BytesMut::from(data);
    let len = p.len();
    match decode_preamble(&mut p) {
        Ok(Some(_)) => assert_eq!(p.len(), len - 5),
        Ok(None) => assert_eq!(p.len(), len),
        Err(_) => {}
    }
});
