//! NATS subject grammar.
//!
//! A subject is a non-empty sequence of dot-separated tokens. A token is a
//! non-empty run of printable characters other than `.`, space, tab, CR and
//! LF. A *pattern* may also use wildcards as whole tokens: `*` matches
//! exactly one token, `>` matches one or more trailing tokens and may only
//! be the last token. A *publish subject* has no wildcards.

/// Longest subject or pattern accepted, in bytes.
pub const MAX_SUBJECT_LEN: usize = 1024;

/// Why a subject or pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubjectError {
    /// Empty subject.
    #[error("subject is empty")]
    Empty,
    /// Longer than [`MAX_SUBJECT_LEN`].
    #[error("subject is {0} bytes long; at most 1024 are allowed")]
    TooLong(usize),
    /// `a..b`, a leading or a trailing dot.
    #[error("subject {0:?} has an empty token")]
    EmptyToken(String),
    /// Whitespace or a control character.
    #[error("subject {0:?} holds whitespace or a control character")]
    BadCharacter(String),
    /// A wildcard in a publish subject.
    #[error("publish subject {0:?} may not contain wildcards")]
    WildcardInPublish(String),
    /// `>` that is not the last token, or a wildcard inside a token.
    #[error("pattern {0:?} misuses a wildcard ('*' and '>' are whole tokens, '>' only last)")]
    BadWildcard(String),
}

fn check_common(s: &str) -> Result<(), SubjectError> {
    if s.is_empty() {
        return Err(SubjectError::Empty);
    }
    if s.len() > MAX_SUBJECT_LEN {
        return Err(SubjectError::TooLong(s.len()));
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(SubjectError::BadCharacter(s.to_string()));
    }
    if s.split('.').any(str::is_empty) {
        return Err(SubjectError::EmptyToken(s.to_string()));
    }
    Ok(())
}

/// Checks a subject to publish on (no wildcards).
pub fn validate_subject(s: &str) -> Result<(), SubjectError> {
    check_common(s)?;
    if s.split('.').any(|t| t == "*" || t == ">") {
        return Err(SubjectError::WildcardInPublish(s.to_string()));
    }
    Ok(())
}

/// Checks a subscription pattern (wildcards allowed).
pub fn validate_pattern(s: &str) -> Result<(), SubjectError> {
    check_common(s)?;
    let tokens: Vec<&str> = s.split('.').collect();
    for (i, t) in tokens.iter().enumerate() {
        let is_last = i + 1 == tokens.len();
        match *t {
            "*" => {}
            ">" if is_last => {}
            ">" => return Err(SubjectError::BadWildcard(s.to_string())),
            _ => {}
        }
    }
    Ok(())
}

/// Checks a queue group name: one token, no wildcards.
pub fn validate_queue(q: &str) -> Result<(), SubjectError> {
    validate_subject(q)?;
    if q.contains('.') {
        return Err(SubjectError::BadCharacter(q.to_string()));
    }
    Ok(())
}

/// Whether `pattern` matches `subject` (both assumed valid). The reference
/// matcher: the trie must agree with it.
pub fn matches(pattern: &str, subject: &str) -> bool {
    let mut p = pattern.split('.');
    let mut s = subject.split('.');
    loop {
        match (p.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammar() {
        assert!(validate_subject("foo.bar").is_ok());
        assert!(validate_subject("foo").is_ok());
        assert_eq!(validate_subject(""), Err(SubjectError::Empty));
        assert!(matches!(
            validate_subject("foo..bar"),
            Err(SubjectError::EmptyToken(_))
        ));
        assert!(matches!(
            validate_subject(".foo"),
            Err(SubjectError::EmptyToken(_))
        ));
        assert!(matches!(
            validate_subject("foo."),
            Err(SubjectError::EmptyToken(_))
        ));
        assert!(matches!(
            validate_subject("foo bar"),
            Err(SubjectError::BadCharacter(_))
        ));
        assert!(matches!(
            validate_subject("foo.*"),
            Err(SubjectError::WildcardInPublish(_))
        ));
        assert!(matches!(
            validate_subject("foo.>"),
            Err(SubjectError::WildcardInPublish(_))
        ));
        assert!(validate_pattern("foo.*.bar").is_ok());
        assert!(validate_pattern("foo.>").is_ok());
        assert!(validate_pattern(">").is_ok());
        assert!(matches!(
            validate_pattern("foo.>.bar"),
            Err(SubjectError::BadWildcard(_))
        ));
        assert!(
            validate_pattern("foo*.bar").is_ok(),
            "a '*' inside a token is a literal"
        );
        assert!(validate_subject(&"a".repeat(2000)).is_err());
        assert!(validate_queue("workers").is_ok());
        assert!(validate_queue("a.b").is_err());
    }

    #[test]
    fn wildcard_semantics() {
        assert!(matches("foo.*", "foo.a"));
        assert!(!matches("foo.*", "foo.a.b"), "* is one token");
        assert!(!matches("foo.*", "foo"));
        assert!(matches("foo.>", "foo.a"));
        assert!(matches("foo.>", "foo.a.b"));
        assert!(!matches("foo.>", "foo"), "> needs at least one token");
        assert!(matches("*.b.>", "a.b.c.d"));
        assert!(matches("foo", "foo"));
        assert!(!matches("foo", "foo.bar"));
        assert!(matches(">", "anything.at.all"));
    }
}
