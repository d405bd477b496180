//! The dashboard page (`GET /` on the admin port) rendered by a real
//! browser, headless Chromium: a 3-node cluster shows every member up,
//! then a killed member down; a node that stops answering shows
//! "unreachable, retrying" while the page keeps polling. Also the admin
//! API's answers to bad input.
//!
//! Chromium: `chromium` on PATH (Debian package `chromium`) or the path in
//! `WEFT_CHROMIUM`. Without it the browser checks are skipped with a loud
//! message, unless `WEFT_REQUIRE_CHROMIUM=1` (set by `.ci/run`), which
//! makes its absence a failure.

mod common;
mod fake_http;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{Proc, http_get, http_request, wait_for};
use fake_http::{FakeServer, Reply};

/// The page as the binary embeds it.
const PAGE: &str = include_str!("../src/dashboard/index.html");

/// The browser to drive, or None (after saying so loudly) when it is
/// absent and not required.
fn chromium() -> Option<PathBuf> {
    let required = std::env::var("WEFT_REQUIRE_CHROMIUM").is_ok_and(|v| !v.is_empty() && v != "0");
    let found = match std::env::var_os("WEFT_CHROMIUM") {
        Some(p) => Some(PathBuf::from(p)),
        None => std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("chromium"))
                .find(|p| p.is_file())
        }),
    };
    match found {
        Some(p) => Some(p),
        None if required => panic!(
            "WEFT_REQUIRE_CHROMIUM is set but chromium is not installed (apt-get install -y chromium, or set WEFT_CHROMIUM)"
        ),
        None => {
            eprintln!(
                "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
                 !!! SKIPPED: the dashboard browser test needs chromium       !!!\n\
                 !!! (apt-get install -y chromium, or WEFT_CHROMIUM=PATH).    !!!\n\
                 !!! Set WEFT_REQUIRE_CHROMIUM=1 to make this a failure.      !!!\n\
                 !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
            );
            None
        }
    }
}

/// Loads `url` in headless Chromium, lets the page run for 5 s of virtual
/// time (about five polls), and returns the rendered DOM.
fn dump_dom(browser: &Path, url: &str, dir: &Path) -> String {
    let run = common::free_port();
    let out = dir.join(format!("dom-{run}.html"));
    let log = dir.join(format!("chromium-{run}.log"));
    let mut cmd = Command::new(browser);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--virtual-time-budget=5000",
    ])
    .arg(format!(
        "--user-data-dir={}",
        dir.join(format!("profile-{run}")).display()
    ))
    .arg("--dump-dom")
    .arg(url)
    .stdin(Stdio::null())
    .stdout(std::fs::File::create(&out).expect("dom file"))
    .stderr(std::fs::File::create(&log).expect("log file"));
    let child = cmd.spawn().expect("spawn chromium");
    let mut proc = Proc::from_child("chromium", child, Some(&log));
    let status = proc.wait_exit(common::LIMIT);
    assert!(status.success(), "chromium failed: {status}\n{}", proc.log());
    std::fs::read_to_string(&out).expect("read dom")
}

/// The value of attribute `name` in the start tag `tag` (`<tr a="b" ...>`).
fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    let len = tag[start..].find('"')?;
    Some(&tag[start..start + len])
}

/// The start tags holding attribute `name`.
fn tags_with<'a>(dom: &'a str, name: &str) -> Vec<&'a str> {
    let needle = format!(" {name}=\"");
    dom.match_indices(&needle)
        .filter_map(|(i, _)| {
            let open = dom[..i].rfind('<')?;
            let close = i + dom[i..].find('>')?;
            Some(&dom[open..=close])
        })
        .collect()
}

/// Member name → state, as the rendered page shows them.
fn member_states(dom: &str) -> BTreeMap<String, String> {
    tags_with(dom, "data-member")
        .into_iter()
        .filter_map(|t| {
            Some((
                attr(t, "data-member")?.to_string(),
                attr(t, "data-state")?.to_string(),
            ))
        })
        .collect()
}

/// The `data-status` of the page's status badge.
fn page_status(dom: &str) -> Option<String> {
    tags_with(dom, "data-status")
        .into_iter()
        .find(|t| attr(t, "id") == Some("status"))
        .and_then(|t| attr(t, "data-status").map(str::to_string))
}

/// Loads the page until `ok` holds for its DOM (a few attempts: each
/// waits for real HTTP answers within a virtual time budget); returns the
/// last DOM.
fn dump_until(browser: &Path, url: &str, dir: &Path, ok: impl Fn(&str) -> bool) -> String {
    let mut dom = String::new();
    for _ in 0..5 {
        dom = dump_dom(browser, url, dir);
        if ok(&dom) {
            break;
        }
    }
    dom
}

