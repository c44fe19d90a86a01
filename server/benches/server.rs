//! Server hot paths below HTTP: request-body decoding per `Content-Encoding` (a realistic
//! 50-event upload) and rule-download cursor encode/decode. `cargo bench -p dasher-server`.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use dasher_sdk::domain::RuleKey;
use dasher_sdk::wire::RuleType;
use dasher_server::http::body::decode_body;
use dasher_server::sync::cursor::{Cursor, CursorSigner, Position};
use dasher_sim::Generation;
use dasher_sim::encode::{self, ContentEncoding, Kind, WireOptions};
use dasher_sim::events::Catalog;
use dasher_sim::fixtures;
use dasher_store::ChangePos;
use std::hint::black_box;

fn body_decode(c: &mut Criterion) {
    let catalog = Catalog::new(1);
    let upload = fixtures::event_upload(&catalog, 1, 0, 50, "bench-host");
    let mut g = c.benchmark_group("body_decode/eventupload_50_events");
    for (encoding, name) in
        [(ContentEncoding::None, "none"), (ContentEncoding::Deflate, "deflate"), (ContentEncoding::Gzip, "gzip")]
    {
        let opts = WireOptions { encoding, proto_transfer: false };
        let enc = encode::encode(&upload, Kind::EventUpload, Generation::Nps2026_7, opts);
        assert_eq!(enc.content_encoding.is_some(), encoding != ContentEncoding::None, "{name}: encoded as asked");
        let plain_len = decode_body(enc.content_encoding, &enc.body, 64 << 20).expect("decodes").len();
        g.throughput(Throughput::Bytes(plain_len as u64));
        g.bench_with_input(BenchmarkId::from_parameter(name), &enc, |b, enc| {
            b.iter(|| decode_body(black_box(enc.content_encoding), black_box(&enc.body), 64 << 20).expect("decodes"))
        });
    }
    g.finish();
}

fn cursors(c: &mut Criterion) {
    let signer = CursorSigner::new(&[7; CursorSigner::KEY_BYTES]).expect("a 32-byte key");
    let full = Cursor {
        v: Cursor::VERSION,
        machine: "5B0A2C1E-6F0D-4B8E-9C3A-0F1E2D3C4B5A".into(),
        at: 123_456,
        sets: vec!["host:5B0A2C1E-6F0D-4B8E-9C3A-0F1E2D3C4B5A".into(), "tag:engineering".into(), "global".into()],
        pos: Position::Full {
            set: 2,
            after: Some(RuleKey {
                rule_type: RuleType::SigningId,
                identifier: "EQHXZ8M8AV:com.example.app9999".into(),
            }),
        },
        sent: 10_000,
    };
    let delta = Cursor { pos: Position::Delta { after: ChangePos { version: 123_400, seq: 512 } }, ..full.clone() };
    let mut g = c.benchmark_group("cursor");
    for (name, cursor) in [("full", &full), ("delta", &delta)] {
        g.bench_function(format!("encode/{name}"), |b| b.iter(|| signer.encode(black_box(cursor))));
        let s = signer.encode(cursor);
        assert_eq!(&signer.decode(&s).expect("round trip"), cursor);
        g.bench_function(format!("decode/{name}"), |b| b.iter(|| signer.decode(black_box(&s)).expect("decodes")));
    }
    g.finish();
}

criterion_group!(benches, body_decode, cursors);
criterion_main!(benches);
