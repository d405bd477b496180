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

/// Bytes a [`FrameHead`] holds inline (prefix plus header). Heads up to
/// this size (every data-class frame with short names and subjects) are
/// encoded on the stack without a heap allocation.
pub const INLINE_HEAD: usize = 62;

/// The head of an encoded frame: length prefix, kind, header length and
/// header. Small heads live inline; a head longer than [`INLINE_HEAD`]
/// bytes is kept on the heap. Dereferences to its bytes.
#[derive(Clone)]
pub enum FrameHead {
    /// A head of at most [`INLINE_HEAD`] bytes, stored in place.
    Inline {
        /// Bytes used at the front of `buf`.
        len: u8,
        /// The head bytes (only `..len` are meaningful).
        buf: [u8; INLINE_HEAD],
    },
    /// A longer head.
    Heap(Bytes),
}

impl std::ops::Deref for FrameHead {
    type Target = [u8];

    #[inline]
    fn deref(&self) -> &[u8] {
        match self {
            FrameHead::Inline { len, buf } => &buf[..usize::from(*len)],
            FrameHead::Heap(b) => b,
        }
    }
}

impl AsRef<[u8]> for FrameHead {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl std::fmt::Debug for FrameHead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("FrameHead").field(&&**self).finish()
    }
}

impl PartialEq for FrameHead {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for FrameHead {}

/// A frame encoded for sending: a small head (prefix and header) and the
/// payload, kept apart so a large payload is written without being copied.
#[derive(Clone, Debug)]
pub struct EncodedFrame {
    /// Length prefix, kind, header length and header.
    pub head: FrameHead,
    /// The payload, unchanged.
    pub payload: Bytes,
    /// Whether the frame belongs to the control class.
    pub control: bool,
    /// How many frames these bytes hold: 1 for a frame encoded alone, more
    /// for the frames of a [`FrameRun`] (whose head is empty and whose
    /// payload is the frames back to back).
    pub frames: u32,
}

impl EncodedFrame {
    /// Total bytes this frame occupies on the wire.
    #[inline]
    pub fn wire_len(&self) -> usize {
        self.head.len() + self.payload.len()
    }
}

/// Frames encoded back to back into one buffer, to be queued and written
/// as a single data-class [`EncodedFrame`] item.
///
/// A burst of small frames for the same peer (the publishes of one client
/// read, say) then costs one queue push, one queue pop and no per-frame
/// copy in the writer, instead of one of each per frame. The bytes on the
/// wire are exactly those of the frames sent one by one. Put only
/// data-class frames in a run (a control frame in it would lose its lane).
/// Frames are copied into the run, so it suits small payloads; send a
/// large one on its own. The buffer grows by doubling and runs taken from
/// it share its allocation, so the memory behind a queued run may be up
/// to about twice the wire bytes a queue counts for it.
#[derive(Debug, Default)]
pub struct FrameRun {
    buf: BytesMut,
    frames: u32,
}

impl FrameRun {
    /// An empty run.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `frame` (head and payload are copied).
    pub fn push(&mut self, frame: &EncodedFrame) {
        if self.buf.capacity() - self.buf.len() < frame.wire_len() {
            // Grow generously: a run usually takes many frames.
            self.buf.reserve(frame.wire_len().max(4096).max(self.buf.len()));
        }
        self.buf.extend_from_slice(&frame.head);
        self.buf.extend_from_slice(&frame.payload);
        self.frames += frame.frames;
    }

    /// Bytes appended so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether no frame was appended since the last [`FrameRun::take`].
    pub fn is_empty(&self) -> bool {
        self.frames == 0
    }

    /// Frames appended so far.
    pub fn frames(&self) -> u32 {
        self.frames
    }

