//! The frame format and the connection preamble.
//!
//! ```text
//! preamble (once per direction):  "WEFT" (4 bytes)  version (u8)
//! frame:   len: u32 BE | kind: u8 | hlen: u16 BE | header: hlen bytes | payload
//!          len counts every byte after itself: 3 + hlen + payload length
//! ```
//! The header is postcard-encoded; its type is fixed by `kind`. A decoder
//! ignores header bytes after the fields it knows (so fields can only be
//! appended, see `docs/wire.md`). The payload is handed out as a `Bytes`
//! view of the receive buffer, without a copy.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Serialize, de::DeserializeOwned};

use crate::frame::{Frame, Header, kind};

/// The four magic bytes every weft connection starts with.
pub const MAGIC: [u8; 4] = *b"WEFT";
/// The protocol version this build speaks. Bumped only for changes that old
/// nodes cannot skip (see `docs/wire.md`).
pub const PROTOCOL_VERSION: u8 = 1;
/// Bytes in the preamble: magic plus version.
pub const PREAMBLE_LEN: usize = 5;
/// Bytes before the header: length, kind and header length.
pub const FRAME_PREFIX_LEN: usize = 7;
/// Default largest frame accepted or sent (bytes after the length field).
pub const DEFAULT_MAX_FRAME: usize = 16 * 1024 * 1024;
/// Smallest `max_frame` a node may be configured with: room for handshakes.
pub const MIN_MAX_FRAME: usize = 4096;

/// Why bytes could not be decoded into a frame, or a frame not encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The length prefix announces more than the configured maximum. The
    /// connection must be closed: the stream cannot be resynchronised
    /// without reading the whole oversized frame.
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    Oversized {
        /// Announced length.
        len: usize,
        /// Configured maximum.
        max: usize,
    },
    /// The length prefix is too small to hold kind and header length, or
    /// the header length runs past the frame.
    #[error("malformed frame: {0}")]
    Malformed(&'static str),
    /// A known kind whose header bytes do not decode.
    #[error("header of {kind} frame does not decode: {detail}")]
    BadHeader {
        /// Name of the frame kind.
        kind: &'static str,
        /// postcard's explanation.
        detail: String,
    },
    /// The connection does not start with the `WEFT` magic bytes.
    #[error("connection does not start with the weft magic (got {0:02x?})")]
    BadMagic([u8; 4]),
    /// An encoded header would exceed 65535 bytes.
    #[error("header of {0} bytes is too large to encode")]
    HeaderTooLarge(usize),
}

impl FrameError {
    /// A short static label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            FrameError::Oversized { .. } => "oversized",
            FrameError::Malformed(_) => "malformed",
            FrameError::BadHeader { .. } => "bad_header",
            FrameError::BadMagic(_) => "bad_magic",
            FrameError::HeaderTooLarge(_) => "header_too_large",
        }
    }
}

/// Writes the 5-byte preamble (magic and our version) into `dst`.
pub fn encode_preamble(dst: &mut BytesMut) {
    dst.put_slice(&MAGIC);
    dst.put_u8(PROTOCOL_VERSION);
}

/// Reads the peer's preamble from the front of `src`.
///
/// Returns `Ok(None)` while fewer than 5 bytes are buffered, the peer's
/// version once the magic matched (the bytes are consumed), and
/// [`FrameError::BadMagic`] for anything else (an HTTP request, noise).
/// The magic is checked as soon as any byte of it is present, so garbage is
/// refused without waiting for more.
pub fn decode_preamble(src: &mut BytesMut) -> Result<Option<u8>, FrameError> {
    let seen = src.len().min(MAGIC.len());
    if src[..seen] != MAGIC[..seen] {
        let mut got = [0u8; 4];
        got[..seen].copy_from_slice(&src[..seen]);
        return Err(FrameError::BadMagic(got));
    }
    if src.len() < PREAMBLE_LEN {
        return Ok(None);
    }
    let version = src[4];
    src.advance(PREAMBLE_LEN);
    Ok(Some(version))
}

/// A frame encoded for sending: a small head (prefix and header) and the
/// payload, kept apart so a large payload is written without being copied.
#[derive(Clone, Debug)]
pub struct EncodedFrame {
    /// Length prefix, kind, header length and header.
    pub head: Bytes,
    /// The payload, unchanged.
    pub payload: Bytes,
    /// Whether the frame belongs to the control class.
    pub control: bool,
}

