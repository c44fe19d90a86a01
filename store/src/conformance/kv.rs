//! Key/value and lease conformance: plugin namespaces, put-if-absent, the atomic plugin
//! operations and the leases replicas use to share a job.

use crate::Store;
use std::sync::Arc;

/// Plugin key/value namespaces are separate; delete removes.
pub async fn plugin_kv(store: &dyn Store) {
    assert_eq!(store.kv_get("p", "k").await.unwrap(), None);
    store.kv_put("p", "k", b"v1").await.unwrap();
    store.kv_put("p2", "k", b"other").await.unwrap();
    store.kv_put("p", "k", b"v2").await.unwrap();
    store.kv_put("p\0x", "", b"odd names").await.unwrap();
    assert_eq!(store.kv_get("p", "k").await.unwrap().as_deref(), Some(&b"v2"[..]));
    assert_eq!(store.kv_get("p2", "k").await.unwrap().as_deref(), Some(&b"other"[..]));
    assert_eq!(store.kv_get("p\0x", "").await.unwrap().as_deref(), Some(&b"odd names"[..]));
    store.kv_delete("p", "k").await.unwrap();
    store.kv_delete("p", "absent").await.unwrap();
    assert_eq!(store.kv_get("p", "k").await.unwrap(), None);
    assert_eq!(store.kv_get("p2", "k").await.unwrap().as_deref(), Some(&b"other"[..]));
}

/// `kv_put_if_absent` stores only into an empty key and returns what is stored; callers that
/// race on one key (as replicas do for the server secret at first start) all get one value.
pub async fn kv_put_if_absent(store: Arc<dyn Store>) {
    let ns = crate::SERVER_KV_NAMESPACE;
    assert_eq!(store.kv_put_if_absent(ns, "k", b"first").await.unwrap(), b"first", "absent: stored");
    assert_eq!(store.kv_put_if_absent(ns, "k", b"second").await.unwrap(), b"first", "present: kept");
    assert_eq!(store.kv_get(ns, "k").await.unwrap().as_deref(), Some(&b"first"[..]), "not overwritten");
    store.kv_put("p", "k", b"plugin").await.unwrap();
    assert_eq!(store.kv_put_if_absent("p2", "k", b"other ns").await.unwrap(), b"other ns", "namespaces apart");
    assert_eq!(store.kv_put_if_absent("p", "k", b"x").await.unwrap(), b"plugin", "sees kv_put values");
    assert_eq!(store.kv_get(ns, "k").await.unwrap().as_deref(), Some(&b"first"[..]));

    const RACERS: u8 = 8;
    let mut tasks = Vec::new();
    for i in 0..RACERS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move { store.kv_put_if_absent(ns, "race", &[i; 32]).await.unwrap() }));
    }
    let mut won = Vec::new();
    for t in tasks {
        won.push(t.await.unwrap());
    }
    let stored = store.kv_get(ns, "race").await.unwrap().expect("one racer stored its value");
    assert!(won.iter().all(|w| *w == stored), "every racer got the stored value: {won:?} vs {stored:?}");
    assert!((0..RACERS).any(|i| stored == [i; 32]), "the stored value is one racer's");
}

