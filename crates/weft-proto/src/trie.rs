//! A subject trie: subscriptions by pattern, matched against subjects.
//!
//! Each trie level is one token: literal children by name, one child for
//! `*`, and a set for `>` (which ends a pattern). Matching walks the
//! literal and `*` branches in step with the subject's tokens and collects
//! `>` sets on the way. Results are cached per subject; any insert or
//! remove that changes the trie clears the cache, so a cached result is
//! always what a fresh walk would return.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// Cached subjects at most; the cache is cleared when it fills.
pub const DEFAULT_CACHE_ENTRIES: usize = 4096;

#[derive(Debug)]
struct Level<T> {
    literal: HashMap<Box<str>, Level<T>>,
    star: Option<Box<Level<T>>>,
    /// Values of patterns ending in `>` at this level.
    tail: BTreeSet<T>,
    /// Values of patterns ending exactly here.
    here: BTreeSet<T>,
}

impl<T> Default for Level<T> {
    fn default() -> Self {
        Self {
            literal: HashMap::new(),
            star: None,
            tail: BTreeSet::new(),
            here: BTreeSet::new(),
        }
    }
}

impl<T> Level<T> {
    fn is_empty(&self) -> bool {
        self.literal.is_empty() && self.star.is_none() && self.tail.is_empty() && self.here.is_empty()
    }
}

/// Patterns to values, matched by subject. `T` is whatever identifies a
/// subscriber (a local subscription id, a remote node, ...).
///
/// Patterns and subjects must be valid (see [`crate::subject`]); the trie
/// does not check them.
#[derive(Debug)]
pub struct SubjectTrie<T> {
    root: Level<T>,
    len: usize,
    cache: HashMap<Arc<str>, Arc<[T]>>,
    /// The last subject matched through the cache and its result: a
    /// publisher usually repeats one subject, and comparing it costs less
    /// than hashing it. Cleared with the cache.
    last: Option<(Arc<str>, Arc<[T]>)>,
    cache_cap: usize,
    cache_hits: u64,
}

impl<T: Ord + Clone> Default for SubjectTrie<T> {
    fn default() -> Self {
        Self::new(DEFAULT_CACHE_ENTRIES)
    }
}

impl<T: Ord + Clone> SubjectTrie<T> {
    /// An empty trie caching up to `cache_entries` subjects (0: no cache).
    pub fn new(cache_entries: usize) -> Self {
        Self {
            root: Level::default(),
            len: 0,
            cache: HashMap::new(),
            last: None,
            cache_cap: cache_entries,
            cache_hits: 0,
        }
    }

    /// Number of (pattern, value) pairs held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the trie holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Matches answered from the cache so far.
    pub fn cache_hits(&self) -> u64 {
        self.cache_hits
    }

    /// Adds `value` under `pattern`; false if it was already there.
    pub fn insert(&mut self, pattern: &str, value: T) -> bool {
        let mut level = &mut self.root;
        let mut tokens = pattern.split('.').peekable();
        while let Some(tok) = tokens.next() {
            let last = tokens.peek().is_none();
            if tok == ">" && last {
                let added = level.tail.insert(value);
                return self.changed(added);
            }
            level = if tok == "*" {
                level.star.get_or_insert_with(Box::default)
            } else {
                level.literal.entry(tok.into()).or_default()
            };
        }
        let added = level.here.insert(value);
        self.changed(added)
    }

    fn changed(&mut self, added: bool) -> bool {
        if added {
            self.len += 1;
            self.clear_cache();
        }
        added
    }

    /// Removes `value` from `pattern`; false if it was not there. Empty
    /// branches are pruned.
    pub fn remove(&mut self, pattern: &str, value: &T) -> bool {
        let tokens: Vec<&str> = pattern.split('.').collect();
        let removed = Self::remove_at(&mut self.root, &tokens, value);
        if removed {
            self.len -= 1;
            self.clear_cache();
        }
        removed
    }

    fn remove_at(level: &mut Level<T>, tokens: &[&str], value: &T) -> bool {
        let Some((tok, rest)) = tokens.split_first() else {
            return level.here.remove(value);
        };
        if *tok == ">" && rest.is_empty() {
            return level.tail.remove(value);
        }
        if *tok == "*" {
            let Some(child) = level.star.as_mut() else {
                return false;
            };
            let removed = Self::remove_at(child, rest, value);
            if removed && child.is_empty() {
                level.star = None;
            }
            removed
        } else {
            let Some(child) = level.literal.get_mut(*tok) else {
                return false;
            };
            let removed = Self::remove_at(child, rest, value);
            if removed && child.is_empty() {
                level.literal.remove(*tok);
            }
            removed
        }
    }

    fn clear_cache(&mut self) {
        self.cache.clear();
        self.last = None;
    }

    /// Every value whose pattern matches `subject`, sorted, without
    /// duplicates.
    pub fn matches(&mut self, subject: &str) -> Arc<[T]> {
        if let Some((last, hit)) = &self.last
            && **last == *subject
        {
            self.cache_hits += 1;
            return hit.clone();
        }
        if let Some((key, hit)) = self.cache.get_key_value(subject) {
            self.cache_hits += 1;
            let hit = hit.clone();
            self.last = Some((key.clone(), hit.clone()));
            return hit;
        }
        let result: Arc<[T]> = self.match_uncached(subject).into_iter().collect();
        if self.cache_cap > 0 {
            if self.cache.len() >= self.cache_cap {
                self.clear_cache();
            }
            let key: Arc<str> = subject.into();
            self.cache.insert(key.clone(), result.clone());
            self.last = Some((key, result.clone()));
        }
        result
    }

