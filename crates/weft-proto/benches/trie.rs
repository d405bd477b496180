//! Subject trie micro-benchmarks (issue 4): the match cost per publish with
//! 10^5 subscriptions, from the cache and without it, and the cost of an
//! insert and a remove at that size.
//!
//! ```text
//! cargo bench -p weft-proto --bench trie
//! cargo bench -p weft-proto --bench trie -- match     # one group
//! ```
//!
//! The 10^5 patterns look like NATS subjects of a service fleet:
//! `svc<s>.r<r>.item<i>` (90%), `svc<s>.*.item<i>` (5%) and
//! `svc<s>.r<r>.>` (5%), with 100 services and 32 regions. A published
//! subject `svc<s>.r<r>.item<i>` then matches its literal subscription,
//! the one or two `>` wildcards of its service and region, and sometimes
//! a `*` pattern (the bench checks that each of the 1024 subjects used
//! matches, and prints the average number of values).
//!
//! - `match/cached`: [`SubjectTrie::matches`] over 1024 subjects that fit
//!   the match cache (every call after the first pass is a hit);
//! - `match/uncached`: the same subjects on a trie without a cache (a walk
//!   and the result allocation per publish);
//! - `match/uncached_miss`: a subject no pattern matches (`svc7.r99.item5`,
//!   which walks the service level and its `*` branch);
//! - `insert` / `remove`: one new pattern into (out of) the 10^5 trie.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use weft_proto::trie::SubjectTrie;

/// Subscriptions in the trie.
const SUBSCRIPTIONS: u64 = 100_000;
/// Distinct subjects the match benches cycle through (fits the default
/// 4096-entry cache).
const SUBJECTS: u64 = 1024;
const SERVICES: u64 = 100;
const REGIONS: u64 = 32;

/// The `i`-th pattern of the fleet.
fn pattern(i: u64) -> String {
    let (s, r) = (i % SERVICES, (i / SERVICES) % REGIONS);
    match i % 20 {
        // One item of the next literal pattern, in any region.
        0 => format!("svc{}.*.item{}", (i + 2) % SERVICES, i + 2),
        // Everything of a service in a region (each service and region
        // gets one or two of these).
        1 => {
            let k = i / 20;
            format!("svc{}.r{}.>", k % SERVICES, (k / SERVICES) % REGIONS)
        }
        _ => format!("svc{s}.r{r}.item{i}"),
    }
}

/// A subject that the literal pattern `i` (and maybe wildcards) matches.
fn subject(i: u64) -> String {
    let (s, r) = (i % SERVICES, (i / SERVICES) % REGIONS);
    format!("svc{s}.r{r}.item{i}")
}

fn filled(cache_entries: usize) -> SubjectTrie<u64> {
    let mut t = SubjectTrie::new(cache_entries);
    for i in 0..SUBSCRIPTIONS {
        assert!(t.insert(&pattern(i), i), "pattern {i} is new");
    }
    assert_eq!(t.len() as u64, SUBSCRIPTIONS);
    t
}

/// Subjects of literal patterns spread over the whole trie.
fn subjects() -> Vec<String> {
    (0..SUBJECTS)
        .map(|k| {
            // Literal patterns only (i % 20 >= 2), spread evenly.
            let i = (k * (SUBSCRIPTIONS / SUBJECTS)) / 20 * 20 + 2 + k % 18;
            subject(i % SUBSCRIPTIONS)
        })
        .collect()
}

fn matching(c: &mut Criterion) {
    let subjects = subjects();
    let mut cached = filled(weft_proto::trie::DEFAULT_CACHE_ENTRIES);
    let mut uncached = filled(0);
    let mut values = 0usize;
    for s in &subjects {
        let n = cached.matches(s).len();
        assert!(n >= 1, "{s} matches nothing");
        assert_eq!(uncached.matches(s).len(), n, "{s}: cache and walk differ");
        values += n;
    }
    eprintln!(
        "trie: {SUBSCRIPTIONS} subscriptions, {SUBJECTS} subjects matching {:.2} values on average",
        values as f64 / SUBJECTS as f64
    );
    let mut g = c.benchmark_group("match");
    g.throughput(Throughput::Elements(1));
    let mut k = 0usize;
    g.bench_function("cached", |b| {
        b.iter(|| {
            k = (k + 1) % subjects.len();
            black_box(cached.matches(black_box(&subjects[k])))
        })
    });
    let hits_before = cached.cache_hits();
    assert!(hits_before > 0, "the cached bench never hit the cache");
    g.bench_function("uncached", |b| {
        b.iter(|| {
            k = (k + 1) % subjects.len();
            black_box(uncached.matches(black_box(&subjects[k])))
        })
    });
    assert_eq!(uncached.cache_hits(), 0);
    let miss = "svc7.r99.item5";
    assert!(uncached.matches(miss).is_empty());
    g.bench_function("uncached_miss", |b| {
        b.iter(|| black_box(uncached.matches(black_box(miss))))
    });
    g.finish();
}

fn changes(c: &mut Criterion) {
    let mut trie = filled(weft_proto::trie::DEFAULT_CACHE_ENTRIES);
    let mut g = c.benchmark_group("change");
    g.throughput(Throughput::Elements(1));
    // New patterns outside the fleet's, shaped alike.
    let fresh = |n: u64| format!("svc{}.r{}.new{n}", n % SERVICES, (n / SERVICES) % REGIONS);
    let mut next = 0u64;
    g.bench_function("insert", |b| {
        b.iter_custom(|iters| {
            let first = next;
            let patterns: Vec<String> = (first..first + iters).map(fresh).collect();
            next += iters;
            let start = Instant::now();
            for (n, p) in (first..).zip(&patterns) {
                black_box(trie.insert(p, SUBSCRIPTIONS + n));
            }
            let took = start.elapsed();
            for (n, p) in (first..).zip(&patterns) {
                assert!(trie.remove(p, &(SUBSCRIPTIONS + n)));
            }
            took
        })
    });
    g.bench_function("remove", |b| {
        b.iter_custom(|iters| {
            let first = next;
            let patterns: Vec<String> = (first..first + iters).map(fresh).collect();
            next += iters;
            for (n, p) in (first..).zip(&patterns) {
                assert!(trie.insert(p, SUBSCRIPTIONS + n));
            }
            let start = Instant::now();
            for (n, p) in (first..).zip(&patterns) {
                black_box(trie.remove(p, &(SUBSCRIPTIONS + n)));
            }
            start.elapsed()
        })
    });
    g.finish();
    assert_eq!(trie.len() as u64, SUBSCRIPTIONS, "inserts and removes balance");
}

fn quick() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
        .configure_from_args()
}

criterion_group! {
    name = benches;
    config = quick();
    targets = matching, changes
}
criterion_main!(benches);
