//! `docs/metrics.md` and `/metrics` list the same families with the same
//! types, so the documentation cannot drift from the code.

mod common;

use std::collections::BTreeMap;

use common::{NodeSpec, SECRET, free_port, http_get, wait_for};

/// Every family documented in `docs/metrics.md`: name → type. A family is
/// a table row whose first cell is a backquoted `weft_` name and whose
/// second cell is `counter` or `gauge`.
fn documented() -> BTreeMap<String, String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/metrics.md");
    let text = std::fs::read_to_string(path).expect("docs/metrics.md");
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let cells: Vec<&str> = line.trim().trim_matches('|').split('|').map(str::trim).collect();
        if cells.len() < 4 {
            continue;
        }
        let (name, kind) = (cells[0].trim_matches('`'), cells[1]);
        if name.starts_with("weft_") && (kind == "counter" || kind == "gauge") {
            let previous = out.insert(name.to_string(), kind.to_string());
            assert!(previous.is_none(), "{name} is documented twice");
        }
    }
    assert!(out.len() > 40, "too few metrics parsed from {path}: {out:?}");
    out
}

/// Every `weft_` family in a scrape: name → type, from `# TYPE` lines.
fn exported(scrape: &str) -> BTreeMap<String, String> {
    scrape
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .filter(|(name, _)| name.starts_with("weft_"))
        .map(|(name, kind)| (name.to_string(), kind.trim().to_string()))
        .collect()
}

#[test]
fn every_metric_is_documented_and_every_documented_metric_is_exported() {
    let doc = documented();
    let dir = tempfile::tempdir().unwrap();
    let secret = common::secret_file(dir.path(), "secret", SECRET);
    let (port, http, client) = (free_port(), free_port(), free_port());
    let data = dir.path().join("a");
    let spec = NodeSpec {
        name: "a",
        port,
        http,
        join: None,
        secret_file: &secret,
        data_dir: &data,
    };
    let mut cmd = spec.command();
    // The NATS families exist only with a client port.
    cmd.arg("--client").arg(common::addr(client).to_string());
    let _node = common::Proc::spawn("a", cmd, &dir.path().join("a.log"));

    // The NATS counters are copied into the recorder by a periodic task.
    let mut scrape = String::new();
    wait_for("a scrape with the NATS families", || {
        match http_get(http, "/metrics") {
            Some((200, body)) if body.contains("# TYPE weft_nats_connections ") => {
                scrape = body;
                true
            }
            _ => false,
        }
    });
    let got = exported(&scrape);

    let missing: Vec<_> = doc.keys().filter(|n| !got.contains_key(*n)).collect();
    assert!(
        missing.is_empty(),
        "documented in docs/metrics.md but not exported: {missing:?}\n{scrape}"
    );
    let undocumented: Vec<_> = got.keys().filter(|n| !doc.contains_key(*n)).collect();
    assert!(
        undocumented.is_empty(),
        "exported but not documented in docs/metrics.md: {undocumented:?}"
    );
    for (name, kind) in &doc {
        assert_eq!(
            &got[name], kind,
            "{name}: documented as {kind}, exported as {}",
            got[name]
        );
    }
    // Conventions the names keep.
    for (name, kind) in &got {
        assert_eq!(
            name.ends_with("_total"),
            kind == "counter",
            "{name} ({kind}): counters and only counters end in _total"
        );
    }
}
