//! Set-up before the measured phase: enrol every host with one real clean sync (the
//! simulator's full client, so rule counts and rulesHash are the real ones), then prepare each
//! host's requests as finished HTTP/1.1 byte strings.

use super::http1::request_bytes;
use crate::client::{ClientConfig, Ctx, SimClient};
use crate::encode::{self, ContentEncoding, Kind, WireOptions};
use crate::events::Catalog;
use crate::fixtures;
use crate::fleet;
use crate::generation::Generation;
use crate::metrics::Metrics;
use crate::transport::{Faults, Transport};
use dasher_sdk::wire::{ClientMode, PostflightRequest, SyncType};
use std::net::SocketAddr;
use std::sync::Arc;

/// The client generations `blast` speaks, one per distinct wire behaviour that matters for
/// server cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BlastGeneration {
    /// google/santa 2024.5: legacy JSON, no `rulesHash` (drift checked by rule counts).
    LegacyJson,
    /// NPS 2026.7: protobuf-JSON with `rulesHash` in preflight and postflight.
    RulesHashJson,
    /// NPS 2026.7 with `SyncEnableProtoTransfer`: binary protobuf bodies.
    Protobuf,
}

impl BlastGeneration {
    /// Command-line name.
    pub fn name(self) -> &'static str {
        match self {
            BlastGeneration::LegacyJson => "legacy-json",
            BlastGeneration::RulesHashJson => "rules-hash-json",
            BlastGeneration::Protobuf => "protobuf",
        }
    }

    /// The Santa release emulated.
    pub fn generation(self) -> Generation {
        match self {
            BlastGeneration::LegacyJson => Generation::Gs2024_5,
            BlastGeneration::RulesHashJson | BlastGeneration::Protobuf => Generation::Nps2026_7,
        }
    }

    /// Body encoding: zlib always (like real clients), binary protobuf for `protobuf`.
    pub fn wire(self) -> WireOptions {
        WireOptions { encoding: ContentEncoding::Deflate, proto_transfer: self == BlastGeneration::Protobuf }
    }

    /// Seed offset, so each generation enrols its own machine ids on a shared server (a host
    /// that changed its Santa version would be sent a CLEAN sync).
    fn seed_offset(self) -> u64 {
        match self {
            BlastGeneration::LegacyJson => 0x1000,
            BlastGeneration::RulesHashJson => 0x2000,
            BlastGeneration::Protobuf => 0x3000,
        }
    }
}

/// One host's prepared requests.
pub struct HostPlan {
    /// Machine id.
    pub machine_id: String,
    /// `User-Agent` value (cursor follow-ups are built during the run with it).
    pub user_agent: String,
    /// Preflight with the host's real rule counts and rulesHash.
    pub preflight: Vec<u8>,
    /// First rule-download request (no cursor).
    pub ruledownload: Vec<u8>,
    /// Postflight of a NORMAL sync that received nothing.
    pub postflight: Vec<u8>,
    /// Event uploads, used in turn (empty: no upload stage).
    pub events: Vec<Vec<u8>>,
}

/// Everything the measured phase sends.
pub struct Prepared {
    /// Generation.
    pub generation: BlastGeneration,
    /// `Host` header value.
    pub authority: String,
    /// Path prefix (`/santa/`).
    pub prefix: String,
    /// Hosts.
    pub hosts: Vec<HostPlan>,
    /// Rules each enrolled host holds (first host; 0 when not enrolled).
    pub rules_per_host: usize,
}

impl Prepared {
    /// A rule-download request carrying `cursor` for host `h`.
    pub fn ruledownload_with(&self, h: &HostPlan, cursor: &str) -> Vec<u8> {
        let g = self.generation;
        let e = encode::rule_download(Some(cursor), &h.machine_id, g.generation(), g.wire());
        let path = format!("{}ruledownload/{}", self.prefix, h.machine_id);
        request_bytes(&path, &self.authority, &h.user_agent, e.content_type, e.content_encoding, &e.body)
    }
}

/// A parsed `http://host:port/prefix/` SyncBaseURL.
pub struct Base {
    /// `host:port`.
    pub authority: String,
    /// Path with leading and trailing `/`.
    pub prefix: String,
    /// Resolved address.
    pub addr: SocketAddr,
    /// The URL with a trailing `/` (for the simulator's client).
    pub url: String,
}

