//! What the process-test examples (`pg_node`, `relay_node`, `shard_node`)
//! share: the node configuration from their common flags, and JSON
//! strings for the lines they print.

use weft::{NodeConfig, Secret};

/// A node configuration from `--name`, `--listen`, `--join` (repeatable)
/// and `--secret-file` (surrounding whitespace trimmed). Errors name the
/// flag or file.
pub fn node_config(
    name: &str,
    listen: &str,
    join: &[String],
    secret_file: &str,
) -> Result<NodeConfig, String> {
    let secret = std::fs::read(secret_file).map_err(|e| format!("{secret_file}: {e}"))?;
    let mut config = NodeConfig::new(name, Secret::new(secret.trim_ascii().to_vec()));
    config.listen = listen.parse().map_err(|e| format!("--listen: {e}"))?;
    for j in join {
        config.join.push(j.parse().map_err(|e| format!("--join: {e}"))?);
    }
    Ok(config)
}

/// `s` as a JSON string literal.
pub fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"?\"".into())
}
