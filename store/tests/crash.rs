//! Crash test: a child process writes events and reports each acknowledged insert; the parent
//! `kill -9`s it mid-stream, reopens the store and checks every acknowledged event survived.

use dasher_store::{EventKind, NewEvent, StoreSpec, open};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const CHILD_ENV: &str = "DASHER_STORE_CRASH_CHILD";
/// Acknowledgements to wait for before the kill.
const ACKS_BEFORE_KILL: usize = 200;

fn event(i: usize) -> NewEvent {
    NewEvent {
        kind: EventKind::Execution,
        dedupe_key: format!("e{i}"),
        decision: "BLOCK_BINARY".into(),
        file_sha256: format!("{i:064x}"),
        file_bundle_hash: String::new(),
        occurred_at_unix: 0.0,
        received_at_unix: 1,
        body: serde_json::json!({ "i": i }),
    }
}

/// The child's side: only does something when started by [`crash`] with the env var set.
#[tokio::test]
async fn crash_child_writer() {
    let Ok(spec) = std::env::var(CHILD_ENV) else { return };
    let store = open(&spec.parse::<StoreSpec>().unwrap()).unwrap();
    for i in 0..1_000_000 {
        store.insert_events("m", &[event(i)]).await.unwrap();
        println!("ack {i}");
    }
}

fn crash(engine: &str) {
    let dir = tempfile::tempdir().unwrap();
    let spec = format!("{engine}:{}", dir.path().join("db").display());
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child_writer", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &spec)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked = Vec::new();
    while acked.len() < ACKS_BEFORE_KILL {
        let line = lines.next().expect("child ended before enough acks").unwrap();
        if let Some(i) = line.strip_prefix("ack ") {
            acked.push(i.parse::<usize>().unwrap());
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // Acks printed before the kill but not read yet also count.
    for line in lines.map_while(Result::ok) {
        if let Some(i) = line.strip_prefix("ack ").and_then(|i| i.parse().ok()) {
            acked.push(i);
        }
    }

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = open(&spec.parse::<StoreSpec>().unwrap()).unwrap();
        let stored = store.event_count().await.unwrap();
        assert!(stored >= acked.len() as u64, "{engine}: {stored} stored < {} acknowledged", acked.len());
        let again: Vec<NewEvent> = acked.iter().map(|&i| event(i)).collect();
        let out = store.insert_events("m", &again).await.unwrap();
        assert_eq!(out.duplicates as usize, acked.len(), "{engine}: every acknowledged event survived kill -9");
    });
}

#[test]
fn redb_survives_kill_9() {
    if std::env::var(CHILD_ENV).is_err() {
        crash("redb");
    }
}

#[test]
fn sled_survives_kill_9() {
    if std::env::var(CHILD_ENV).is_err() {
        crash("sled");
    }
}
