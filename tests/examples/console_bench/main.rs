//! Console page-render benchmark at fleet scale (issue 12: every page ≤ 50 ms of server time
//! at 100,000 hosts and 10,000,000 events).
//!
//! ```sh
//! cargo run --release -p dasher-tests --example console_bench -- \
//!     --db /var/tmp/dasher-console-bench --hosts 100000 --events 10000000
//! ```
//!
//! 1. Populates a redb store under `--db` once (skipped when `populated.json` is there;
//!    the event phase resumes from the stored count if interrupted): see [`populate`].
//! 2. Starts the real server over it in this process (`dasher_server::start`, the same code
//!    as `dasher serve`), signs in to the console over HTTP on 127.0.0.1 with a token, as a
//!    person would (`POST /ui/login` with `token` and `csrf_token`).
//! 3. Requests every console page `--requests` times (after warm-up requests) and prints a
//!    Markdown table of wall time on loopback (request sent → whole body read): p50, p99, max.
//!
//! A measurement, not a test: it asserts only that each page answers 200.

mod client;
mod populate;

use clap::Parser;
use client::Browser;
use populate::Populated;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// Data directory (the store is `DIR/dasher.redb`); populated once, reused after.
    #[arg(long)]
    db: PathBuf,
    /// Hosts to populate.
    #[arg(long, default_value_t = 100_000)]
    hosts: u64,
    /// Events to populate (rounded up to uploads of 50).
    #[arg(long, default_value_t = 10_000_000)]
    events: u64,
    /// Distinct binaries the events name.
    #[arg(long, default_value_t = 5_000)]
    binaries: usize,
    /// Global rules.
    #[arg(long, default_value_t = 10_000)]
    rules: u64,
    /// Concurrent event writers while populating.
    #[arg(long, default_value_t = 32)]
    writers: u64,
    /// Measured requests per page.
    #[arg(long, default_value_t = 50)]
    requests: usize,
    /// Only populate.
    #[arg(long)]
    populate_only: bool,
}

fn du(path: &std::path::Path) -> u64 {
    if path.is_dir() {
        std::fs::read_dir(path).map(|d| d.flatten().map(|e| du(&e.path())).sum()).unwrap_or(0)
    } else {
        std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
    }
}

async fn populate_once(args: &Args, fleet: &Arc<Vec<populate::HostFacts>>) -> Populated {
    let marker = args.db.join("populated.json");
    if let Ok(bytes) = std::fs::read(&marker) {
        let p: Populated = serde_json::from_slice(&bytes).expect("populated.json reads back");
        eprintln!("reusing {} ({} hosts, {} events)", args.db.display(), p.hosts, p.events);
        return p;
    }
    std::fs::create_dir_all(&args.db).expect("create --db");
    let spec = dasher_store::StoreSpec::Redb(args.db.join("dasher.redb"));
    let store = dasher_store::open(&spec).expect("open the store");
    let started = Instant::now();
    // The end of the event window: kept across resumed runs so times stay consistent.
    let end_file = args.db.join("end_unix");
    let end: i64 = match std::fs::read_to_string(&end_file) {
        Ok(s) => s.trim().parse().expect("end_unix is a number"),
        Err(_) => {
            let now = dasher_server::sync::now_unix();
            std::fs::write(&end_file, now.to_string()).expect("write end_unix");
            now
        }
    };
    if store.host_count().await.expect("host count") < args.hosts {
        populate::hosts_and_rules(&store, fleet, end, args.rules).await;
    }
    let bins = Arc::new(populate::binaries(args.binaries));
    let uploads = args.events.div_ceil(populate::PER_UPLOAD as u64);
    let from = store.event_count().await.expect("event count") / populate::PER_UPLOAD as u64;
    eprintln!("events: uploads {from}..{uploads} of {} events", populate::PER_UPLOAD);
    let t = Instant::now();
    populate::events(&store, fleet.clone(), bins.clone(), from, uploads, end, args.writers).await;
    eprintln!("events in {:.0} s", t.elapsed().as_secs_f64());
    let (proposals, audit) = populate::review(&store, fleet, &bins, end).await;
    let p = Populated {
        hosts: store.host_count().await.expect("host count"),
        events: store.event_count().await.expect("event count"),
        binaries: bins.len(),
        rules: args.rules,
        proposals,
        audit,
        end_unix: end,
        seconds: started.elapsed().as_secs_f64(),
    };
    drop(store);
    std::fs::write(&marker, serde_json::to_vec_pretty(&p).expect("json")).expect("write populated.json");
    p
}

/// One page to measure: a label and a path (or a list of paths, cycled through).
struct Target {
    label: String,
    paths: Vec<String>,
    /// Pause between requests (the block page is rate-limited per machine and overall).
    pause: Duration,
}