impl EncodedFrame {
    /// Total bytes this frame occupies on the wire.
    pub fn wire_len(&self) -> usize {
        self.head.len() + self.payload.len()
    }
}

fn put_header<T: Serialize>(dst: &mut BytesMut, value: &T) -> Result<(), FrameError> {
    let start = dst.len();
    dst.put_u16(0);
    let mut writer = dst.writer();
    postcard::to_io(value, &mut writer).map_err(|e| FrameError::BadHeader {
        kind: "outgoing",
        detail: e.to_string(),
    })?;
    let dst = writer.into_inner();
    let hlen = dst.len() - start - 2;
    let hlen16 = u16::try_from(hlen).map_err(|_| FrameError::HeaderTooLarge(hlen))?;
    dst[start..start + 2].copy_from_slice(&hlen16.to_be_bytes());
    Ok(())
}

fn encode_head(header: &Header, payload_len: usize, max_frame: usize) -> Result<BytesMut, FrameError> {
    let mut head = BytesMut::with_capacity(32);
    head.put_u32(0);
    head.put_u8(header.kind());
    match header {
        Header::Hello(h) => put_header(&mut head, h)?,
        Header::Auth(h) => put_header(&mut head, h)?,
        Header::Reject(h) => put_header(&mut head, h)?,
        Header::Ping(h) | Header::Pong(h) => put_header(&mut head, h)?,
        Header::Goodbye(h) => put_header(&mut head, h)?,
        Header::Data(h) => put_header(&mut head, h)?,
        Header::Tell(h) => put_header(&mut head, h)?,
        Header::TellNamed(h) => put_header(&mut head, h)?,
        Header::Reply(h) => put_header(&mut head, h)?,
        Header::GroupPublish(h) => put_header(&mut head, h)?,
        Header::Publish(h) => put_header(&mut head, h)?,
        Header::StreamSubscribe(h) | Header::StreamUnsubscribe(h) => put_header(&mut head, h)?,
        Header::StreamData(h) => put_header(&mut head, h)?,
        Header::StreamEnd(h) => put_header(&mut head, h)?,
        Header::StreamHeartbeat(h) => put_header(&mut head, h)?,
        Header::RpcRequest(h) => put_header(&mut head, h)?,
        Header::RpcReply(h) => put_header(&mut head, h)?,
        Header::Welcome | Header::Registry | Header::Unknown { .. } => head.put_u16(0),
    }
    let len = head.len() - 4 + payload_len;
    if len > max_frame {
        return Err(FrameError::Oversized { len, max: max_frame });
    }
    let len32 = u32::try_from(len).map_err(|_| FrameError::Oversized { len, max: max_frame })?;
    head[..4].copy_from_slice(&len32.to_be_bytes());
    Ok(head)
}

impl Frame {
    /// Encodes this frame for sending, refusing it if it would exceed
    /// `max_frame` bytes. The payload is shared, not copied.
    pub fn encode(&self, max_frame: usize) -> Result<EncodedFrame, FrameError> {
        let head = encode_head(&self.header, self.payload.len(), max_frame)?;
        Ok(EncodedFrame {
            head: head.freeze(),
            payload: self.payload.clone(),
            control: self.header.is_control(),
        })
    }

    /// Encodes this frame into one contiguous buffer (copies the payload).
    pub fn encode_into(&self, max_frame: usize, dst: &mut BytesMut) -> Result<(), FrameError> {
        let head = encode_head(&self.header, self.payload.len(), max_frame)?;
        dst.reserve(head.len() + self.payload.len());
        dst.put_slice(&head);
        dst.put_slice(&self.payload);
        Ok(())
    }
}

/// Incremental frame decoder with a maximum frame size.
///
/// Feed it the receive buffer; each call takes at most one whole frame off
/// the front. It never panics on any input and never buffers more than
/// `max_frame` bytes of a frame before refusing it.
#[derive(Clone, Debug)]
pub struct FrameDecoder {
    max_frame: usize,
}