    /// Matches without touching the cache (usable through `&self`).
    pub fn match_uncached(&self, subject: &str) -> BTreeSet<T> {
        let tokens: Vec<&str> = subject.split('.').collect();
        let mut out = BTreeSet::new();
        Self::collect(&self.root, &tokens, &mut out);
        out
    }

    fn collect(level: &Level<T>, tokens: &[&str], out: &mut BTreeSet<T>) {
        let Some((tok, rest)) = tokens.split_first() else {
            out.extend(level.here.iter().cloned());
            return;
        };
        // `>` at this level matches the one-or-more remaining tokens.
        out.extend(level.tail.iter().cloned());
        if let Some(child) = level.literal.get(*tok) {
            Self::collect(child, rest, out);
        }
        if let Some(child) = &level.star {
            Self::collect(child, rest, out);
        }
    }

    /// Whether any pattern matches `subject`.
    pub fn has_match(&self, subject: &str) -> bool {
        if let Some(hit) = self.cache.get(subject) {
            return !hit.is_empty();
        }
        !self.match_uncached(subject).is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subject::matches;
    use proptest::prelude::*;

    #[test]
    fn basic_matching() {
        let mut t = SubjectTrie::new(16);
        t.insert("foo.*", 1);
        t.insert("foo.>", 2);
        t.insert("foo.bar", 3);
        t.insert(">", 4);
        t.insert("*.bar", 5);
        assert_eq!(&*t.matches("foo.bar"), &[1, 2, 3, 4, 5]);
        assert_eq!(&*t.matches("foo.a.b"), &[2, 4], "foo.* does not match foo.a.b");
        assert_eq!(&*t.matches("foo"), &[4], "foo.> does not match foo");
        assert_eq!(t.len(), 5);
        assert!(t.remove("foo.*", &1));
        assert!(!t.remove("foo.*", &1));
        assert_eq!(&*t.matches("foo.bar"), &[2, 3, 4, 5], "cache invalidated");
        for (p, v) in [("foo.>", 2), ("foo.bar", 3), (">", 4), ("*.bar", 5)] {
            assert!(t.remove(p, &v));
        }
        assert!(t.is_empty());
        assert!(t.root.is_empty(), "pruned");
    }

    #[test]
    fn cache_is_used_and_invalidated() {
        let mut t = SubjectTrie::new(16);
        t.insert("a.b", 1);
        let _ = t.matches("a.b");
        let _ = t.matches("a.b");
        assert_eq!(t.cache_hits(), 1);
        t.insert("a.*", 2);
        assert_eq!(&*t.matches("a.b"), &[1, 2]);
    }

    #[test]
    fn hundred_thousand_subscriptions() {
        let mut t = SubjectTrie::new(1024);
        for i in 0..100_000u32 {
            t.insert(&format!("load.{}.{}", i % 1000, i), i);
        }
        assert_eq!(t.len(), 100_000);
        assert_eq!(&*t.matches("load.7.1007"), &[1007]);
        assert!(t.matches("load.7.8").is_empty());
    }

    fn token() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("a".to_string()),
            Just("b".to_string()),
            Just("c".to_string())
        ]
    }

    fn pattern() -> impl Strategy<Value = String> {
        (
            proptest::collection::vec(prop_oneof![token(), Just("*".to_string())], 0..4),
            any::<bool>(),
        )
            .prop_filter_map("non-empty", |(mut toks, gt)| {
                if gt {
                    toks.push(">".into());
                }
                if toks.is_empty() {
                    None
                } else {
                    Some(toks.join("."))
                }
            })
    }

    fn subject() -> impl Strategy<Value = String> {
        proptest::collection::vec(token(), 1..5).prop_map(|t| t.join("."))
    }

    proptest! {
        /// The trie (with its cache, across inserts and removes) agrees
        /// with the naive matcher on every subject.
        #[test]
        fn agrees_with_naive_matcher(
            ops in proptest::collection::vec((pattern(), 0u8..4, any::<bool>()), 1..40),
            subjects in proptest::collection::vec(subject(), 1..20),
        ) {
            let mut t = SubjectTrie::new(8);
            let mut naive: BTreeSet<(String, u8)> = BTreeSet::new();
            for (p, v, add) in ops {
                if add {
                    prop_assert_eq!(t.insert(&p, v), naive.insert((p.clone(), v)));
                } else {
                    prop_assert_eq!(t.remove(&p, &v), naive.remove(&(p.clone(), v)));
                }
                prop_assert_eq!(t.len(), naive.len());
                for s in &subjects {
                    let want: BTreeSet<u8> = naive.iter().filter(|(p, _)| matches(p, s)).map(|(_, v)| *v).collect();
                    let got: BTreeSet<u8> = t.matches(s).iter().copied().collect();
                    prop_assert_eq!(got, want, "subject {}", s);
                }
            }
        }
    }
}