    /// The frames appended so far as one data-class item (empty head, the
    /// frames as payload); `None` when there are none. The run is empty
    /// afterwards and can be reused.
    pub fn take(&mut self) -> Option<EncodedFrame> {
        if self.frames == 0 {
            return None;
        }
        let frames = std::mem::take(&mut self.frames);
        Some(EncodedFrame {
            head: FrameHead::Inline {
                len: 0,
                buf: [0; INLINE_HEAD],
            },
            payload: self.buf.split().freeze(),
            control: false,
            frames,
        })
    }
}

/// The length prefix for a frame with `hlen` header bytes, checked
/// against `max_frame`.
fn frame_len(hlen: usize, payload_len: usize, max_frame: usize) -> Result<[u8; 4], FrameError> {
    let len = 3 + hlen + payload_len;
    if len > max_frame {
        return Err(FrameError::Oversized { len, max: max_frame });
    }
    let len32 = u32::try_from(len).map_err(|_| FrameError::Oversized { len, max: max_frame })?;
    Ok(len32.to_be_bytes())
}

fn outgoing_error(e: postcard::Error) -> FrameError {
    FrameError::BadHeader {
        kind: "outgoing",
        detail: e.to_string(),
    }
}

/// Encodes the head of a frame of kind `kind` whose header is `value`:
/// on the stack when it fits [`INLINE_HEAD`], else on the heap.
fn head_of<T: Serialize + ?Sized>(
    kind: u8,
    value: &T,
    payload_len: usize,
    max_frame: usize,
) -> Result<FrameHead, FrameError> {
    let mut buf = [0u8; INLINE_HEAD];
    match postcard::to_slice(value, &mut buf[FRAME_PREFIX_LEN..]) {
        Ok(used) => {
            let hlen = used.len();
            buf[..4].copy_from_slice(&frame_len(hlen, payload_len, max_frame)?);
            buf[4] = kind;
            // hlen < INLINE_HEAD, so it fits both u16 and u8 below.
            buf[5..7].copy_from_slice(&(hlen as u16).to_be_bytes());
            Ok(FrameHead::Inline {
                len: (FRAME_PREFIX_LEN + hlen) as u8,
                buf,
            })
        }
        Err(postcard::Error::SerializeBufferFull) => {
            let mut head = vec![0u8; FRAME_PREFIX_LEN];
            head = postcard::to_extend(value, head).map_err(outgoing_error)?;
            let hlen = head.len() - FRAME_PREFIX_LEN;
            let hlen16 = u16::try_from(hlen).map_err(|_| FrameError::HeaderTooLarge(hlen))?;
            head[..4].copy_from_slice(&frame_len(hlen, payload_len, max_frame)?);
            head[4] = kind;
            head[5..7].copy_from_slice(&hlen16.to_be_bytes());
            Ok(FrameHead::Heap(Bytes::from(head)))
        }
        Err(e) => Err(outgoing_error(e)),
    }
}

fn encode_head(header: &Header, payload_len: usize, max_frame: usize) -> Result<FrameHead, FrameError> {
    let k = header.kind();
    match header {
        Header::Hello(h) => head_of(k, h, payload_len, max_frame),
        Header::Auth(h) => head_of(k, h, payload_len, max_frame),
        Header::Reject(h) => head_of(k, h, payload_len, max_frame),
        Header::Ping(h) | Header::Pong(h) => head_of(k, h, payload_len, max_frame),
        Header::Goodbye(h) => head_of(k, h, payload_len, max_frame),
        Header::Data(h) => head_of(k, h, payload_len, max_frame),
        Header::Tell(h) => head_of(k, h, payload_len, max_frame),
        Header::TellNamed(h) => head_of(k, h, payload_len, max_frame),
        Header::Reply(h) => head_of(k, h, payload_len, max_frame),
        Header::GroupPublish(h) => head_of(k, h, payload_len, max_frame),
        Header::Publish(h) => head_of(k, h, payload_len, max_frame),
        Header::StreamSubscribe(h) | Header::StreamUnsubscribe(h) => head_of(k, h, payload_len, max_frame),
        Header::StreamData(h) => head_of(k, h, payload_len, max_frame),
        Header::StreamEnd(h) => head_of(k, h, payload_len, max_frame),
        Header::StreamHeartbeat(h) => head_of(k, h, payload_len, max_frame),
        Header::StreamAttached(h) => head_of(k, h, payload_len, max_frame),
        Header::StreamAttach(h) => head_of(k, h, payload_len, max_frame),
        Header::RpcRequest(h) => head_of(k, h, payload_len, max_frame),
        Header::RpcReply(h) => head_of(k, h, payload_len, max_frame),
        Header::DeadLetter(h) => head_of(k, h, payload_len, max_frame),
        Header::RegistryAck(h) => head_of(k, h, payload_len, max_frame),
        // No header fields: postcard writes nothing for `()`.
        Header::Welcome | Header::Registry | Header::Unknown { .. } => {
            head_of(k, &(), payload_len, max_frame)
        }
    }
}

impl Frame {
    /// Encodes this frame for sending, refusing it if it would exceed
    /// `max_frame` bytes. The payload is shared, not copied; a small head
    /// is built without a heap allocation.
    pub fn encode(&self, max_frame: usize) -> Result<EncodedFrame, FrameError> {
        let head = encode_head(&self.header, self.payload.len(), max_frame)?;
        Ok(EncodedFrame {
            head,
            payload: self.payload.clone(),
            control: self.header.is_control(),
            frames: 1,
        })
    }

