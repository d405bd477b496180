//! A node's identity: its configured name and the incarnation of the
//! running process.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Identity of one running node process.
///
/// `name` is chosen by the operator and is stable across restarts.
/// `incarnation` is chosen by the process when it starts (by default the
/// wall clock in milliseconds) and is strictly greater after a restart, so
/// peers can tell a restarted node from the previous run and forget the old
/// run's state. Two `NodeId`s are the same member only if both fields match.
///
/// The ordering (name, then incarnation) is the deterministic tie-break used
/// wherever two nodes must agree on a choice, such as which of two
/// simultaneous connections survives.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeId {
    /// Operator-chosen node name, unique within the cluster.
    pub name: String,
    /// Process incarnation; larger means a later run of the same name.
    pub incarnation: u64,
}

impl NodeId {
    /// Builds an identity from a name and an incarnation.
    pub fn new(name: impl Into<String>, incarnation: u64) -> Self {
        Self {
            name: name.into(),
            incarnation,
        }
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.name, self.incarnation)
    }
}

/// Checks that a node or cluster name is usable: 1 to 64 bytes of ASCII
/// letters, digits, `-`, `_` and `.`.
///
/// Names appear in logs, metrics labels and URLs, so they are kept to a
/// conservative alphabet.
pub fn validate_name(name: &str) -> Result<(), InvalidName> {
    if name.is_empty() || name.len() > 64 {
        return Err(InvalidName::Length(name.len()));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(InvalidName::Character(c));
    }
    Ok(())
}

/// Why a name was refused by [`validate_name`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidName {
    /// The name is empty or longer than 64 bytes.
    #[error("name must be 1 to 64 bytes long, got {0}")]
    Length(usize),
    /// The name holds a character outside `[A-Za-z0-9._-]`.
    #[error("name holds the character {0:?}; use letters, digits, '-', '_' and '.'")]
    Character(char),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_name("n1").is_ok());
        assert!(validate_name("edge-eu.1_a").is_ok());
        assert_eq!(validate_name(""), Err(InvalidName::Length(0)));
        assert_eq!(validate_name("a b"), Err(InvalidName::Character(' ')));
        assert!(validate_name(&"x".repeat(65)).is_err());
    }

    #[test]
    fn order_is_name_then_incarnation() {
        assert!(NodeId::new("a", 9) < NodeId::new("b", 1));
        assert!(NodeId::new("a", 1) < NodeId::new("a", 2));
    }
}
