//! `echo: false` over weft.
//!
//! weft delivers a publish to every matching local subscription, and a
//! weft message does not say which NATS client published it. A client that
//! turned echo off therefore has its publishes tagged with the header
//! [`KEY`] = `<server id>/<client id>/<p|h>`; every delivery strips the tag,
//! and the client with that tag skips the message. `p` records that the
//! original was a `PUB` (so the message goes out as `MSG` again), `h` an
//! `HPUB`. Clients with echo on (the default) publish untagged.
//!
//! Limitation: a queue group member that turned echo off may be picked by
//! weft for its own message; the message is then skipped, so that group
//! misses it (nats-server would pick another member). Counted in
//! `msgs_dropped`.

/// The tag header.
pub const KEY: &str = ":weft-nats-origin";

/// A parsed tag.
#[derive(Debug, PartialEq, Eq)]
pub struct Origin<'a> {
    /// `<server id>/<client id>`.
    pub tag: &'a str,
    /// The original publish carried a header block (`HPUB`).
    pub had_header_block: bool,
}

/// The tag of client `cid` on server `server_id`.
pub fn tag(server_id: &str, cid: u64) -> String {
    format!("{server_id}/{cid}")
}

/// The header value for a publish by `tag`.
pub fn value(tag: &str, had_header_block: bool) -> String {
    format!("{tag}/{}", if had_header_block { 'h' } else { 'p' })
}

/// The origin tag of a message, if it has one.
pub fn origin(headers: &[(String, String)]) -> Option<Origin<'_>> {
    let (_, v) = headers.iter().find(|(k, _)| k == KEY)?;
    let (tag, kind) = v.rsplit_once('/')?;
    Some(Origin {
        tag,
        had_header_block: kind == "h",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let t = tag("n1.42", 7);
        let h = vec![
            ("a".to_string(), "b".to_string()),
            (KEY.to_string(), value(&t, false)),
        ];
        assert_eq!(
            origin(&h),
            Some(Origin {
                tag: "n1.42/7",
                had_header_block: false
            })
        );
        assert_eq!(origin(&h[..1]), None);
    }
}