fn target(label: &str, path: impl Into<String>) -> Target {
    Target { label: label.into(), paths: vec![path.into()], pause: Duration::ZERO }
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let fleet = Arc::new(populate::hosts(args.hosts));
    let pop = populate_once(&args, &fleet).await;
    let size = du(&args.db);
    println!(
        "store: {} hosts, {} events, {} binaries, {} global rules, {} proposals, {} audit entries; \
         {:.2} GB on disk; populated in {:.0} s",
        pop.hosts,
        pop.events,
        pop.binaries,
        pop.rules,
        pop.proposals,
        pop.audit,
        size as f64 / 1e9,
        pop.seconds
    );
    if args.populate_only {
        return;
    }

    let mut config = dasher_server::config::Config::for_tests(&args.db);
    config.ui.overview_refresh_secs = 3600;
    let started = Instant::now();
    let server = dasher_server::start(config).await.expect("start the server");
    eprintln!("server up in {:.1} s", started.elapsed().as_secs_f64());
    let mut b = Browser::new(server.addr());
    b.sign_in(dasher_tests::TOKEN).await;
    // The overview's first snapshot walks the hosts in the background; wait for it.
    let t = Instant::now();
    loop {
        let p = b.get("/ui/").await;
        if !p.body.contains("being taken") {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(600), "no overview snapshot after 10 minutes");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!("overview snapshot after {:.1} s", t.elapsed().as_secs_f64());

    let heavy = populate::heavy_host(&fleet);
    let bins = populate::binaries(args.binaries);
    let popular = &bins[0].sha256;
    let rare = &bins[bins.len() - 1].sha256;
    let some = &fleet[fleet.len() / 2];
    let seq = b.admin_json("/api/v1/events?limit=1").await;
    let newest_id = seq["events"][0]["id"].as_u64().unwrap_or(1);
    let since = dasher_server::ui::fmt::date(pop.end_unix - 7 * 86_400);
    // Block-page targets: hosts and the binary of their newest block.
    let mut blocked = Vec::new();
    for h in fleet.iter().step_by((fleet.len() / 40).max(1)).take(40) {
        let r =
            b.admin_json(&format!("/api/v1/events?machine_id={}&decision=BLOCK_UNKNOWN&limit=1", h.machine_id)).await;
        if let Some(sha) = r["events"][0]["file_sha256"].as_str() {
            blocked.push(format!("/ui/blocked?sha256={sha}&machine_id={}&username={}", h.machine_id, h.user));
        }
    }
    let hosts_page2 = b.link("/ui/hosts", "after=").await;
    let mut targets = vec![
        target("Overview", "/ui/"),
        target("Hosts (first page)", "/ui/hosts"),
        target("Hosts (second page)", hosts_page2),
        target("Hosts: hostname prefix", format!("/ui/hosts?q={}", &some.hostname[..some.hostname.len().min(6)])),
        target("Hosts: serial", format!("/ui/hosts?q={}", some.serial)),
        target("Hosts: user", format!("/ui/hosts?q={}", some.user)),
        target("Host page (heavy host)", format!("/ui/hosts/{}", heavy.machine_id)),
        target("Host page (typical host)", format!("/ui/hosts/{}", some.machine_id)),
        target("Events (newest)", "/ui/events"),
        target("Events (deep keyset page)", format!("/ui/events?before_id={}", newest_id / 2)),
        target("Events: host", format!("/ui/events?machine_id={}", heavy.machine_id)),
        target("Events: SHA-256", format!("/ui/events?file_sha256={popular}")),
        target("Events: decision", "/ui/events?decision=BLOCK_CERTIFICATE"),
        target("Events: since 7 days", format!("/ui/events?since={since}")),
        target("Events: host + decision", format!("/ui/events?machine_id={}&decision=BLOCK_BINARY", some.machine_id)),
        target("Events: label", "/ui/events?label=noise"),
        target("Binaries (list)", "/ui/binaries"),
        target("Binaries: prefix search", "/ui/binaries?sha256=abc"),
        target("Binary page (popular)", format!("/ui/binaries/{popular}")),
        target("Binary page (rare)", format!("/ui/binaries/{rare}")),
        target("Proposals", "/ui/proposals"),
        target("Proposals (all statuses)", "/ui/proposals?status=all"),
        target("Rules (sets)", "/ui/rules"),
        target("Rules (global set)", "/ui/rules?set=global"),
        target("Plugins", "/ui/plugins"),
        target("Audit", "/ui/audit"),
    ];
    if !blocked.is_empty() {
        targets.push(Target { label: "Block page".into(), paths: blocked, pause: Duration::from_millis(40) });
    }

    println!();
    println!("| page | path | p50 ms | p99 ms | max ms | KiB |");
    println!("|---|---|---:|---:|---:|---:|");
    for t in &targets {
        for path in t.paths.iter().take(3) {
            let p = b.get(path).await;
            assert_eq!(p.status, http::StatusCode::OK, "{path}: {}", &p.body[..p.body.len().min(500)]);
        }
        let mut times = Vec::with_capacity(args.requests);
        let mut bytes = 0;
        for i in 0..args.requests {
            let path = &t.paths[i % t.paths.len()];
            let at = Instant::now();
            let p = b.get(path).await;
            times.push(at.elapsed());
            assert_eq!(p.status, http::StatusCode::OK, "{path}");
            bytes = p.body.len();
            tokio::time::sleep(t.pause).await;
        }
        times.sort();
        let shown =
            if t.paths.len() > 1 { format!("{} (× {})", t.paths[0], t.paths.len()) } else { t.paths[0].clone() };
        let shown = if shown.len() > 70 { format!("{}…", &shown[..70]) } else { shown };
        println!(
            "| {} | `{}` | {:.1} | {:.1} | {:.1} | {} |",
            t.label,
            shown,
            pct(&times, 0.5),
            pct(&times, 0.99),
            times.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
            bytes / 1024
        );
    }
    server.shutdown().await;
}