/// `kv_increment` and `kv_compare_and_swap`: results, errors that write nothing, and racing
/// increments that lose none (every task sees distinct sums, the last one is the total).
pub async fn kv_atomic(store: Arc<dyn Store>) {
    use crate::CounterError;
    let inc = |key: &'static str, delta: i64| {
        let store = store.clone();
        async move { store.kv_increment("p", key, delta).await.unwrap() }
    };
    assert_eq!(inc("n", 5).await, Ok(5), "absent counts as 0");
    assert_eq!(inc("n", -7).await, Ok(-2));
    assert_eq!(store.kv_get("p", "n").await.unwrap().as_deref(), Some(&b"-2"[..]), "stored as ASCII decimal");
    assert_eq!(store.kv_increment("p2", "n", 1).await.unwrap(), Ok(1), "namespaces apart");
    store.kv_put("p", "text", b"41").await.unwrap();
    assert_eq!(inc("text", 1).await, Ok(42), "decimal text written by kv_put counts");
    store.kv_put("p", "json", br#"{"n":1}"#).await.unwrap();
    assert_eq!(inc("json", 1).await, Err(CounterError::NotAnInteger));
    assert_eq!(store.kv_get("p", "json").await.unwrap().as_deref(), Some(&br#"{"n":1}"#[..]), "untouched");
    assert_eq!(inc("max", i64::MAX).await, Ok(i64::MAX));
    assert_eq!(inc("max", 1).await, Err(CounterError::Overflow { current: i64::MAX, delta: 1 }), "no wrap");
    assert_eq!(inc("max", 0).await, Ok(i64::MAX), "unchanged by the failed increment");
    assert_eq!(inc("min", i64::MIN).await, Ok(i64::MIN));
    assert_eq!(inc("min", -1).await, Err(CounterError::Overflow { current: i64::MIN, delta: -1 }));

    let cas = |key: &'static str, expected: Option<&'static [u8]>, new: Option<&'static [u8]>| {
        let store = store.clone();
        async move { store.kv_compare_and_swap("p", key, expected, new).await.unwrap() }
    };
    assert!(cas("c", None, Some(b"a")).await, "create when absent");
    assert!(!cas("c", None, Some(b"b")).await, "create fails when present");
    assert!(!cas("c", Some(b"x"), Some(b"b")).await, "mismatch");
    assert_eq!(store.kv_get("p", "c").await.unwrap().as_deref(), Some(&b"a"[..]), "failed swaps write nothing");
    assert!(cas("c", Some(b"a"), Some(b"b")).await, "swap");
    assert!(!cas("absent", Some(b"b"), Some(b"c")).await, "expected a value, key absent");
    assert_eq!(store.kv_get("p", "absent").await.unwrap(), None);
    assert!(cas("absent", None, None).await, "absent stays absent");
    assert!(!cas("c", Some(b"a"), None).await, "stale delete refused");
    assert!(cas("c", Some(b"b"), None).await, "delete");
    assert_eq!(store.kv_get("p", "c").await.unwrap(), None);
    assert!(cas("c", None, Some(b"")).await, "an empty value is present, not absent");
    assert!(!cas("c", None, Some(b"z")).await);
    assert!(cas("c", Some(b""), Some(b"z")).await);
    assert!(cas("n", Some(b"-2"), Some(b"10")).await, "counters are plain values to CAS");
    assert_eq!(inc("n", 1).await, Ok(11));

    const TASKS: i64 = 8;
    const PER: i64 = 25;
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..PER {
                let delta = if t % 2 == 0 { 1 } else { 2 };
                seen.push((store.kv_increment("p", "race", delta).await.unwrap().unwrap(), delta));
            }
            seen
        }));
    }
    let mut sums = Vec::new();
    for t in tasks {
        sums.extend(t.await.unwrap());
    }
    let total: i64 = sums.iter().map(|(_, d)| d).sum();
    sums.sort();
    assert!(sums.windows(2).all(|w| w[0].0 < w[1].0), "every increment saw a distinct sum: {sums:?}");
    assert_eq!(sums.last().map(|s| s.0), Some(total), "no increment lost");
    assert_eq!(store.kv_get("p", "race").await.unwrap(), Some(total.to_string().into_bytes()));

    // Racing creators of one key: exactly one wins.
    let mut tasks = Vec::new();
    for i in 0..8u8 {
        let store = store.clone();
        tasks
            .push(tokio::spawn(async move { store.kv_compare_and_swap("p", "once", None, Some(&[i])).await.unwrap() }));
    }
    let mut winners = 0;
    for t in tasks {
        winners += usize::from(t.await.unwrap());
    }
    assert_eq!(winners, 1, "exactly one creator wins");
}

