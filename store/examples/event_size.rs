//! Size on disk of stored events against the raw JSON the clients sent, per engine.
//!
//! `cargo run --release -p dasher-store --example event_size -- [EVENTS] [DIR]`
//! (default 100,000 events in a temp dir). Events are the simulator's realistic fixtures
//! (its software catalog, batches of 50 from 1,000 machines), inserted through the
//! [`Store`] trait as the server does; the store is closed before it is measured.

#[path = "../benches/support.rs"]
mod support;

use dasher_sim::events::Catalog;
use dasher_sim::fixtures;
use dasher_store::{NewEvent, StoreSpec};
use std::path::Path;
use std::time::Instant;

fn du(path: &Path) -> u64 {
    if path.is_dir() {
        std::fs::read_dir(path).expect("readable dir").map(|e| du(&e.expect("dir entry").path())).sum()
    } else {
        std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
    }
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let total: u64 = args.next().map_or(100_000, |s| s.parse().expect("EVENTS is a number"));
    let dir = match args.next() {
        Some(d) => std::path::PathBuf::from(d),
        None => std::env::temp_dir().join(format!("dasher-event-size-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir).expect("create the directory");
    let catalog = Catalog::new(1);
    let batches = total.div_ceil(50);
    println!("{total} events in batches of 50 from 1,000 machines; {}", dir.display());
    println!("| engine | raw JSON bytes/event | stored bytes/event | ratio | insert events/s |");
    println!("|---|---|---|---|---|");
    for (name, spec) in
        [("redb", StoreSpec::Redb(dir.join("events.redb"))), ("sled", StoreSpec::Sled(dir.join("events.sled")))]
    {
        let store = dasher_store::open(&spec).expect("open the store");
        let (mut raw, mut n) = (0u64, 0u64);
        let started = Instant::now();
        for b in 0..batches {
            let machine = format!("{:08X}-0000-4000-8000-{:012X}", b % 1000, b % 1000);
            let events = fixtures::events(&catalog, 1, b, 50);
            let new: Vec<NewEvent> = events
                .iter()
                .map(|e| {
                    raw += serde_json::to_vec(e).expect("event serializes").len() as u64;
                    support::new_event(e, 1_790_000_000 + b as i64)
                })
                .collect();
            n += store.insert_events(&machine, &new).await.expect("insert").stored as u64;
        }
        let rate = n as f64 / started.elapsed().as_secs_f64();
        drop(store);
        let bytes = du(spec.path().expect("embedded engine"));
        println!(
            "| {name} | {:.0} | {:.0} | {:.2} | {rate:.0} |",
            raw as f64 / n as f64,
            bytes as f64 / n as f64,
            bytes as f64 / raw as f64
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}