/// Parses and resolves a SyncBaseURL (loopback `http://` only, like the rest of the simulator).
pub async fn parse_base(url: &str) -> anyhow::Result<Base> {
    let url = if url.ends_with('/') { url.to_owned() } else { format!("{url}/") };
    crate::transport::check_base_url(&url).map_err(anyhow::Error::msg)?;
    let rest = url.strip_prefix("http://").expect("checked above");
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let with_port = if authority.rsplit_once(':').is_some_and(|(_, p)| p.chars().all(|c| c.is_ascii_digit()))
        && !authority.ends_with(']')
    {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let addr = tokio::net::lookup_host(&with_port)
        .await?
        .next()
        .ok_or_else(|| anyhow::anyhow!("{authority}: does not resolve"))?;
    Ok(Base { authority: authority.to_owned(), prefix: format!("/{path}"), addr, url })
}

/// Builds the fleet of one generation: `enrol` runs a real clean sync of every host against
/// the server first (`concurrency` at once); without it (trivial target only) the hosts keep
/// empty rule databases.
pub async fn prepare(
    base: &Base,
    g: BlastGeneration,
    hosts: usize,
    seed: u64,
    events_per_sync: usize,
    event_batches: usize,
    enrol: Option<usize>,
) -> anyhow::Result<Prepared> {
    let seed = seed.wrapping_add(g.seed_offset());
    let catalog: Arc<Catalog> = Catalog::new(seed);
    let config = ClientConfig { base_url: base.url.clone(), wire: g.wire(), ..Default::default() };
    let clients: Vec<Arc<SimClient>> = fleet::generate(seed, hosts, &[(g.generation(), 1)])
        .into_iter()
        .enumerate()
        .map(|(i, h)| Arc::new(SimClient::new(h, config.clone(), ClientMode::Monitor, seed, i as u64)))
        .collect();
    let mut rules_per_host = 0;
    if let Some(concurrency) = enrol {
        enrol_all(&clients, &catalog, concurrency.max(1)).await?;
        rules_per_host = clients.first().map_or(0, |c| c.state.lock().expect("client state").db.synced_len());
    }
    let santa = g.generation();
    let wire = g.wire();
    let plans = clients
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let id = c.host.machine_id.clone();
            let ua = format!("santactl-sync/{}", c.host.santa_version);
            let req = |stage: &str, e: encode::Encoded| {
                let path = format!("{}{stage}/{id}", base.prefix);
                request_bytes(&path, &base.authority, &ua, e.content_type, e.content_encoding, &e.body)
            };
            let pre = c.preflight_request();
            let rules_hash = pre.rules_hash.clone();
            let post = PostflightRequest {
                rules_received: 0,
                rules_processed: 0,
                machine_id: id.clone(),
                sync_type: SyncType::Normal as i32,
                rules_hash,
            };
            let events = if events_per_sync == 0 {
                Vec::new()
            } else {
                (0..event_batches.max(1))
                    .map(|b| {
                        let batch = (i * event_batches.max(1) + b) as u64;
                        let up = fixtures::event_upload(&catalog, seed, batch, events_per_sync, &id);
                        req("eventupload", encode::encode(&up, Kind::EventUpload, santa, wire))
                    })
                    .collect()
            };
            HostPlan {
                preflight: req("preflight", encode::encode(&pre, Kind::Preflight, santa, wire)),
                ruledownload: req("ruledownload", encode::rule_download(None, &id, santa, wire)),
                postflight: req("postflight", encode::encode(&post, Kind::Postflight, santa, wire)),
                events,
                machine_id: id.clone(),
                user_agent: ua.clone(),
            }
        })
        .collect();
    Ok(Prepared {
        generation: g,
        authority: base.authority.clone(),
        prefix: base.prefix.clone(),
        hosts: plans,
        rules_per_host,
    })
}

/// One clean sync per host (fresh clients ask for one), `concurrency` at a time; the first
/// failure aborts with the host and reason.
async fn enrol_all(clients: &[Arc<SimClient>], catalog: &Arc<Catalog>, concurrency: usize) -> anyhow::Result<()> {
    let ctx = Arc::new(Ctx {
        transport: Transport::new(Arc::new(Metrics::default()), 0.0, Faults::default()),
        catalog: catalog.clone(),
    });
    let mut tasks = tokio::task::JoinSet::new();
    for lane in 0..concurrency.min(clients.len()) {
        let mine: Vec<Arc<SimClient>> = clients.iter().skip(lane).step_by(concurrency).cloned().collect();
        let ctx = ctx.clone();
        tasks.spawn(async move {
            for c in mine {
                let (r, _) = c.full_sync(&ctx).await;
                match r {
                    Ok(rep) if rep.sync_type != SyncType::Normal => {}
                    Ok(rep) => anyhow::bail!(
                        "enrolling {}: asked for a clean sync, the server answered {:?}",
                        c.host.machine_id,
                        rep.sync_type
                    ),
                    Err(e) => anyhow::bail!("enrolling {}: {e}", c.host.machine_id),
                }
            }
            Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(())
}
