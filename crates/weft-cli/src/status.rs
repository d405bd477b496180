//! `weft status --http URL`: fetches `/api/v1/cluster` from any node's
//! admin API and prints the cluster as that node sees it (or the raw JSON
//! with `--json`).
//!
//! The HTTP client is reqwest (plain HTTP only: the admin API has no TLS),
//! which also parses the URL: one request, a bounded body and an overall
//! timeout. The answer is read into [`ClusterView`], the type the admin
//! API writes.
//!
//! Exit codes: 0 printed; 2 bad URL (a usage error, as clap's); 3 the node
//! cannot be reached, does not answer in time, or does not answer with a
//! weft cluster view ([`EXIT_UNAVAILABLE`]).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::Write as _;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use reqwest::Url;
use reqwest::header;

use crate::cli::StatusArgs;
use crate::error::{EXIT_UNAVAILABLE, Failure, OrFail, Result};
use crate::view::ClusterView;

/// The largest cluster view accepted.
const MAX_BODY: usize = 8 * 1024 * 1024;
/// The API path under the node's admin URL.
const API_PATH: &str = "/api/v1/cluster";
/// Width of the shard bars, in characters.
const BAR_WIDTH: usize = 24;

/// Why no cluster view could be fetched.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// The URL is not `http://HOST:PORT[/PREFIX]` (or `HOST:PORT`).
    #[error("bad admin URL {url:?}: {reason}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No TCP connection could be made (refused, unresolvable, unreachable).
    #[error("cannot reach {url}: {reason}")]
    Unreachable {
        /// The URL fetched.
        url: String,
        /// The cause, e.g. `connection refused`.
        reason: String,
    },
    /// Connected, but no complete answer within the timeout.
    #[error("cannot reach {url}: no complete answer within {secs} s")]
    Timeout {
        /// The URL fetched.
        url: String,
        /// The timeout, seconds.
        secs: f64,
    },
    /// The connection broke, or the answer is not HTTP/1.x.
    #[error("bad answer from {url}: {reason}")]
    Protocol {
        /// The URL fetched.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// An HTTP status other than 200.
    #[error("{url} answered HTTP {status}{detail}")]
    HttpStatus {
        /// The URL fetched.
        url: String,
        /// The status code.
        status: u16,
        /// `: message` from a JSON `{"error": ...}` body, or empty.
        detail: String,
    },
    /// A 200 answer that is not a weft cluster view.
    #[error("{url} did not answer with a weft cluster view: {reason}")]
    NotWeft {
        /// The URL fetched.
        url: String,
        /// Why the body was refused.
        reason: String,
    },
}

impl StatusError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            StatusError::BadUrl { .. } => crate::error::EXIT_CONFIG,
            _ => EXIT_UNAVAILABLE,
        }
    }
}

impl From<StatusError> for Failure {
    fn from(e: StatusError) -> Self {
        Failure::with_code(e.exit_code(), e)
    }
}

/// Runs `weft status`.
pub async fn run(args: StatusArgs) -> Result<()> {
    if !(args.timeout.is_finite() && args.timeout > 0.0 && args.timeout <= 3600.0) {
        return Err(Failure::config(anyhow::anyhow!(
            "--timeout must be between 0 and 3600 seconds, got {}",
            args.timeout
        )));
    }
    let target = Target::parse(&args.http)?;
    let body = fetch(&target, Duration::from_secs_f64(args.timeout)).await?;
    let view = parse_view(&target.url(), &body)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        out.write_all(&body).or_runtime()?;
        if !body.ends_with(b"\n") {
            out.write_all(b"\n").or_runtime()?;
        }
    } else {
        out.write_all(render(&view, &target.url()).as_bytes())
            .or_runtime()?;
    }
    out.flush().or_runtime()
}

/// Where the cluster view is fetched from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Request path: any prefix given in the URL, then `/api/v1/cluster`.
    pub path: String,
}

