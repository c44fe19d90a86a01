//! Wire-message costs per sync stage (request parse, response emit; JSON and protobuf) and
//! admin rule validation. `cargo bench -p dasher-sdk`.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use dasher_sdk::domain::Rule;
use dasher_sdk::wire::{
    EventUploadRequest, EventUploadResponse, Format, PostflightRequest, PostflightResponse, PreflightResponse,
    RuleDownloadRequest, RuleDownloadResponse, SyncType, WireMessage,
};
use dasher_sim::events::Catalog;
use dasher_sim::fixtures;
use std::hint::black_box;

const FORMATS: [(Format, &str); 2] = [(Format::Json, "json"), (Format::Protobuf, "protobuf")];

fn parse<M: WireMessage>(c: &mut Criterion, group: &str, msg: &M) {
    let mut g = c.benchmark_group(group);
    for (format, name) in FORMATS {
        let body = msg.encode_to(format);
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(name), &body, |b, body| {
            b.iter(|| M::decode_from(black_box(body), format).expect("fixture parses"))
        });
    }
    g.finish();
}

fn emit<M: WireMessage>(c: &mut Criterion, group: &str, msg: &M) {
    let mut g = c.benchmark_group(group);
    for (format, name) in FORMATS {
        // An empty message (protobuf `{}`) has no bytes to rate; count messages instead.
        let len = msg.encode_to(format).len() as u64;
        g.throughput(if len > 0 { Throughput::Bytes(len) } else { Throughput::Elements(1) });
        g.bench_function(name, |b| b.iter(|| black_box(msg).encode_to(format)));
    }
    g.finish();
}

fn stages(c: &mut Criterion) {
    let host = fixtures::host(1, 0);
    parse(c, "preflight/parse_request", &fixtures::preflight(&host, 1000));
    let resp = PreflightResponse {
        client_mode: Some(1),
        sync_type: Some(SyncType::Normal as i32),
        batch_size: Some(50),
        full_sync_interval: Some(600),
        enable_bundles: Some(false),
        enable_transitive_rules: Some(false),
        enable_all_event_upload: Some(false),
        disable_unknown_event_upload: Some(false),
        ..Default::default()
    };
    emit(c, "preflight/emit_response", &resp);

    let catalog = Catalog::new(1);
    let upload: EventUploadRequest = fixtures::event_upload(&catalog, 1, 0, 50, &host.machine_id);
    parse(c, "eventupload/parse_request_50_events", &upload);
    emit(c, "eventupload/emit_response", &EventUploadResponse::default());

    parse(
        c,
        "ruledownload/parse_request",
        &RuleDownloadRequest { cursor: "d1.eyJ2IjoxLCJhdCI6NDJ9".into(), machine_id: host.machine_id.clone() },
    );
    let rules: Vec<_> = fixtures::rule_specs(0, 1000, 1)
        .iter()
        .map(|s| s.validate().expect("valid").1.expect("not a removal"))
        .map(|r: Rule| r.to_wire())
        .collect();
    let page = RuleDownloadResponse { rules, cursor: Some("d1.eyJ2IjoxLCJhdCI6NDJ9".into()) };
    emit(c, "ruledownload/emit_response_1000_rules", &page);

    parse(
        c,
        "postflight/parse_request",
        &PostflightRequest {
            rules_received: 1000,
            rules_processed: 1000,
            machine_id: host.machine_id.clone(),
            sync_type: SyncType::Normal as i32,
            rules_hash: "4b3e1c0a5d7f9e8b".into(),
        },
    );
    emit(c, "postflight/emit_response", &PostflightResponse::default());
}

fn rule_validation(c: &mut Criterion) {
    let specs = fixtures::rule_specs(0, 1000, 1);
    let mut g = c.benchmark_group("rule_spec_validate");
    g.throughput(Throughput::Elements(specs.len() as u64));
    g.bench_function("1000_mixed_rules", |b| {
        b.iter(|| {
            for s in black_box(&specs) {
                black_box(s.validate().expect("valid"));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, stages, rule_validation);
criterion_main!(benches);