    /// Like [`Frame::encode`] but moves the payload instead of sharing it.
    pub fn into_encoded(self, max_frame: usize) -> Result<EncodedFrame, FrameError> {
        let head = encode_head(&self.header, self.payload.len(), max_frame)?;
        Ok(EncodedFrame {
            head,
            payload: self.payload,
            control: self.header.is_control(),
            frames: 1,
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

/// Encodes a publish frame from borrowed fields (the same bytes as a
/// [`Frame`] with [`Header::Publish`] of the same values). The payload is
/// shared, not copied.
pub fn encode_publish(
    p: &crate::frame::PublishRef<'_>,
    payload: &Bytes,
    max_frame: usize,
) -> Result<EncodedFrame, FrameError> {
    let head = head_of(kind::PUBLISH, p, payload.len(), max_frame)?;
    Ok(EncodedFrame {
        head,
        payload: payload.clone(),
        control: kind::PUBLISH < kind::FIRST_DATA_KIND,
        frames: 1,
    })
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
        let header = decode_header(kind_byte, &frame[FRAME_PREFIX_LEN..FRAME_PREFIX_LEN + hlen])?;
        frame.advance(FRAME_PREFIX_LEN + hlen);
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
        kind::REGISTRY_ACK => Header::RegistryAck(get("registry_ack", bytes)?),
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
        kind::STREAM_ATTACHED => Header::StreamAttached(get("stream_attached", bytes)?),
        kind::STREAM_ATTACH => Header::StreamAttach(get("stream_attach", bytes)?),
        kind::RPC_REQUEST => Header::RpcRequest(get("rpc_request", bytes)?),
        kind::RPC_REPLY => Header::RpcReply(get("rpc_reply", bytes)?),
        kind::DEAD_LETTER => Header::DeadLetter(get("dead_letter", bytes)?),
        other => Header::Unknown { kind: other },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{Auth, Data, Goodbye, Hello, Ping, Reject, RejectCode};
    use crate::node_id::NodeId;
    use proptest::prelude::*;

    #[test]
    fn a_run_holds_exactly_the_bytes_of_its_frames_sent_one_by_one() {
        let frames = every_kind();
        let mut run = FrameRun::new();
        assert!(run.take().is_none());
        let mut alone = BytesMut::new();
        for f in &frames {
            let e = f.encode(DEFAULT_MAX_FRAME).expect("encodes");
            alone.extend_from_slice(&e.head);
            alone.extend_from_slice(&e.payload);
            run.push(&e);
        }
        assert_eq!(run.frames() as usize, frames.len());
        assert_eq!(run.len(), alone.len());
        let item = run.take().expect("not empty");
        assert!(run.is_empty() && run.take().is_none());
        assert_eq!(item.frames as usize, frames.len());
        assert!(item.head.is_empty() && !item.control);
        assert_eq!(item.wire_len(), alone.len());
        assert_eq!(&item.payload[..], &alone[..]);
        let mut wire = BytesMut::from(&item.payload[..]);
        let mut dec = FrameDecoder::new(DEFAULT_MAX_FRAME);
        for f in &frames {
            assert_eq!(dec.decode(&mut wire).expect("decodes").as_ref(), Some(f));
        }
        assert!(wire.is_empty());
    }

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
            Frame::control(Header::RegistryAck(crate::frame::RegistryAck {
                incarnation: 7,
                version: u64::MAX,
            })),
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
            Frame {
                header: Header::RpcRequest(crate::frame::RpcRequest { id: 9, method: 2 }),
                payload: Bytes::from_static(b"req"),
            },
            Frame {
                header: Header::RpcReply(crate::frame::RpcReply { id: 9, ok: false }),
                payload: Bytes::from_static(b"err"),
            },
            Frame::control(Header::StreamHeartbeat(crate::frame::StreamHeartbeat {
                key: "k".into(),
                last_seq: Some(3),
            })),
            Frame::control(Header::DeadLetter(crate::frame::DeadLetter {
                letters: vec![crate::frame::Undelivered {
                    to: crate::frame::Addressee::Name("echo".into()),
                    reason: "no_such_mailbox".into(),
                    from: Some(crate::Pid {
                        node: "n1".into(),
                        incarnation: 4,
                        id: 2,
                    }),
                    manifest: "chat.Post".into(),
                    size: 12,
                }],
                counts: vec![crate::frame::DropCount {
                    kind: "publish".into(),
                    reason: "slow_consumer".into(),
                    count: 40,
                }],
            })),
            Frame::control(Header::StreamAttached(crate::frame::StreamAttached {
                key: "k".into(),
                attach: 7,
                last_seq: None,
            })),
            Frame::control(Header::StreamAttach(crate::frame::StreamAttach {
                key: "k".into(),
                attach: 7,
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
    fn split_encoding_matches_contiguous() {
        let long = "s".repeat(70_000);
        let mut frames = every_kind();
        for n in [
            INLINE_HEAD - 20,
            INLINE_HEAD - 13,
            INLINE_HEAD - 12,
            INLINE_HEAD - 11,
            300,
        ] {
            frames.push(Frame {
                header: Header::Publish(crate::frame::Publish {
                    subject: "x".repeat(n),
                    reply: None,
                    headers: vec![],
                    queues: vec![],
                }),
                payload: Bytes::from_static(b"p"),
            });
        }
        let mut saw_inline = false;
        let mut saw_heap = false;
        for frame in frames {
            let enc = frame.encode(DEFAULT_MAX_FRAME).expect("encode");
            match &enc.head {
                FrameHead::Inline { .. } => saw_inline = true,
                FrameHead::Heap(_) => saw_heap = true,
            }
            let mut contiguous = BytesMut::new();
            frame
                .encode_into(DEFAULT_MAX_FRAME, &mut contiguous)
                .expect("encode");
            let mut split = enc.head.to_vec();
            split.extend_from_slice(&enc.payload);
            assert_eq!(split, &contiguous[..], "{}", frame.header.name());
            let moved = frame.clone().into_encoded(DEFAULT_MAX_FRAME).expect("encode");
            assert_eq!(moved.head, enc.head);
        }
        assert!(saw_inline && saw_heap);
        let huge = Frame {
            header: Header::Goodbye(Goodbye { reason: long }),
            payload: Bytes::new(),
        };
        assert_eq!(
            huge.encode(DEFAULT_MAX_FRAME).map(|_| ()),
            Err(FrameError::HeaderTooLarge(70_003))
        );
    }

    #[test]
    fn borrowed_publish_encodes_as_the_owned_one() {
        let owned = crate::frame::Publish {
            subject: "a.b".into(),
            reply: Some("_INBOX.x".into()),
            headers: vec![("k".into(), "v".into())],
            queues: vec!["q".into()],
        };
        let payload = Bytes::from_static(b"hello");
        let long = "s".repeat(200);
        for p in [
            owned.clone(),
            crate::frame::Publish {
                subject: long,
                ..owned.clone()
            },
        ] {
            let borrowed = crate::frame::PublishRef {
                subject: &p.subject,
                reply: p.reply.as_deref(),
                headers: &p.headers,
                queues: &p.queues,
            };
            let a = encode_publish(&borrowed, &payload, DEFAULT_MAX_FRAME).expect("encode");
            let b = Frame {
                header: Header::Publish(p.clone()),
                payload: payload.clone(),
            }
            .encode(DEFAULT_MAX_FRAME)
            .expect("encode");
            assert_eq!(a.head, b.head);
            assert_eq!(a.payload, b.payload);
            assert_eq!(a.control, b.control);
        }
    }

    #[test]
    fn data_frame_bytes_are_fixed() {
        // The wire contract (docs/wire.md): len | kind | hlen | header | payload.
        let enc = Frame::data(300, Bytes::from_static(b"hi"))
            .encode(1024)
            .expect("encode");
        let mut wire = enc.head.to_vec();
        wire.extend_from_slice(&enc.payload);
        assert_eq!(wire, [0, 0, 0, 7, kind::DATA, 0, 2, 0xAC, 0x02, b'h', b'i']);
        let pong = Frame::control(Header::Welcome).encode(1024).expect("encode");
        assert_eq!(&pong.head[..], &[0, 0, 0, 3, kind::WELCOME, 0, 0]);
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
