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

/// What one scan of a subject or pattern found, for the checks that
/// follow it. Errors keep the precedence of the checks one after the
/// other: length, then characters, then empty tokens, then wildcards.
struct Scan {
    empty_token: bool,
    /// A `*` or `>` token somewhere.
    wildcard: bool,
    /// A `>` token that is not the last one.
    inner_tail: bool,
}

/// Whether `c` is refused in a subject: whitespace or a control
/// character (Unicode definitions, as `char::is_whitespace` and
/// `char::is_control`).
#[inline]
fn bad_char(c: char) -> bool {
    c.is_whitespace() || c.is_control()
}

/// One pass over the bytes of `s`: characters, token boundaries and
/// wildcard tokens together. Non-ASCII text (rare in subjects) is checked
/// by `char` afterwards.
fn scan(s: &str) -> Result<Scan, SubjectError> {
    if s.is_empty() {
        return Err(SubjectError::Empty);
    }
    if s.len() > MAX_SUBJECT_LEN {
        return Err(SubjectError::TooLong(s.len()));
    }
    let bytes = s.as_bytes();
    let mut out = Scan {
        empty_token: false,
        wildcard: false,
        inner_tail: false,
    };
    let mut non_ascii = false;
    let mut start = 0;
    let mut i = 0;
    // Eight bytes at a time: a chunk of printable ASCII (nothing at or
    // below space, no DEL, nothing non-ASCII) only needs its dots found,
    // which one mask gives; any other chunk goes byte by byte.
    while let Some(chunk) = bytes.get(i..i + 8) {
        let w = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
        if printable_ascii(w) {
            let mut dots = zero_bytes(w ^ (ONES * u64::from(b'.')));
            while dots != 0 {
                let at = i + (dots.trailing_zeros() / 8) as usize;
                token(&bytes[start..at], false, &mut out);
                start = at + 1;
                dots &= dots - 1;
            }
        } else {
            for at in i..i + 8 {
                byte(bytes, at, &mut start, &mut non_ascii, &mut out)
                    .map_err(|()| SubjectError::BadCharacter(s.to_string()))?;
            }
        }
        i += 8;
    }
    for at in i..bytes.len() {
        byte(bytes, at, &mut start, &mut non_ascii, &mut out)
            .map_err(|()| SubjectError::BadCharacter(s.to_string()))?;
    }
    token(&bytes[start..], true, &mut out);
    if non_ascii && s.chars().any(bad_char) {
        return Err(SubjectError::BadCharacter(s.to_string()));
    }
    Ok(out)
}

/// One byte of [`scan`]'s slow path; `Err` for a refused ASCII byte.
#[inline]
fn byte(bytes: &[u8], at: usize, start: &mut usize, non_ascii: &mut bool, out: &mut Scan) -> Result<(), ()> {
    match bytes[at] {
        b'.' => {
            token(&bytes[*start..at], false, out);
            *start = at + 1;
        }
        // ASCII control characters (C0 and DEL) and the ASCII whitespace
        // that is not control (space).
        0..=0x20 | 0x7f => return Err(()),
        0x80.. => *non_ascii = true,
        _ => {}
    }
    Ok(())
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;
const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;

/// 0x80 in every byte of `x` that is zero, 0 elsewhere (exact: no carry
/// crosses bytes).
#[inline]
fn zero_bytes(x: u64) -> u64 {
    !(((x & LOW7) + LOW7) | x | LOW7)
}

/// Whether all eight bytes of `w` are printable ASCII (0x21..=0x7e).
#[inline]
fn printable_ascii(w: u64) -> bool {
    // With every byte below 0x80, `w - 0x21…` borrows into a byte's high
    // bit exactly when some byte is below 0x21 (the classic "has less
    // than" test, exact as a yes/no for n ≤ 128).
    (w & HIGH) == 0 && (w.wrapping_sub(ONES * 0x21) & !w & HIGH) == 0 && zero_bytes(w ^ (ONES * 0x7f)) == 0
}

#[inline]
fn token(t: &[u8], last: bool, out: &mut Scan) {
    match t {
        [] => out.empty_token = true,
        [b'*'] => out.wildcard = true,
        [b'>'] => {
            out.wildcard = true;
            if !last {
                out.inner_tail = true;
            }
        }
        _ => {}
    }
}

/// Checks a subject to publish on (no wildcards). One pass over the
/// bytes.
pub fn validate_subject(s: &str) -> Result<(), SubjectError> {
    let found = scan(s)?;
    if found.empty_token {
        return Err(SubjectError::EmptyToken(s.to_string()));
    }
    if found.wildcard {
        return Err(SubjectError::WildcardInPublish(s.to_string()));
    }
    Ok(())
}

/// Checks a subscription pattern (wildcards allowed).
pub fn validate_pattern(s: &str) -> Result<(), SubjectError> {
    let found = scan(s)?;
    if found.empty_token {
        return Err(SubjectError::EmptyToken(s.to_string()));
    }
    if found.inner_tail {
        return Err(SubjectError::BadWildcard(s.to_string()));
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

    /// The checks one after the other, as they were before the single
    /// pass: the single pass must agree with them on every input.
    fn reference_common(s: &str) -> Result<(), SubjectError> {
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

    fn reference_subject(s: &str) -> Result<(), SubjectError> {
        reference_common(s)?;
        if s.split('.').any(|t| t == "*" || t == ">") {
            return Err(SubjectError::WildcardInPublish(s.to_string()));
        }
        Ok(())
    }

    fn reference_pattern(s: &str) -> Result<(), SubjectError> {
        reference_common(s)?;
        let tokens: Vec<&str> = s.split('.').collect();
        for (i, t) in tokens.iter().enumerate() {
            if *t == ">" && i + 1 != tokens.len() {
                return Err(SubjectError::BadWildcard(s.to_string()));
            }
        }
        Ok(())
    }

    proptest::proptest! {
        #[test]
        fn single_pass_agrees_with_the_reference(
            s in "[a.*> \\t\u{7f}\u{85}\u{a0}\u{3000}é\u{1}]{0,12}|[ab.]{0,30}|[abcdefgh.*>\u{7f}\u{20}\u{21}\u{2d}\u{2f}\u{80}]{0,40}"
        ) {
            proptest::prop_assert_eq!(validate_subject(&s), reference_subject(&s));
            proptest::prop_assert_eq!(validate_pattern(&s), reference_pattern(&s));
        }
    }
}
