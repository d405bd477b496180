//! The `ROUTE_BATCH` request body: many routed events to one owner in one
//! RPC, grouped in chunks (one shard each, in the sender's order).
//!
//! Hand-encoded (little-endian, length-prefixed) so that the owner can
//! hand out keys and events as slices of the received frame without a
//! copy:
//!
//! ```text
//! epoch u64 | wait_ms u32 | chunks u32 |
//!   { shard u32 | items u32 | { flags u8 | key_len u32 | key | event_len u32 | event }* }*
//! ```
//!
//! `flags` bit 0: `no_wait` (`try_route`: answer `Full` at once instead of
//! waiting for room). The reply is postcard `Vec<RouteReply>`, one per
//! event in request order.

use bytes::{BufMut, Bytes};

/// One event inside a batch.
#[derive(Clone, Debug)]
pub(super) struct Item {
    pub key: Bytes,
    pub event: Bytes,
    pub no_wait: bool,
}

/// The events of one shard, in the sender's order.
#[derive(Debug)]
pub(super) struct Chunk {
    pub shard: u32,
    pub items: Vec<Item>,
}

/// A decoded batch.
#[derive(Debug)]
pub(super) struct Batch {
    /// The sender's map epoch.
    pub epoch: u64,
    /// How long the owner may hold the reply waiting for room, in ms.
    pub wait_ms: u32,
    pub chunks: Vec<Chunk>,
}

const NO_WAIT: u8 = 1;

/// Appends the batch header to `buf`.
pub(super) fn put_header(buf: &mut Vec<u8>, epoch: u64, wait_ms: u32, chunks: u32) {
    buf.put_u64_le(epoch);
    buf.put_u32_le(wait_ms);
    buf.put_u32_le(chunks);
}

/// Appends one chunk to `buf`.
pub(super) fn put_chunk<'a>(buf: &mut Vec<u8>, shard: u32, items: impl ExactSizeIterator<Item = &'a Item>) {
    buf.put_u32_le(shard);
    buf.put_u32_le(items.len() as u32);
    for it in items {
        buf.put_u8(if it.no_wait { NO_WAIT } else { 0 });
        buf.put_u32_le(it.key.len() as u32);
        buf.put_slice(&it.key);
        buf.put_u32_le(it.event.len() as u32);
        buf.put_slice(&it.event);
    }
}

/// Why a batch could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("malformed route batch at byte {0}")]
pub(super) struct Malformed(usize);

struct Reader<'a> {
    body: &'a Bytes,
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], Malformed> {
        let end = self.at.checked_add(n).ok_or(Malformed(self.at))?;
        let s = self.body.get(self.at..end).ok_or(Malformed(self.at))?;
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, Malformed> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, Malformed> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn bytes(&mut self) -> Result<Bytes, Malformed> {
        let n = self.u32()? as usize;
        let start = self.at;
        self.take(n)?;
        Ok(self.body.slice(start..start + n))
    }
}

/// Decodes a batch; keys and events are slices of `body`.
pub(super) fn decode(body: &Bytes) -> Result<Batch, Malformed> {
    let mut r = Reader { body, at: 0 };
    let epoch = r.u64()?;
    let wait_ms = r.u32()?;
    let n = r.u32()? as usize;
    // Every chunk takes at least 8 bytes: bound allocations by the body.
    let mut chunks = Vec::with_capacity(n.min(body.len() / 8));
    for _ in 0..n {
        let shard = r.u32()?;
        let m = r.u32()? as usize;
        let mut items = Vec::with_capacity(m.min(body.len() / 9));
        for _ in 0..m {
            let flags = r.u8()?;
            let key = r.bytes()?;
            let event = r.bytes()?;
            items.push(Item {
                key,
                event,
                no_wait: flags & NO_WAIT != 0,
            });
        }
        chunks.push(Chunk { shard, items });
    }
    if r.at != body.len() {
        return Err(Malformed(r.at));
    }
    Ok(Batch {
        epoch,
        wait_ms,
        chunks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        let items = [
            Item {
                key: Bytes::from_static(b"k1"),
                event: Bytes::from_static(b"event one"),
                no_wait: false,
            },
            Item {
                key: Bytes::from_static(b""),
                event: Bytes::from_static(b"e2"),
                no_wait: true,
            },
        ];
        let mut buf = Vec::new();
        put_header(&mut buf, 7, 250, 2);
        put_chunk(&mut buf, 3, items.iter());
        put_chunk(&mut buf, 9, items[..1].iter());
        let body = Bytes::from(buf);
        let b = decode(&body).expect("decodes");
        assert_eq!((b.epoch, b.wait_ms, b.chunks.len()), (7, 250, 2));
        assert_eq!(b.chunks[0].shard, 3);
        assert_eq!(b.chunks[0].items.len(), 2);
        assert_eq!(&b.chunks[0].items[0].event[..], b"event one");
        assert!(b.chunks[0].items[1].no_wait);
        assert_eq!(&b.chunks[1].items[0].key[..], b"k1");
        for cut in 0..body.len() {
            assert!(decode(&body.slice(..cut)).is_err(), "truncated at {cut}");
        }
    }
}
