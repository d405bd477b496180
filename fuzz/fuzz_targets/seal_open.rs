//! Arbitrary datagrams into `DatagramSealer::open`.
//!
//! Properties: nothing the fuzzer makes up opens (that would be a forgery);
//! sealing the input and opening it gives it back; a sealed datagram with
//! one bit flipped or one byte cut off does not open.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_proto::seal::DatagramSealer;

fuzz_target!(|data: &[u8]| {
    let sealer = DatagramSealer::new(b"fuzz-secret-0123456789", "fuzz");
    assert!(sealer.open(data).is_err(), "a made-up datagram opened");

    let mut nonce = [0u8; 12];
    for (n, b) in nonce.iter_mut().zip(data) {
        *n = *b;
    }
    let sealed = sealer.seal(nonce, data).expect("seal");
    assert_eq!(sealer.open(&sealed).expect("open own datagram"), data);

    let at = data.first().map_or(0, |&b| b as usize) % sealed.len();
    let mut flipped = sealed.clone();
    flipped[at] ^= 1 << (data.len() % 8);
    assert!(sealer.open(&flipped).is_err(), "a bit flip went unnoticed");
    assert!(sealer.open(&sealed[..sealed.len() - 1]).is_err());
});
