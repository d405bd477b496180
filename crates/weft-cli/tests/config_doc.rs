//! docs/guide.md section 2 documents every key of every configuration
//! table the `weft` crate reads from `--config`, with its default, and
//! nothing else: a field added to a library config type without a guide
//! row (or a row left behind by a removed field) fails here.

use std::collections::BTreeMap;

use weft::{
    LinkConfig, MembershipConfig, MessagingConfig, PubSubConfig, RelayConfig, ShardConfig, TlsConfig,
};

/// Key → default cell of the table under the `### 2.x `[name]`` heading.
fn documented(guide: &str, table: &str) -> BTreeMap<String, String> {
    let heading = format!("`[{table}]`");
    let mut lines = guide
        .lines()
        .skip_while(|l| !(l.starts_with("### 2.") && l.contains(&heading)));
    assert!(
        lines.next().is_some(),
        "docs/guide.md has no section 2 heading for {heading}"
    );
    let mut out = BTreeMap::new();
    for line in lines.take_while(|l| !l.starts_with("## ") && !l.starts_with("### ")) {
        let cells: Vec<&str> = line.trim().trim_matches('|').split('|').map(str::trim).collect();
        if cells.len() < 3 || !cells[0].starts_with('`') {
            continue;
        }
        // A cell may name several keys: "`user`, `password`".
        for key in cells[0].split(',').map(|k| k.trim().trim_matches('`')) {
            let previous = out.insert(key.to_string(), cells[1].to_string());
            assert!(previous.is_none(), "[{table}] {key} is documented twice");
        }
    }
    assert!(!out.is_empty(), "no key rows under {heading}");
    out
}

/// A config value as the guide writes it: integers and booleans bare,
/// strings quoted.
fn rendered(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

fn keys_of<T: serde::Serialize>(value: &T) -> toml::Table {
    toml::Table::try_from(value).expect("a config type serialises to a TOML table")
}

#[test]
fn every_config_key_is_in_the_guide_with_its_default() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/guide.md");
    let guide = std::fs::read_to_string(path).expect("docs/guide.md");
    let tables = [
        ("link", keys_of(&LinkConfig::default())),
        ("membership", keys_of(&MembershipConfig::default())),
        ("messaging", keys_of(&MessagingConfig::default())),
        ("pubsub", keys_of(&PubSubConfig::default())),
        ("relay", keys_of(&RelayConfig::default())),
        ("shards", keys_of(&ShardConfig::default())),
    ];
    let mut problems = Vec::new();
    for (table, defaults) in &tables {
        let doc = documented(&guide, table);
        for (key, value) in defaults {
            let want = rendered(value);
            match doc.get(key) {
                None => problems.push(format!("[{table}] {key} (default {want}) is not documented")),
                Some(cell) => {
                    // "16777216 (16 MiB)" documents 16777216.
                    let cell = cell.replace('`', "");
                    if cell != want && !cell.starts_with(&format!("{want} ")) {
                        problems.push(format!("[{table}] {key}: guide says {cell:?}, default is {want}"));
                    }
                }
            }
        }
        for key in doc.keys().filter(|k| !defaults.contains_key(*k)) {
            problems.push(format!("[{table}] {key} is documented but is no key"));
        }
    }
    // `[tls]` has required paths, so no default value: keys only.
    let tls = keys_of(&TlsConfig {
        cert: "c".into(),
        key: "k".into(),
        ca: "a".into(),
        server_name: "weft".into(),
    });
    let doc = documented(&guide, "tls");
    let doc_keys: Vec<&String> = doc.keys().collect();
    let tls_keys: Vec<&String> = tls.keys().collect();
    if doc_keys != tls_keys {
        problems.push(format!("[tls] documents {doc_keys:?}, keys are {tls_keys:?}"));
    }
    assert!(
        problems.is_empty(),
        "docs/guide.md section 2 is out of date:\n{}",
        problems.join("\n")
    );
}