/// Leases: one live holder at a time; renewals extend only a live lease of the caller; a
/// release or an expiry lets another holder in; `kv_put_leased` writes only for the holder.
pub async fn leases(store: &dyn Store) {
    let ns = crate::SERVER_KV_NAMESPACE;
    let long = 600_000;
    assert_eq!(store.lease_get("sink-a").await.unwrap(), None, "no lease yet");
    let a = store.lease_acquire("sink-a", "replica-1", long).await.unwrap().expect("a free lease is taken");
    assert_eq!((a.name.as_str(), a.holder.as_str(), a.live), ("sink-a", "replica-1", true));
    assert!(store.lease_acquire("sink-a", "replica-2", long).await.unwrap().is_none(), "a live lease is refused");
    assert!(store.lease_renew("sink-a", "replica-2", long).await.unwrap().is_none(), "only the holder renews");
    let other = store.lease_acquire("sink-b", "replica-2", long).await.unwrap().expect("names are apart");
    assert_eq!(other.holder, "replica-2");
    let again = store.lease_acquire("sink-a", "replica-1", long).await.unwrap().expect("the holder re-acquires");
    assert!(again.expires_unix_ms >= a.expires_unix_ms);
    let renewed = store.lease_renew("sink-a", "replica-1", 2 * long).await.unwrap().expect("the holder renews");
    assert!(renewed.expires_unix_ms > a.expires_unix_ms, "{renewed:?} extends {a:?}");
    assert_eq!(store.lease_get("sink-a").await.unwrap().map(|l| (l.holder, l.live)), Some(("replica-1".into(), true)));

    assert!(store.kv_put_leased("sink-a", "replica-1", ns, "cur", b"1").await.unwrap(), "the holder writes");
    assert!(!store.kv_put_leased("sink-a", "replica-2", ns, "cur", b"2").await.unwrap(), "another holder cannot");
    assert!(!store.kv_put_leased("sink-c", "replica-1", ns, "cur", b"3").await.unwrap(), "nor without a lease");
    assert_eq!(store.kv_get(ns, "cur").await.unwrap().as_deref(), Some(&b"1"[..]));

    store.lease_release("sink-a", "replica-2").await.unwrap();
    assert!(store.lease_acquire("sink-a", "replica-2", long).await.unwrap().is_none(), "only the holder releases");
    store.lease_release("sink-a", "replica-1").await.unwrap();
    assert!(!store.kv_put_leased("sink-a", "replica-1", ns, "cur", b"4").await.unwrap(), "released: no writes");
    let b = store.lease_acquire("sink-a", "replica-2", long).await.unwrap().expect("a released lease is free");
    assert_eq!(b.holder, "replica-2");

    // Expiry: a short lease, then a takeover once it has run out (polled, not timed).
    let short = store.lease_acquire("sink-x", "replica-1", 200).await.unwrap().expect("taken");
    assert!(short.live);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let taken = loop {
        if let Some(l) = store.lease_acquire("sink-x", "replica-2", long).await.unwrap() {
            break l;
        }
        assert!(std::time::Instant::now() < deadline, "an expired lease is never taken over");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(taken.holder, "replica-2");
    assert!(store.lease_renew("sink-x", "replica-1", long).await.unwrap().is_none(), "the old holder lost it");
    assert!(!store.kv_put_leased("sink-x", "replica-1", ns, "x", b"old").await.unwrap(), "and cannot write");
    assert!(store.kv_put_leased("sink-x", "replica-2", ns, "x", b"new").await.unwrap());
    assert_eq!(store.kv_get(ns, "x").await.unwrap().as_deref(), Some(&b"new"[..]));
    // An expired lease of one's own cannot be renewed (the holder must re-acquire and re-read).
    store.lease_acquire("sink-y", "replica-1", 100).await.unwrap().expect("taken");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while store.lease_get("sink-y").await.unwrap().is_some_and(|l| l.live) {
        assert!(std::time::Instant::now() < deadline, "a 100 ms lease stays live for a minute");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(store.lease_renew("sink-y", "replica-1", long).await.unwrap().is_none(), "expired: not renewed");
    assert!(store.lease_acquire("sink-y", "replica-1", long).await.unwrap().is_some(), "but re-acquired");
    assert!(store.lease_acquire("", "replica-1", long).await.is_err(), "an empty name is refused");
    assert!(store.lease_acquire("n", "replica-1", 0).await.is_err(), "a zero ttl is refused");
}

/// Replicas racing for one free lease: exactly one gets it.
pub async fn lease_race(store: Arc<dyn Store>) {
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move { store.lease_acquire("race", &format!("r{i}"), 600_000).await.unwrap() }));
    }
    let mut won = Vec::new();
    for t in tasks {
        won.extend(t.await.unwrap());
    }
    assert_eq!(won.len(), 1, "exactly one racer holds the lease: {won:?}");
    assert_eq!(store.lease_get("race").await.unwrap().map(|l| l.holder), Some(won[0].holder.clone()));
}
