//! `OpenOptions::cache_bytes` on real database files: each embedded engine opens, writes and
//! reads back (across a reopen) several times more data than a small cache holds. (redb only
//! counts evictions with its `cache_metrics` feature, so the cache's effect on memory is not
//! asserted here; BENCHMARKS.md measures RSS.)

use dasher_store::{OpenOptions, StoreSpec, open_with};

const SMALL_CACHE: usize = 1 << 20;
const VALUES: usize = 64;
const VALUE_BYTES: usize = 64 << 10;

/// A value that differs per index, so a read of the wrong page cannot pass.
fn value(i: usize) -> Vec<u8> {
    (0..VALUE_BYTES).map(|j| (i * 31 + j * 7) as u8).collect()
}

async fn round_trip(engine: &str) {
    let dir = tempfile::tempdir().unwrap();
    let spec: StoreSpec = format!("{engine}:{}", dir.path().join("db").display()).parse().unwrap();
    let options = OpenOptions { cache_bytes: Some(SMALL_CACHE) };
    {
        let store = open_with(&spec, &options).unwrap();
        for i in 0..VALUES {
            store.kv_put("cache-test", &format!("k{i:03}"), &value(i)).await.unwrap();
        }
        for i in 0..VALUES {
            let got = store.kv_get("cache-test", &format!("k{i:03}")).await.unwrap();
            assert_eq!(got.as_deref(), Some(&value(i)[..]), "{engine}: k{i:03} before reopen");
        }
    }
    let store = open_with(&spec, &options).unwrap();
    for i in (0..VALUES).rev() {
        let got = store.kv_get("cache-test", &format!("k{i:03}")).await.unwrap();
        assert_eq!(got.as_deref(), Some(&value(i)[..]), "{engine}: k{i:03} after reopen");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_with_a_small_cache() {
    round_trip("redb").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_with_a_small_cache() {
    round_trip("sled").await;
}
