//! The frames one publish batch sends each node.
//!
//! Small publish frames for the same node are gathered into
//! [`FrameRun`]s: a client read of thousands of `PUB`s then costs each
//! link a few queue pushes and pops instead of one per message, and the
//! link writer copies nothing more. A frame with a large payload goes on
//! its own (its payload is written by reference, never copied). Order per
//! node is the publish order either way.

use weft_proto::{EncodedFrame, FrameRun};

/// Payloads above this are not copied into a run.
const RUN_COPY_LIMIT: usize = 8 * 1024;
/// A run is sealed once it holds this many bytes, so that queue items stay
/// small next to the link's queue bound and writer batch.
const RUN_BYTES: usize = 128 * 1024;

/// The frames for one node, in order.
#[derive(Default)]
struct NodeFrames {
    items: Vec<EncodedFrame>,
    run: FrameRun,
}

/// The frames for every node a batch reaches (few nodes: linear scans).
#[derive(Default)]
pub(super) struct Outgoing {
    nodes: Vec<(String, NodeFrames)>,
}

impl Outgoing {
    /// Appends `frame` to what `node` gets.
    pub(super) fn push(&mut self, node: &str, frame: &EncodedFrame) {
        let i = match self.nodes.iter().position(|(n, _)| n == node) {
            Some(i) => i,
            None => {
                self.nodes.push((node.to_string(), NodeFrames::default()));
                self.nodes.len() - 1
            }
        };
        let out = &mut self.nodes[i].1;
        if frame.payload.len() > RUN_COPY_LIMIT {
            out.items.extend(out.run.take());
            out.items.push(frame.clone());
            return;
        }
        out.run.push(frame);
        if out.run.len() >= RUN_BYTES {
            out.items.extend(out.run.take());
        }
    }

    /// Every node with what it gets, in order.
    pub(super) fn into_nodes(self) -> impl Iterator<Item = (String, Vec<EncodedFrame>)> {
        self.nodes.into_iter().map(|(node, mut f)| {
            f.items.extend(f.run.take());
            (node, f.items)
        })
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use weft_proto::frame::{Header, Publish};
    use weft_proto::{Frame, FrameDecoder};

    use std::collections::BTreeMap;

    use super::*;

    fn publish(subject: &str, payload: usize) -> EncodedFrame {
        let header = Header::Publish(Publish {
            subject: subject.into(),
            reply: None,
            headers: Vec::new(),
            queues: Vec::new(),
        });
        Frame {
            header,
            payload: Bytes::from(vec![7u8; payload]),
        }
        .encode(16 * 1024 * 1024)
        .expect("encodes")
    }

    fn subjects(items: &[EncodedFrame]) -> Vec<(String, usize)> {
        let mut wire = bytes::BytesMut::new();
        for f in items {
            wire.extend_from_slice(&f.head);
            wire.extend_from_slice(&f.payload);
        }
        let mut dec = FrameDecoder::new(16 * 1024 * 1024);
        let mut out = Vec::new();
        while let Some(frame) = dec.decode(&mut wire).expect("decodes") {
            let Header::Publish(p) = frame.header else {
                panic!("not a publish")
            };
            out.push((p.subject, frame.payload.len()));
        }
        assert!(wire.is_empty(), "trailing bytes");
        out
    }

    #[test]
    fn small_frames_share_runs_and_large_ones_go_alone_in_order() {
        let mut out = Outgoing::default();
        let mut want: BTreeMap<&str, Vec<(String, usize)>> = BTreeMap::new();
        let sizes = [16, 16, 20_000, 16, 0, 9000, 100];
        for (i, size) in sizes.iter().enumerate() {
            for node in ["n2", "n3"] {
                if node == "n3" && i % 2 == 1 {
                    continue;
                }
                let subject = format!("s.{i}");
                out.push(node, &publish(&subject, *size));
                want.entry(node).or_default().push((subject, *size));
            }
        }
        let nodes: Vec<_> = out.into_nodes().collect();
        assert_eq!(nodes.len(), 2);
        for (node, items) in nodes {
            assert_eq!(subjects(&items), want[node.as_str()], "{node}");
            let frames: u32 = items.iter().map(|f| f.frames).sum();
            assert_eq!(frames as usize, want[node.as_str()].len());
            // Runs: every payload above the copy limit is its own item.
            for f in &items {
                assert!(f.frames == 1 || f.head.is_empty());
            }
        }
    }

    #[test]
    fn a_run_is_sealed_at_its_byte_bound() {
        let mut out = Outgoing::default();
        let n = 3 * RUN_BYTES / 1000;
        for i in 0..n {
            out.push("n2", &publish(&format!("s.{i}"), 1000));
        }
        let (_, items) = out.into_nodes().next().expect("one node");
        assert!(items.len() >= 3, "{} items", items.len());
        assert!(items.iter().all(|f| f.wire_len() < RUN_BYTES + 2000));
        assert_eq!(subjects(&items).len(), n);
    }
}