impl Target {
    /// Parses `http://HOST[:PORT][/PREFIX]` or `HOST:PORT`. A URL already
    /// ending in `/api/v1/cluster` is taken as is.
    pub fn parse(url: &str) -> std::result::Result<Target, StatusError> {
        let bad = |reason: &str| StatusError::BadUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let trimmed = url.trim();
        // Without a scheme, `HOST:PORT` would parse as scheme `HOST`.
        let full = if trimmed.contains("://") {
            trimmed.to_string()
        } else {
            format!("http://{trimmed}")
        };
        let parsed = Url::parse(&full).map_err(|e| bad(&e.to_string()))?;
        match parsed.scheme() {
            "http" => {}
            "https" => return Err(bad("https is not supported: the admin API serves plain HTTP")),
            _ => return Err(bad("only http:// URLs are supported")),
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(bad("query strings and fragments are not supported"));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(bad("user information is not supported"));
        }
        let host = match parsed.host_str() {
            // The URL form of an IPv6 address is bracketed; `Target` is not.
            Some(h) if !h.is_empty() => h.trim_start_matches('[').trim_end_matches(']'),
            _ => return Err(bad("no host")),
        };
        let port = match parsed.port_or_known_default() {
            Some(p) if p != 0 => p,
            _ => return Err(bad("the port is not a number between 1 and 65535")),
        };
        let prefix = parsed.path().trim_end_matches('/');
        let path = if prefix.ends_with(API_PATH) {
            prefix.to_string()
        } else {
            format!("{prefix}{API_PATH}")
        };
        Ok(Target {
            host: host.to_string(),
            port,
            path,
        })
    }

    /// `HOST:PORT` as it goes in a URL and the `Host` header.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The full URL fetched.
    pub fn url(&self) -> String {
        format!("http://{}{}", self.authority(), self.path)
    }
}

/// A short, lowercase reason for a failed connect.
fn connect_reason(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => "connection refused".into(),
        ConnectionReset => "connection reset".into(),
        TimedOut => "connect timed out".into(),
        HostUnreachable => "host unreachable".into(),
        NetworkUnreachable => "network unreachable".into(),
        AddrNotAvailable => "address not available".into(),
        PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// `GET` the cluster view: the body of a 200 answer.
pub async fn fetch(target: &Target, timeout: Duration) -> std::result::Result<Bytes, StatusError> {
    let url = target.url();
    match tokio::time::timeout(timeout, fetch_inner(&url)).await {
        Ok(result) => result,
        Err(_) => Err(StatusError::Timeout {
            url,
            secs: timeout.as_secs_f64(),
        }),
    }
}

async fn fetch_inner(url: &str) -> std::result::Result<Bytes, StatusError> {
    let protocol = |reason: String| StatusError::Protocol {
        url: url.to_string(),
        reason,
    };
    let client = reqwest::Client::builder()
        .user_agent(concat!("weft-status/", env!("CARGO_PKG_VERSION")))
        .no_proxy()
        .tcp_nodelay(true)
        .http1_only()
        .build()
        .map_err(|e| protocol(format!("cannot build the HTTP client: {e}")))?;
    let mut response = client
        .get(url)
        .header(header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| request_error(url, &e))?;
    let status = response.status();
    let mut body = BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| {
        use std::error::Error as _;
        let cause = e.source().map_or_else(|| e.to_string(), reason_chain);
        protocol(format!("while reading the body: {cause}"))
    })? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(protocol(format!(
                "while reading the body: longer than {MAX_BODY} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    let body = body.freeze();
    if status != reqwest::StatusCode::OK {
        let detail = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(|e| format!(": {e}")))
            .unwrap_or_default();
        return Err(StatusError::HttpStatus {
            url: url.to_string(),
            status: status.as_u16(),
            detail,
        });
    }
    Ok(body)
}

/// A failed request as [`StatusError::Unreachable`] (no connection) or
/// [`StatusError::Protocol`] (connected, no valid answer).
fn request_error(url: &str, e: &reqwest::Error) -> StatusError {
    use std::error::Error as _;
    let mut source = e.source();
    let mut io = None;
    let mut hyper_err = None;
    while let Some(s) = source {
        if io.is_none() {
            io = s.downcast_ref::<std::io::Error>();
        }
        if hyper_err.is_none() {
            hyper_err = s.downcast_ref::<hyper::Error>();
        }
        source = s.source();
    }
    if e.is_connect() {
        let reason = match io {
            Some(io) => connect_reason(io),
            None => e.source().map_or_else(|| e.to_string(), reason_chain),
        };
        return StatusError::Unreachable {
            url: url.to_string(),
            reason,
        };
    }
    // reqwest's own message repeats the URL; the cause says what happened.
    let reason = match (hyper_err, e.source()) {
        (Some(h), _) => hyper_reason(h),
        (None, Some(cause)) => reason_chain(cause),
        (None, None) => e.to_string(),
    };
    StatusError::Protocol {
        url: url.to_string(),
        reason,
    }
}

/// hyper's error with its cause, e.g. "not an HTTP/1.x answer (invalid
/// HTTP version parsed)".
fn hyper_reason(e: &hyper::Error) -> String {
    use std::error::Error as _;
    let mut cause = String::new();
    let mut source = e.source();
    while let Some(s) = source {
        let _ = write!(cause, ": {s}");
        source = s.source();
    }
    if e.is_parse() {
        format!("not an HTTP/1.x answer ({e}{cause})")
    } else if e.is_incomplete_message() {
        format!("the connection closed before a complete answer{cause}")
    } else {
        format!("{e}{cause}")
    }
}

/// An error with its causes, `: `-separated.
fn reason_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let _ = write!(out, ": {s}");
        source = s.source();
    }
    out
}

