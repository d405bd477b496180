//! Cluster secrets: reading them from files and generating new ones.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{Context, bail};
use rand::RngExt;
use weft::Secret;
use weft::config::MIN_SECRET_LEN;

/// Reads a secret file; surrounding whitespace (a trailing newline, say)
/// is not part of the secret.
pub fn read(path: &Path) -> anyhow::Result<Secret> {
    let raw = std::fs::read(path).with_context(|| format!("cannot read secret file {}", path.display()))?;
    let secret = raw.trim_ascii();
    if secret.len() < MIN_SECRET_LEN {
        bail!(
            "secret file {}: the secret has {} bytes after trimming whitespace; at least {MIN_SECRET_LEN} are required",
            path.display(),
            secret.len()
        );
    }
    Ok(Secret::new(secret))
}

/// A new random secret: 32 random bytes as 64 lowercase hex characters
/// (printable, so it can live in a text file).
pub fn generate_hex() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `secret` plus a newline to a new file readable only by its owner
/// (mode 0600). Fails if the file exists.
pub fn write_new(path: &Path, secret: &str) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create secret file {}", path.display()))?;
    writeln!(file, "{secret}").with_context(|| format!("cannot write secret file {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_and_checks_length() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        std::fs::write(&p, "  0123456789abcdef\n").unwrap();
        assert_eq!(read(&p).unwrap().expose(), b"0123456789abcdef");
        std::fs::write(&p, "short\n").unwrap();
        assert!(read(&p).unwrap_err().to_string().contains("at least 16"));
        assert!(
            read(&dir.path().join("missing"))
                .unwrap_err()
                .to_string()
                .contains("cannot read")
        );
    }

    #[test]
    fn generated_secret_is_private_hex() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        let s = generate_hex();
        assert_eq!(s.len(), 64);
        write_new(&p, &s).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(read(&p).unwrap().expose(), s.as_bytes());
    }
}