impl FrameDecoder {
    /// A decoder refusing frames longer than `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        Self { max_frame }
    }

    /// The configured maximum frame length.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// How many more bytes are needed before the next frame is complete
    /// (a hint for sizing reads; 0 when a frame is ready or the buffer is
    /// shorter than a length prefix).
    pub fn bytes_wanted(&self, src: &BytesMut) -> usize {
        if src.len() < 4 {
            return 0;
        }
        let len = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
        (4 + len).saturating_sub(src.len())
    }

    /// Takes one frame off the front of `src`.
    ///
    /// `Ok(None)`: not enough bytes yet (nothing consumed). An error means
    /// the stream is unusable and the connection must be closed.
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        if src.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
        if len > self.max_frame {
            return Err(FrameError::Oversized {
                len,
                max: self.max_frame,
            });
        }
        if len < 3 {
            return Err(FrameError::Malformed(
                "length shorter than kind and header length",
            ));
        }
        if src.len() < 4 + len {
            src.reserve(4 + len - src.len());
            return Ok(None);
        }
        let kind_byte = src[4];
        let hlen = u16::from_be_bytes([src[5], src[6]]) as usize;
        if hlen > len - 3 {
            return Err(FrameError::Malformed("header length runs past the frame"));
        }
        let mut frame = src.split_to(4 + len);
        frame.advance(FRAME_PREFIX_LEN);
        let header_bytes = frame.split_to(hlen);
        let header = decode_header(kind_byte, &header_bytes)?;
        Ok(Some(Frame {
            header,
            payload: frame.freeze(),
        }))
    }
}

fn get<T: DeserializeOwned>(name: &'static str, bytes: &[u8]) -> Result<T, FrameError> {
    // take_from_bytes ignores trailing bytes: fields appended by a newer
    // node are skipped by an older one.
    postcard::take_from_bytes(bytes)
        .map(|(value, _rest)| value)
        .map_err(|e| FrameError::BadHeader {
            kind: name,
            detail: e.to_string(),
        })
}