/// Decodes a cluster view; anything else is [`StatusError::NotWeft`].
pub fn parse_view(url: &str, body: &[u8]) -> std::result::Result<ClusterView, StatusError> {
    let not_weft = |reason: String| StatusError::NotWeft {
        url: url.to_string(),
        reason,
    };
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        let preview: String = String::from_utf8_lossy(&body[..body.len().min(60)])
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        not_weft(format!("not JSON ({e}); it starts with {preview:?}"))
    })?;
    if !value.is_object() || value.get("node").is_none() || value.get("members").is_none() {
        return Err(not_weft(
            "JSON without the \"node\" and \"members\" fields".into(),
        ));
    }
    serde_json::from_value(value).map_err(|e| not_weft(format!("unexpected JSON shape: {e}")))
}

/// A text table: a header row, then rows, columns padded to their widest
/// cell, two spaces apart, indented by two. Columns listed in `right` are
/// right-aligned.
fn table(out: &mut String, headers: &[&str], rows: &[Vec<String>], right: &[usize]) {
    let width = |s: &str| s.chars().count();
    let mut widths: Vec<usize> = headers.iter().map(|h| width(h)).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(width(cell));
            }
        }
    }
    let line = |out: &mut String, cells: Vec<&str>| {
        let mut l = String::from(" ");
        for (i, cell) in cells.iter().enumerate() {
            let pad = widths[i].saturating_sub(width(cell));
            l.push(' ');
            if right.contains(&i) {
                l.push_str(&" ".repeat(pad));
                l.push_str(cell);
            } else {
                l.push_str(cell);
                l.push_str(&" ".repeat(pad));
            }
            l.push(' ');
        }
        let _ = writeln!(out, "{}", l.trim_end());
    };
    line(out, headers.to_vec());
    for row in rows {
        line(out, row.iter().map(String::as_str).collect());
    }
}

/// `█` for `n` of `total`, `░` for the rest, [`BAR_WIDTH`] wide.
fn bar(n: u32, total: u32) -> String {
    let filled = if total == 0 {
        0
    } else {
        ((f64::from(n) / f64::from(total)) * BAR_WIDTH as f64).round() as usize
    }
    .min(BAR_WIDTH);
    format!("{}{}", "█".repeat(filled), "░".repeat(BAR_WIDTH - filled))
}

/// Bytes with a binary unit.
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

fn none_if_empty(list: &[String]) -> String {
    if list.is_empty() {
        "-".into()
    } else {
        list.join(",")
    }
}