fn states(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn dashboard_shows_the_cluster_and_admin_refuses_bad_input() {
    let dir = tempfile::tempdir().expect("tempdir");
    let trio = common::Trio::new(dir.path());
    let https = trio.https.clone();
    let mut nodes = trio.start();
    let h1 = https[0];

    // The page itself: static HTML, no external resources.
    let (status, body) = http_get(h1, "/").expect("GET /");
    assert_eq!(status, 200);
    assert_eq!(body, PAGE, "GET / serves the embedded page");
    assert!(body.contains("/api/v1/cluster"));
    for external in ["http://", "https://", "//cdn"] {
        assert!(!body.contains(external), "the page refers to {external}");
    }
    let (status, body) = http_request(h1, "POST", "/").expect("POST /");
    assert_eq!(status, 405, "{body}");
    assert!(json_error(&body), "{body}");

    // Bad input to the cluster view: 400 with a JSON error.
    for query in ["?pretty=x", "?pretty=yes", "?verbose=1", "?pretty=true&x=1"] {
        let (status, body) = http_get(h1, &format!("/api/v1/cluster{query}")).expect("GET");
        assert_eq!(status, 400, "{query}: {body}");
        assert!(json_error(&body), "{query}: {body}");
    }
    let (status, pretty) = http_get(h1, "/api/v1/cluster?pretty=true").expect("GET pretty");
    assert_eq!(status, 200);
    assert!(pretty.contains("\n  \"members\""), "indented: {pretty}");
    let view: serde_json::Value = serde_json::from_str(&pretty).expect("pretty JSON");
    assert_eq!(view["node"]["name"], "n1");
    let (status, compact) = http_get(h1, "/api/v1/cluster?pretty=false").expect("GET compact");
    assert_eq!(status, 200);
    assert!(!compact.contains('\n'));
    // The additive fields the page uses: link counters and interest.
    let view: serde_json::Value = serde_json::from_str(&compact).expect("JSON");
    for link in view["links"].as_array().expect("links") {
        for key in ["bytes_sent", "bytes_received", "frames_sent", "frames_received"] {
            assert!(link[key].is_u64(), "link without {key}: {link}");
        }
    }
    assert!(view["subscriptions"]["local"].is_array(), "{view}");
    assert!(view["subscriptions"]["remote"].is_object(), "{view}");

    let Some(browser) = chromium() else { return };
    let url = format!("http://127.0.0.1:{h1}/");
    let all_up = states(&[("n1", "up"), ("n2", "up"), ("n3", "up")]);
    let dom = dump_until(&browser, &url, dir.path(), |d| member_states(d) == all_up);
    assert_eq!(member_states(&dom), all_up, "rendered members:\n{dom}");
    assert_eq!(page_status(&dom).as_deref(), Some("live"), "{dom}");
    let mut links: Vec<_> = tags_with(&dom, "data-link")
        .into_iter()
        .filter_map(|t| attr(t, "data-link"))
        .collect();
    links.sort_unstable();
    assert_eq!(links, ["n2", "n3"], "link rows");

    // A member crashes: the page shows it down.
    nodes[2].kill();
    wait_for("n1 sees n3 down", || common::all_see(&[h1], &["n3"], "down"));
    let n3_down = states(&[("n1", "up"), ("n2", "up"), ("n3", "down")]);
    let dom = dump_until(&browser, &url, dir.path(), |d| member_states(d) == n3_down);
    assert_eq!(member_states(&dom), n3_down, "rendered members:\n{dom}");
}

fn json_error(body: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(body).is_ok_and(|v| v["error"].is_string())
}

/// A node that answers once, then stops answering: the page keeps the
/// last view, says "unreachable, retrying" and keeps polling.
#[test]
fn dashboard_keeps_polling_an_unreachable_node() {
    let Some(browser) = chromium() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    // Two answers a poll apart: n1 sent 1 MiB to n2 in between.
    let view = |sent: u64| {
        serde_json::json!({
            "node": {"name": "n1", "incarnation": 1, "addr": "127.0.0.1:1", "cluster": "weft"},
            "members": [
                {"name": "n1", "incarnation": 1, "addr": "127.0.0.1:1", "state": "up"},
                {"name": "n2", "incarnation": 2, "addr": "127.0.0.1:2", "state": "up"}
            ],
            "shards": {"epoch": 0, "count": 64, "owners": {}, "leader": null, "voters": []},
            "streams": [], "groups": {},
            "links": [{"peer": "n2", "incarnation": 2, "connected": true, "queued_bytes": 0,
                       "rtt_micros": 100, "frames_sent": sent / 1024, "bytes_sent": sent,
                       "frames_received": 0, "bytes_received": 0}]
        })
        .to_string()
    };
    let views = [view(0), view(1 << 20)];
    let server = FakeServer::start(move |path, n| match path {
        "/" => fake_http::response("200 OK", "text/html; charset=utf-8", PAGE.as_bytes()),
        "/api/v1/cluster" if n < 2 => fake_http::response("200 OK", "application/json", views[n].as_bytes()),
        "/api/v1/cluster" => Reply::Close,
        _ => fake_http::response("404 Not Found", "application/json", b"{\"error\":\"not found\"}"),
    });
    let dom = dump_dom(&browser, &format!("{}/", server.url()), dir.path());
    assert_eq!(page_status(&dom).as_deref(), Some("unreachable"), "{dom}");
    assert!(dom.contains("unreachable, retrying"), "{dom}");
    assert_eq!(
        member_states(&dom),
        states(&[("n1", "up"), ("n2", "up")]),
        "the last view stays on screen"
    );
    // The link rate from the two answers: 1 MiB over about a second (of
    // the page's virtual time), shown and kept.
    let link = tags_with(&dom, "data-link")
        .into_iter()
        .find(|t| attr(t, "data-link") == Some("n2"))
        .unwrap_or_else(|| panic!("no link row for n2:\n{dom}"));
    let out: f64 = attr(link, "data-out-bps")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no out rate: {link}"));
    assert!(
        out > 0.0 && out <= f64::from(1 << 20) * 1.01,
        "out rate {out} B/s"
    );
    assert_eq!(attr(link, "data-in-bps"), Some("0"), "{link}");
    assert!(
        server.hits("/api/v1/cluster") >= 4,
        "kept polling: {} requests",
        server.hits("/api/v1/cluster")
    );
}