fn decode_header(kind_byte: u8, bytes: &[u8]) -> Result<Header, FrameError> {
    Ok(match kind_byte {
        kind::HELLO => Header::Hello(get("hello", bytes)?),
        kind::AUTH => Header::Auth(get("auth", bytes)?),
        kind::WELCOME => Header::Welcome,
        kind::REJECT => Header::Reject(get("reject", bytes)?),
        kind::PING => Header::Ping(get("ping", bytes)?),
        kind::PONG => Header::Pong(get("pong", bytes)?),
        kind::GOODBYE => Header::Goodbye(get("goodbye", bytes)?),
        kind::DATA => Header::Data(get("data", bytes)?),
        kind::REGISTRY => Header::Registry,
        kind::TELL => Header::Tell(get("tell", bytes)?),
        kind::TELL_NAMED => Header::TellNamed(get("tell_named", bytes)?),
        kind::REPLY => Header::Reply(get("reply", bytes)?),
        kind::GROUP_PUBLISH => Header::GroupPublish(get("group_publish", bytes)?),
        kind::PUBLISH => Header::Publish(get("publish", bytes)?),
        kind::STREAM_SUBSCRIBE => Header::StreamSubscribe(get("stream_subscribe", bytes)?),
        kind::STREAM_DATA => Header::StreamData(get("stream_data", bytes)?),
        kind::STREAM_UNSUBSCRIBE => Header::StreamUnsubscribe(get("stream_unsubscribe", bytes)?),
        kind::STREAM_END => Header::StreamEnd(get("stream_end", bytes)?),
        kind::STREAM_HEARTBEAT => Header::StreamHeartbeat(get("stream_heartbeat", bytes)?),
        other => Header::Unknown { kind: other },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{Auth, Data, Goodbye, Hello, Ping, Reject, RejectCode};
    use crate::node_id::NodeId;
    use proptest::prelude::*;

    fn every_kind() -> Vec<Frame> {
        vec![
            Frame::control(Header::Hello(Hello {
                cluster: "c".into(),
                node: NodeId::new("n1", 7),
                nonce: [9; 32],
                addr: "127.0.0.1:7420".into(),
            })),
            Frame::control(Header::Auth(Auth { mac: [3; 32] })),
            Frame::control(Header::Welcome),
            Frame::control(Header::Reject(Reject {
                code: RejectCode::AuthFailed,
                detail: "no".into(),
            })),
            Frame::control(Header::Ping(Ping {
                seq: 1,
                sent_micros: 2,
            })),
            Frame::control(Header::Pong(Ping {
                seq: u64::MAX,
                sent_micros: 0,
            })),
            Frame::control(Header::Goodbye(Goodbye { reason: "bye".into() })),
            Frame::data(5, Bytes::from_static(b"hello world")),
            Frame {
                header: Header::Registry,
                payload: Bytes::from_static(b"registry message"),
            },
            Frame {
                header: Header::Tell(crate::frame::Tell {
                    to: 7,
                    incarnation: 9,
                    meta: crate::frame::MessageMeta {
                        manifest: "m".into(),
                        headers: vec![("k".into(), "v".into())],
                        from: Some(crate::pid::Pid {
                            node: "n".into(),
                            incarnation: 1,
                            id: 2,
                        }),
                        call: Some(5),
                    },
                }),
                payload: Bytes::from_static(b"body"),
            },
            Frame {
                header: Header::TellNamed(crate::frame::TellNamed {
                    name: "svc".into(),
                    meta: Default::default(),
                }),
                payload: Bytes::new(),
            },
            Frame {
                header: Header::Reply(crate::frame::Reply {
                    call: 5,
                    status: crate::frame::ReplyStatus::MailboxFull,
                    meta: Default::default(),
                }),
                payload: Bytes::from_static(b"r"),
            },
            Frame {
                header: Header::GroupPublish(crate::frame::GroupPublish {
                    group: "g".into(),
                    meta: Default::default(),
                }),
                payload: Bytes::from_static(b"all"),
            },
            Frame {
                header: Header::Publish(crate::frame::Publish {
                    subject: "a.b".into(),
                    reply: Some("_INBOX.x.1".into()),
                    headers: vec![("h".into(), "v".into())],
                    queues: vec!["q".into()],
                }),
                payload: Bytes::from_static(b"pub"),
            },
            Frame::control(Header::StreamSubscribe(crate::frame::StreamKey {
                key: "k".into(),
            })),
            Frame::control(Header::StreamUnsubscribe(crate::frame::StreamKey {
                key: "k".into(),
            })),
            Frame {
                header: Header::StreamData(crate::frame::StreamData {
                    key: "live/cam1".into(),
                    seq: 7,
                    timestamp: 280,
                    keyframe: true,
                    config: false,
                    skipped: 0,
                }),
                payload: Bytes::from_static(b"frame"),
            },
            Frame::control(Header::StreamEnd(crate::frame::StreamEnd {
                key: "k".into(),
                reason: crate::frame::StreamEndReason::Finished,
            })),
            Frame::control(Header::StreamHeartbeat(crate::frame::StreamHeartbeat {
                key: "k".into(),
                last_seq: Some(3),
            })),
            Frame {
                header: Header::Unknown { kind: 200 },
                payload: Bytes::from_static(b"future"),
            },
        ]
    }

    #[test]
    fn every_kind_round_trips() {
        for frame in every_kind() {
            let mut buf = BytesMut::new();
            frame.encode_into(DEFAULT_MAX_FRAME, &mut buf).expect("encode");
            let enc = frame.encode(DEFAULT_MAX_FRAME).expect("encode");
            assert_eq!(enc.wire_len(), buf.len());
            let mut dec = FrameDecoder::new(DEFAULT_MAX_FRAME);
            let got = dec.decode(&mut buf).expect("decode").expect("complete");
            assert_eq!(got, frame);
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn control_class_is_by_kind() {
        assert!(
            Header::Ping(Ping {
                seq: 0,
                sent_micros: 0
            })
            .is_control()
        );
        assert!(!Header::Data(Data { channel: 0 }).is_control());
    }

    #[test]
    fn oversized_is_refused_before_buffering() {
        let mut dec = FrameDecoder::new(1024);
        let mut buf = BytesMut::from(&[0u8, 0, 8, 0][..]);
        assert!(matches!(
            dec.decode(&mut buf),
            Err(FrameError::Oversized { len: 2048, max: 1024 })
        ));
        let big = Frame::data(1, Bytes::from(vec![0u8; 2000]));
        assert!(matches!(big.encode(1024), Err(FrameError::Oversized { .. })));
    }

    #[test]
    fn truncated_waits_and_bad_lengths_fail() {
        let frame = Frame::data(1, Bytes::from_static(b"abc"));
        let mut full = BytesMut::new();
        frame.encode_into(1024, &mut full).expect("encode");
        for cut in 0..full.len() {
            let mut part = BytesMut::from(&full[..cut]);
            let mut dec = FrameDecoder::new(1024);
            assert_eq!(dec.decode(&mut part), Ok(None), "cut at {cut}");
        }
        let mut short = BytesMut::from(&[0u8, 0, 0, 2, 1, 0][..]);
        assert!(FrameDecoder::new(1024).decode(&mut short).is_err());
        let mut past = BytesMut::from(&[0u8, 0, 0, 3, 1, 0, 9][..]);
        assert!(FrameDecoder::new(1024).decode(&mut past).is_err());
    }

    #[test]
    fn unknown_kind_is_skipped_whole() {
        let mut buf = BytesMut::new();
        Frame {
            header: Header::Unknown { kind: 250 },
            payload: Bytes::from_static(b"xyz"),
        }
        .encode_into(1024, &mut buf)
        .expect("encode");
        Frame::data(2, Bytes::from_static(b"after"))
            .encode_into(1024, &mut buf)
            .expect("encode");
        let mut dec = FrameDecoder::new(1024);
        let first = dec.decode(&mut buf).expect("ok").expect("frame");
        assert_eq!(first.header, Header::Unknown { kind: 250 });
        let second = dec.decode(&mut buf).expect("ok").expect("frame");
        assert_eq!(second.payload, Bytes::from_static(b"after"));
    }

    #[test]
    fn appended_header_fields_are_ignored() {
        // A newer node appends a field to the data header: older decoders
        // read the fields they know and skip the rest.
        let mut buf = BytesMut::new();
        buf.put_u32(3 + 3 + 2);
        buf.put_u8(kind::DATA);
        buf.put_u16(3);
        buf.put_slice(&[5, 0xAA, 0xBB]); // channel 5, then unknown bytes
        buf.put_slice(b"hi");
        let got = FrameDecoder::new(1024)
            .decode(&mut buf)
            .expect("ok")
            .expect("frame");
        assert_eq!(got, Frame::data(5, Bytes::from_static(b"hi")));
    }

    #[test]
    fn preamble() {
        let mut buf = BytesMut::new();
        encode_preamble(&mut buf);
        assert_eq!(decode_preamble(&mut buf), Ok(Some(PROTOCOL_VERSION)));
        let mut http = BytesMut::from(&b"GET / HTTP/1.1\r\n"[..]);
        assert!(matches!(decode_preamble(&mut http), Err(FrameError::BadMagic(_))));
        let mut partial = BytesMut::from(&b"WE"[..]);
        assert_eq!(decode_preamble(&mut partial), Ok(None));
        let mut bad_partial = BytesMut::from(&b"WX"[..]);
        assert!(decode_preamble(&mut bad_partial).is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut buf = BytesMut::from(&data[..]);
            let mut dec = FrameDecoder::new(256);
            for _ in 0..64 {
                match dec.decode(&mut buf) {
                    Ok(Some(_)) => continue,
                    Ok(None) | Err(_) => break,
                }
            }
            let mut buf = BytesMut::from(&data[..]);
            let _ = decode_preamble(&mut buf);
        }

        #[test]
        fn data_frames_round_trip(channel in any::<u32>(), payload in proptest::collection::vec(any::<u8>(), 0..4096), split in 0usize..5000) {
            let frame = Frame::data(channel, Bytes::from(payload));
            let mut wire = BytesMut::new();
            frame.encode_into(DEFAULT_MAX_FRAME, &mut wire).expect("encode");
            let split = split.min(wire.len());
            let mut buf = BytesMut::from(&wire[..split]);
            let mut dec = FrameDecoder::new(DEFAULT_MAX_FRAME);
            let first = dec.decode(&mut buf).expect("no error");
            if split < wire.len() {
                prop_assert!(first.is_none());
                buf.extend_from_slice(&wire[split..]);
                let got = dec.decode(&mut buf).expect("ok").expect("frame");
                prop_assert_eq!(got, frame);
            } else {
                prop_assert_eq!(first.expect("frame"), frame);
            }
        }
    }
}