/// The terminal rendering of a cluster view fetched from `url`.
pub fn render(v: &ClusterView, url: &str) -> String {
    let mut out = String::new();
    let cluster = v.node.cluster.as_deref().unwrap_or("?");
    let _ = writeln!(
        out,
        "cluster {cluster:?} as seen by {} (incarnation {}{}) via {url}",
        v.node.name,
        v.node.incarnation,
        v.node.addr.map(|a| format!(", {a}")).unwrap_or_default(),
    );

    let count = |s: &str| v.members.iter().filter(|m| m.state == s).count();
    let _ = writeln!(
        out,
        "\nMembers: {} ({} up, {} suspect, {} down)",
        v.members.len(),
        count("up"),
        count("suspect"),
        count("down")
    );
    let rows: Vec<Vec<String>> = v
        .members
        .iter()
        .map(|m| {
            let name = if m.name == v.node.name {
                format!("{} *", m.name)
            } else {
                m.name.clone()
            };
            vec![
                name,
                m.state.clone(),
                m.incarnation.to_string(),
                m.addr.to_string(),
            ]
        })
        .collect();
    table(
        &mut out,
        &["NAME", "STATE", "INCARNATION", "ADDRESS"],
        &rows,
        &[2],
    );

    match &v.shards {
        None => {
            let _ = writeln!(out, "\nShards: not reported");
        }
        Some(s) if s.epoch == 0 => {
            let _ = writeln!(
                out,
                "\nShards: {} shards, no map committed yet (epoch 0)",
                s.count
            );
        }
        Some(s) => {
            let _ = writeln!(
                out,
                "\nShards: epoch {}, {} shards, leader {}, voters {}",
                s.epoch,
                s.count,
                s.leader.as_deref().unwrap_or("unknown"),
                none_if_empty(&s.voters)
            );
            // Owners, plus up members that own nothing (they show as 0).
            let mut names: BTreeSet<&str> = s.owners.keys().map(String::as_str).collect();
            names.extend(
                v.members
                    .iter()
                    .filter(|m| m.state == "up")
                    .map(|m| m.name.as_str()),
            );
            let rows: Vec<Vec<String>> = names
                .into_iter()
                .map(|n| {
                    let owned = s.owners.get(n).copied().unwrap_or(0);
                    vec![n.to_string(), bar(owned, s.count), owned.to_string()]
                })
                .collect();
            table(&mut out, &["NODE", "SHARDS", "COUNT"], &rows, &[2]);
        }
    }

    if !v.links.is_empty() {
        let _ = writeln!(out, "\nLinks of {}:", v.node.name);
        let rows: Vec<Vec<String>> = v
            .links
            .iter()
            .map(|l| {
                vec![
                    l.peer.clone(),
                    if l.connected { "connected" } else { "down" }.to_string(),
                    if l.rtt_micros == 0 {
                        "-".into()
                    } else {
                        format!("{:.1} ms", l.rtt_micros as f64 / 1000.0)
                    },
                    human_bytes(l.queued_bytes as u64),
                    l.bytes_sent.map(human_bytes).unwrap_or_else(|| "-".into()),
                    l.bytes_received.map(human_bytes).unwrap_or_else(|| "-".into()),
                ]
            })
            .collect();
        table(
            &mut out,
            &["PEER", "LINK", "RTT", "QUEUED", "SENT", "RECEIVED"],
            &rows,
            &[2, 3, 4, 5],
        );
    }

    let _ = writeln!(out, "\nStreams: {}", v.streams.len());
    if !v.streams.is_empty() {
        let rows: Vec<Vec<String>> = v
            .streams
            .iter()
            .map(|s| {
                vec![
                    s.key.clone(),
                    s.origin.clone().unwrap_or_else(|| "-".into()),
                    s.role.clone().unwrap_or_else(|| "-".into()),
                    none_if_empty(&s.edges),
                    s.subscribers.to_string(),
                ]
            })
            .collect();
        table(
            &mut out,
            &["KEY", "ORIGIN", "ROLE HERE", "EDGES", "SUBSCRIBERS"],
            &rows,
            &[4],
        );
    }

    let _ = writeln!(out, "\nGroups: {}", v.groups.len());
    if !v.groups.is_empty() {
        let rows: Vec<Vec<String>> = v
            .groups
            .iter()
            .map(|(name, n)| vec![name.clone(), n.to_string()])
            .collect();
        table(&mut out, &["GROUP", "MEMBERS"], &rows, &[1]);
    }

    if let Some(s) = &v.subscriptions {
        let remote = if s.remote.is_empty() {
            "none".to_string()
        } else {
            s.remote
                .iter()
                .map(|(n, p)| format!("{n} {p}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            out,
            "\nSubscriptions: {} on {}; patterns of other nodes: {remote}",
            s.local_total, v.node.name
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> Target {
        match Target::parse(url) {
            Ok(t) => t,
            Err(e) => panic!("{url}: {e}"),
        }
    }

    #[test]
    fn urls() {
        let t = target("http://127.0.0.1:8420");
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("127.0.0.1", 8420, API_PATH)
        );
        assert_eq!(t.url(), "http://127.0.0.1:8420/api/v1/cluster");
        assert_eq!(target("127.0.0.1:8420/").path, API_PATH);
        assert_eq!(target("http://h:1/api/v1/cluster").path, API_PATH);
        assert_eq!(target("http://h:1/weft/n1/").path, "/weft/n1/api/v1/cluster");
        assert_eq!(target("http://example.org").port, 80);
        let v6 = target("http://[::1]:8420");
        assert_eq!(
            (v6.host.as_str(), v6.authority()),
            ("::1", "[::1]:8420".to_string())
        );
        for bad in [
            "https://h:1",
            "ftp://h:1",
            "http://:1",
            "http://h:0",
            "http://h:99999",
            "http://h:x",
            "http://u@h:1",
            "http://h:1/?pretty",
            "http://[::1",
            "http://h h:1",
        ] {
            let e = Target::parse(bad).expect_err(bad);
            assert_eq!(e.exit_code(), crate::error::EXIT_CONFIG, "{bad}");
        }
    }

    #[test]
    fn not_weft_answers() {
        for body in [
            &b"hello"[..],
            b"[1,2]",
            b"{\"status\":\"ok\"}",
            b"{\"node\":1,\"members\":[]}",
        ] {
            let e = parse_view("http://x/api/v1/cluster", body).expect_err("refused");
            assert!(matches!(e, StatusError::NotWeft { .. }), "{e}");
            assert_eq!(e.exit_code(), EXIT_UNAVAILABLE);
        }
    }

    #[test]
    fn renders_every_section() {
        let body = serde_json::json!({
            "node": {"name": "n1", "incarnation": 7, "addr": "127.0.0.1:1", "cluster": "weft"},
            "members": [
                {"name": "n1", "incarnation": 7, "addr": "127.0.0.1:1", "state": "up"},
                {"name": "n2", "incarnation": 8, "addr": "127.0.0.1:2", "state": "down"}
            ],
            "shards": {"epoch": 3, "count": 64, "owners": {"n1": 64}, "leader": "n1", "voters": ["n1"]},
            "streams": [{"key": "live/cam1", "origin": "n1", "origins": ["n1"], "role": "origin",
                         "subscribers": 2, "edges": ["n2"]}],
            "groups": {"workers": 3},
            "links": [{"peer": "n2", "connected": false, "queued_bytes": 0, "rtt_micros": 0}],
            "future_field": true
        });
        let v = parse_view("u", body.to_string().as_bytes()).expect("a view");
        let text = render(&v, "http://127.0.0.1:3/api/v1/cluster");
        for needle in [
            "as seen by n1",
            "2 (1 up, 0 suspect, 1 down)",
            "n1 *",
            "epoch 3, 64 shards, leader n1",
            &"█".repeat(BAR_WIDTH),
            "live/cam1",
            "workers",
        ] {
            assert!(text.contains(needle), "{needle:?} missing:\n{text}");
        }
        assert!(
            text.lines().any(|l| l.contains("n2") && l.contains("down")),
            "{text}"
        );
    }

    #[test]
    fn bars() {
        assert_eq!(bar(0, 0), "░".repeat(BAR_WIDTH));
        assert_eq!(bar(32, 64).chars().filter(|c| *c == '█').count(), BAR_WIDTH / 2);
        assert_eq!(bar(99, 64), "█".repeat(BAR_WIDTH));
    }
}
