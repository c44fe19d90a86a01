//! Regression tests for what fuzzing found (`fuzz/`, README "Robustness"), each through the
//! real server over HTTP. The crashing inputs themselves are kept in `fuzz/corpus/`.

use dasher_sdk::wire::{Event, EventUploadRequest, FileAccessEvent, Format, Process, WireMessage};
use dasher_tests::TestServer;
use http::{Method, StatusCode};

/// `fuzz/corpus/wire_protobuf/nan_execution_time`: binary protobuf can carry a NaN or infinite
/// `double` (JSON cannot). Stored as is, it became `null` in the event record, which then failed
/// to read back: every events query touching it answered 500. Such times are now stored as 0
/// ("unknown"), the event itself is kept, and the events API keeps working.
#[tokio::test]
async fn non_finite_event_times_from_protobuf_clients_do_not_poison_the_event_store() {
    let s = TestServer::start().await;
    let req = EventUploadRequest {
        events: vec![
            Event { file_sha256: format!("{:064x}", 1), execution_time: f64::NAN, pid: 1, ..Default::default() },
            Event { file_sha256: format!("{:064x}", 2), execution_time: f64::INFINITY, pid: 2, ..Default::default() },
        ],
        file_access_events: vec![FileAccessEvent {
            rule_name: "r".into(),
            target: "/etc/x".into(),
            access_time: f64::NEG_INFINITY,
            process_chain: vec![Process { file_sha256: format!("{:064x}", 3), pid: 3, ..Default::default() }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let r = s
        .send(
            Method::POST,
            "/santa/eventupload/nan-host",
            &[("content-type", "application/x-protobuf")],
            req.encode_to(Format::Protobuf),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
    let events = s.admin(Method::GET, "/api/v1/events?machine_id=nan-host", None).await;
    assert_eq!(events.status, StatusCode::OK, "{}", String::from_utf8_lossy(&events.body));
    let events = events.json()["events"].as_array().unwrap().clone();
    assert_eq!(events.len(), 3, "every event is kept");
    for e in &events {
        assert_eq!(e["occurred_at_unix"], 0.0, "non-finite time stored as unknown: {e}");
    }
}
