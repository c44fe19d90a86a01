//! Rough durable event-ingest rate through the group-commit writer.
//!
//! `cargo run -p dasher-store --example ingest -- redb:/tmp/x.redb [uploads] [events_per_upload] [concurrency]`
//! (the database should not exist yet). Prints events/s; a measurement, not a test.

use dasher_store::{EventKind, NewEvent, StoreSpec, open};
use std::time::Instant;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let spec: StoreSpec = args.get(1).map(String::as_str).unwrap_or("redb:/tmp/dasher-ingest.redb").parse().unwrap();
    let uploads: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2000);
    let per: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(50);
    let concurrency: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(64);
    let store = open(&spec).expect("open store");
    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..concurrency {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for u in (t..uploads).step_by(concurrency) {
                let events: Vec<NewEvent> = (0..per)
                    .map(|i| NewEvent {
                        kind: EventKind::Execution,
                        dedupe_key: format!("{u}-{i}"),
                        decision: "BLOCK_BINARY".into(),
                        file_sha256: format!("{:064x}", (u * per + i) % 5000),
                        file_bundle_hash: String::new(),
                        occurred_at_unix: 1.7e9,
                        received_at_unix: 1_700_000_000,
                        body: serde_json::json!({
                            "file_path": "/Applications/Example.app/Contents/MacOS",
                            "file_name": "Example",
                            "executing_user": "alice",
                            "pid": 4242,
                        }),
                    })
                    .collect();
                store.insert_events(&format!("machine-{}", u % 500), &events).await.expect("insert");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    let n = store.event_count().await.unwrap();
    println!(
        "{spec}: {n} events in {secs:.2} s = {:.0} events/s (uploads of {per}, {concurrency} concurrent)",
        n as f64 / secs
    );
    drop(store);
    let start = Instant::now();
    let store = open(&spec).expect("reopen store");
    let n = store.event_count().await.unwrap();
    println!("reopened with {n} events in {:.3} s", start.elapsed().as_secs_f64());
}
