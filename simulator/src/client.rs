//! One simulated `santasyncservice`: its persisted state (rule DB, pending events, synced
//! settings, clean-sync request) and the full-sync state machine of reference §5.1–§5.4, plus
//! the standalone event uploads that follow blocks.
//!
//! State sits behind a short-lived `std::sync::Mutex`, never held across an `.await`, so an
//! immediate upload can race a full sync of the same host as on a real Mac.

use crate::encode::{self, Kind, WireOptions};
use crate::events::{self, Catalog, EngineSettings};
use crate::fleet::Host;
use crate::generation::Generation;
use crate::metrics::Metrics;
use crate::ruledb::{Cleanup, RuleDb, RuleOp, validate_wire_rule};
use crate::strict::{self, Parser, Response};
use crate::transport::{Caller, RequestError, Transport, Xsrf};
use dasher_sdk::wire::{
    ClientMode, Decision, Event, EventUploadRequest, EventUploadResponse, Policy, PostflightRequest, PreflightRequest,
    PreflightResponse, RuleDownloadResponse, RuleType, SyncType,
};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Settings synced from the server (persisted in santad's sync state, §5.7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Effective mode.
    pub client_mode: ClientMode,
    /// Events per upload request.
    pub batch_size: u32,
    /// Seconds between full syncs.
    pub full_sync_interval: u32,
    /// Bundle hashing.
    pub enable_bundles: bool,
    /// Transitive rules.
    pub enable_transitive_rules: bool,
    /// Upload all events.
    pub enable_all_event_upload: bool,
    /// Suppress ALLOW_UNKNOWN events.
    pub disable_unknown_event_upload: bool,
}

impl Settings {
    fn defaults(profile_mode: ClientMode) -> Settings {
        Settings {
            client_mode: profile_mode,
            batch_size: 50,
            full_sync_interval: 600,
            enable_bundles: false,
            enable_transitive_rules: false,
            enable_all_event_upload: false,
            disable_unknown_event_upload: false,
        }
    }
}

/// Persisted client state.
pub struct State {
    /// Local rule DB.
    pub db: RuleDb,
    /// Pending events with local ids.
    pub pending: VecDeque<(u64, Event)>,
    next_event_id: u64,
    /// Synced settings.
    pub settings: Settings,
    profile_mode: ClientMode,
    /// The "sync type required" flag (CLEAN_ALL on a fresh install, §5.2).
    pub sync_type_required: SyncType,
    /// XSRF token (process lifetime).
    pub xsrf: Xsrf,
    /// Per-hash back-off of immediate uploads (10 min).
    recent_blocks: HashMap<String, f64>,
    /// PRNG for events and faults.
    pub rng: ChaCha8Rng,
    /// Outcome of the last full sync.
    pub last_sync_ok: Option<bool>,
    /// Executions the local engine blocked.
    pub blocked_executions: u64,
}

/// Per-client configuration from the profile.
#[derive(Clone, Debug, Default)]
pub struct ClientConfig {
    /// `SyncBaseURL` with trailing `/`.
    pub base_url: String,
    /// Compression and protobuf transfer.
    pub wire: WireOptions,
    /// `SyncExtraHeaders`.
    pub extra_headers: BTreeMap<String, String>,
    /// `SyncEnableCleanSyncEventUpload`.
    pub clean_sync_event_upload: bool,
}

/// A simulated Mac.
pub struct SimClient {
    /// Static facts.
    pub host: Host,
    /// Configuration.
    pub config: ClientConfig,
    /// The scenario group the host belongs to (index into the scenario's groups).
    pub group: Option<usize>,
    /// What the host runs, if its scenario group says (else the whole catalog).
    pub software: Option<Arc<crate::scenario::Software>>,
    /// Mutable state.
    pub state: Mutex<State>,
}

/// Why a full sync stopped.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    /// HTTP failure of a stage after retries.
    #[error("{stage}: {error}")]
    Request {
        /// Stage.
        stage: &'static str,
        /// Error.
        error: RequestError,
    },
    /// Response the client cannot parse.
    #[error("{stage}: {error}")]
    Parse {
        /// Stage.
        stage: &'static str,
        /// Error.
        error: strict::ParseError,
    },
    /// The server kept returning a cursor (legacy loop guard).
    #[error("ruledownload: more than {0} pages")]
    TooManyPages(usize),
    /// A fault killed the sync mid-download on purpose.
    #[error("ruledownload: sync killed by fault injection")]
    Killed,
}

impl SyncError {
    /// Stage name.
    pub fn stage(&self) -> &'static str {
        match self {
            SyncError::Request { stage, .. } | SyncError::Parse { stage, .. } => stage,
            SyncError::TooManyPages(_) | SyncError::Killed => "ruledownload",
        }
    }
    /// Short kind for reports.
    pub fn kind(&self) -> String {
        match self {
            SyncError::Request { error, .. } => error.kind(),
            SyncError::Parse { .. } => "parse".into(),
            SyncError::TooManyPages(_) => "cursor_loop".into(),
            SyncError::Killed => "killed".into(),
        }
    }
}

/// What a completed full sync did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncReport {
    /// Sync type performed.
    pub sync_type: SyncType,
    /// Rules received over all pages.
    pub rules_received: u32,
    /// Rules that validated.
    pub rules_processed: u32,
    /// Events uploaded in this sync.
    pub events_uploaded: usize,
    /// Rule-download pages.
    pub pages: usize,
}

/// Guard against servers that never stop paging.
pub const MAX_PAGES: usize = 100_000;

/// Shared context of all clients of a run.
pub struct Ctx {
    /// HTTP.
    pub transport: Transport,
    /// Software catalog.
    pub catalog: Arc<Catalog>,
}

impl Ctx {
    fn metrics(&self) -> &Metrics {
        &self.transport.metrics
    }
}

impl SimClient {
    /// A fresh install: empty DB, CLEAN_ALL required (§5.2).
    pub fn new(host: Host, config: ClientConfig, profile_mode: ClientMode, seed: u64, index: u64) -> SimClient {
        let rng = crate::fleet::rng_for(seed ^ 0x5eed_c11e, index);
        SimClient {
            host,
            config,
            group: None,
            software: None,
            state: Mutex::new(State {
                db: RuleDb::default(),
                pending: VecDeque::new(),
                next_event_id: 0,
                settings: Settings::defaults(profile_mode),
                profile_mode,
                sync_type_required: SyncType::CleanAll,
                xsrf: Xsrf::default(),
                recent_blocks: HashMap::new(),
                rng,
                last_sync_ok: None,
                blocked_executions: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("client state lock")
    }

    fn generation(&self) -> Generation {
        self.host.generation
    }

    fn parser(&self) -> Parser {
        if self.generation().is_proto_era() { Parser::Proto } else { Parser::Legacy }
    }

    fn caller(&self) -> Caller<'_> {
        Caller {
            santa_version: &self.host.santa_version,
            generation: self.generation(),
            extra_headers: &self.config.extra_headers,
            base_url: &self.config.base_url,
            machine_id: &self.host.machine_id,
        }
    }

    async fn request<T: DeserializeOwned + Default + prost::Message>(
        &self,
        ctx: &Ctx,
        stage: &'static str,
        kind: Kind,
        which: Response,
        msg: &(impl serde::Serialize + prost::Message),
        faulted: &mut bool,
    ) -> Result<T, SyncError> {
        let encoded = encode::encode(msg, kind, self.generation(), self.config.wire);
        self.send(ctx, stage, which, encoded, faulted).await
    }

    async fn send<T: DeserializeOwned + Default + prost::Message>(
        &self,
        ctx: &Ctx,
        stage: &'static str,
        which: Response,
        encoded: encode::Encoded,
        faulted: &mut bool,
    ) -> Result<T, SyncError> {
        let (mut xsrf, mut rng) = {
            let st = self.lock();
            (st.xsrf.clone(), st.rng.clone())
        };
        let (result, f) = ctx.transport.post_stage(stage, &encoded, &self.caller(), &mut xsrf, &mut rng).await;
        *faulted |= f;
        {
            let mut st = self.lock();
            st.xsrf = xsrf;
            st.rng = rng;
        }
        let body = result.map_err(|error| SyncError::Request { stage, error })?;
        if self.config.wire.proto_transfer && self.generation().is_proto_era() {
            strict::parse_proto(&body).map_err(|error| SyncError::Parse { stage, error })
        } else {
            strict::parse_json(&body, which, self.parser()).map_err(|error| SyncError::Parse { stage, error })
        }
    }

    /// Runs one full sync (§5.1). Returns the report, or the error that aborted it; `faulted`
    /// tells whether a fault was injected into it.
    pub async fn full_sync(&self, ctx: &Ctx) -> (Result<SyncReport, SyncError>, bool) {
        let started = Instant::now();
        let mut faulted = false;
        let r = self.full_sync_inner(ctx, &mut faulted).await;
        let m = ctx.metrics();
        match &r {
            Ok(rep) => {
                Metrics::add(&m.syncs_ok, 1);
                Metrics::add(&m.rules_applied, u64::from(rep.rules_processed));
                m.record("full_sync", started.elapsed().as_micros() as u64);
            }
            Err(e) => {
                Metrics::add(&m.syncs_failed, 1);
                m.error(e.stage(), &e.kind(), faulted || *e == SyncError::Killed);
            }
        }
        self.lock().last_sync_ok = Some(r.is_ok());
        (r, faulted)
    }

    /// The preflight this host would send now (its rule counts and rulesHash included).
    pub fn preflight_request(&self) -> PreflightRequest {
        let st = self.lock();
        let c = st.db.counts();
        let groups = self.host.groups.clone();
        PreflightRequest {
            serial_num: self.host.device.serial.clone(),
            hostname: self.host.hostname.clone(),
            os_version: self.host.device.os_version.clone(),
            os_build: self.host.device.os_build.clone(),
            model_identifier: self.host.device.model.clone(),
            santa_version: self.host.santa_version.clone(),
            primary_user: self.host.primary_user.clone(),
            client_mode: st.settings.client_mode as i32,
            request_clean_sync: st.sync_type_required != SyncType::Normal,
            binary_rule_count: c.binary,
            certificate_rule_count: c.certificate,
            compiler_rule_count: c.compiler,
            transitive_rule_count: c.transitive,
            teamid_rule_count: c.teamid,
            signingid_rule_count: c.signingid,
            cdhash_rule_count: c.cdhash,
            machine_id: self.host.machine_id.clone(),
            sip_status: self.host.sip_status,
            primary_user_groups: groups,
            rules_hash: st.db.rules_hash(),
            ..Default::default()
        }
    }

    /// The sync type performed for a preflight answer (§5.2 resolution table).
    pub fn resolve_sync_type(generation: Generation, required: SyncType, resp: &PreflightResponse) -> SyncType {
        let server = if generation.reads_sync_type() {
            resp.sync_type_value().filter(|t| !matches!(t, SyncType::Unspecified))
        } else {
            None
        };
        let clean =
            |required: SyncType| if required == SyncType::CleanAll { SyncType::CleanAll } else { SyncType::Clean };
        match server {
            Some(SyncType::CleanAll) => SyncType::CleanAll,
            Some(SyncType::Clean) => clean(required),
            Some(_) => SyncType::Normal,
            None if resp.clean_sync == Some(true) => {
                // GS < 2024.1 knows only clean_sync, which deletes all rules there.
                if generation.reads_sync_type() { clean(required) } else { SyncType::CleanAll }
            }
            None => SyncType::Normal,
        }
    }

    async fn full_sync_inner(&self, ctx: &Ctx, faulted: &mut bool) -> Result<SyncReport, SyncError> {
        let g = self.generation();
        // 1. Preflight: failure aborts, nothing applied.
        let req = self.preflight_request();
        let pre: PreflightResponse =
            self.request(ctx, "preflight", Kind::Preflight, Response::Preflight, &req, faulted).await?;
        let required = self.lock().sync_type_required;
        let sync_type = Self::resolve_sync_type(g, required, &pre);
        let batch_size = pre.batch_size.filter(|b| *b > 0).unwrap_or(self.lock().settings.batch_size).max(1);

        // 2. Event upload: failures do not stop the sync. Clean syncs drop pending events
        //    unless SyncEnableCleanSyncEventUpload.
        let mut uploaded = 0;
        if sync_type != SyncType::Normal && !self.config.clean_sync_event_upload {
            self.lock().pending.clear();
        } else {
            uploaded = self.upload_pending(ctx, batch_size as usize, faulted).await;
        }

        // 3. Rule download: cursor loop; any failure aborts with nothing applied.
        let mut ops: Vec<RuleOp> = Vec::new();
        let (mut received, mut processed, mut pages) = (0u32, 0u32, 0usize);
        let mut cursor: Option<String> = None;
        let kill = ctx.transport.faults.kill_download > 0.0
            && ctx.transport.faults_enabled.load(std::sync::atomic::Ordering::Relaxed)
            && {
                let mut st = self.lock();
                st.rng.random_bool(ctx.transport.faults.kill_download.min(1.0))
            };
        loop {
            let req = encode::rule_download(cursor.as_deref(), &self.host.machine_id, g, self.config.wire);
            let page: RuleDownloadResponse =
                self.send(ctx, "ruledownload", Response::RuleDownload, req, faulted).await?;
            pages += 1;
            received += page.rules.len() as u32;
            for w in &page.rules {
                if !self.understands(w.rule_type, w.policy) {
                    continue;
                }
                if let Some(op) = validate_wire_rule(w) {
                    processed += 1;
                    ops.push(op);
                }
            }
            let next = page.cursor;
            if kill {
                Metrics::add(&ctx.metrics().faults_injected, 1);
                *faulted = true;
                return Err(SyncError::Killed);
            }
            match next {
                // Proto-era clients stop on an empty cursor; legacy ones request again.
                Some(c) if !c.is_empty() || !g.is_proto_era() => cursor = Some(c),
                _ => break,
            }
            if pages >= MAX_PAGES {
                return Err(SyncError::TooManyPages(MAX_PAGES));
            }
        }
        let cleanup = match sync_type {
            SyncType::Clean => Cleanup::Clean,
            SyncType::CleanAll => Cleanup::CleanAll,
            _ => Cleanup::Normal,
        };
        let rules_hash = {
            let mut st = self.lock();
            st.db.apply(&ops, cleanup);
            st.db.rules_hash()
        };

        // 4. Postflight: result (and status) ignored; settings applied afterwards.
        let post = PostflightRequest {
            rules_received: received,
            rules_processed: processed,
            machine_id: self.host.machine_id.clone(),
            sync_type: sync_type as i32,
            rules_hash,
        };
        let mut ignored = false;
        let _ = self
            .request::<PreflightResponse>(ctx, "postflight", Kind::Postflight, Response::Preflight, &post, &mut ignored)
            .await;
        self.apply_settings(&pre, sync_type);
        Ok(SyncReport {
            sync_type,
            rules_received: received,
            rules_processed: processed,
            events_uploaded: uploaded,
            pages,
        })
    }

    /// Whether this generation knows a rule type and policy (older clients drop the rest).
    fn understands(&self, rule_type: i32, policy: i32) -> bool {
        let g = self.generation();
        let t_ok = match RuleType::try_from(rule_type) {
            Ok(RuleType::SigningId) => g.at_least(2023, 5),
            Ok(RuleType::CdHash) => g.at_least(2024, 3),
            _ => true,
        };
        let p_ok = match Policy::try_from(policy) {
            Ok(Policy::Cel) => g.at_least(2025, 6),
            Ok(Policy::SilentGuiBlocklist | Policy::SilentTtyBlocklist) => g.at_least(2026, 6),
            _ => true,
        };
        t_ok && p_ok
    }

    fn apply_settings(&self, pre: &PreflightResponse, performed: SyncType) {
        let g = self.generation();
        let mut st = self.lock();
        if performed != SyncType::Normal && g.at_least(2026, 4) {
            // NPS ≥ 2026.4: a clean sync wipes previously synced settings first (§5.2).
            st.settings = Settings::defaults(st.profile_mode);
        }
        let s = &mut st.settings;
        if let Some(m) = pre.client_mode_value().filter(|m| *m != ClientMode::Unknown)
            && (m != ClientMode::Standalone || g.at_least(2024, 11))
        {
            s.client_mode = m;
        }
        if let Some(b) = pre.batch_size.filter(|b| *b > 0) {
            s.batch_size = b;
        }
        s.full_sync_interval = match pre.full_sync_interval {
            Some(v) if v > 0 && g.at_least(2026, 3) => v.max(60),
            None | Some(0) if g.at_least(2026, 3) => s.full_sync_interval,
            Some(v) if v >= 60 => v,
            _ => 600,
        };
        let absent_false = !g.at_least(2023, 7);
        let set = |dst: &mut bool, v: Option<bool>| match v {
            Some(v) => *dst = v,
            None if absent_false => *dst = false,
            None => {}
        };
        set(&mut s.enable_bundles, pre.enable_bundles);
        set(&mut s.enable_transitive_rules, pre.enable_transitive_rules);
        set(&mut s.enable_all_event_upload, pre.enable_all_event_upload);
        if let Some(v) = pre.disable_unknown_event_upload {
            s.disable_unknown_event_upload = v;
        }
        if performed != SyncType::Normal {
            st.sync_type_required = SyncType::Normal;
        }
    }

    /// Uploads all pending events in batches; stops at the first failure (§5.4).
    async fn upload_pending(&self, ctx: &Ctx, batch_size: usize, faulted: &mut bool) -> usize {
        let mut total = 0;
        loop {
            let batch: Vec<(u64, Event)> = self.lock().pending.iter().take(batch_size).cloned().collect();
            if batch.is_empty() {
                return total;
            }
            let ids: Vec<u64> = batch.iter().map(|(id, _)| *id).collect();
            let events: Vec<Event> = batch.into_iter().map(|(_, e)| e).collect();
            let n = events.len();
            match self.upload(ctx, events, faulted).await {
                Ok(_) => {
                    self.lock().pending.retain(|(id, _)| !ids.contains(id));
                    total += n;
                }
                Err(e) => {
                    ctx.metrics().error(e.stage(), &e.kind(), *faulted);
                    return total;
                }
            }
        }
    }

    async fn upload(
        &self,
        ctx: &Ctx,
        events: Vec<Event>,
        faulted: &mut bool,
    ) -> Result<EventUploadResponse, SyncError> {
        let n = events.len() as u64;
        let req = EventUploadRequest { events, machine_id: self.host.machine_id.clone(), ..Default::default() };
        let r = self.request(ctx, "eventupload", Kind::EventUpload, Response::EventUpload, &req, faulted).await;
        if r.is_ok() {
            Metrics::add(&ctx.metrics().events_uploaded, n);
        }
        r
    }

    fn engine_settings(st: &State) -> EngineSettings {
        EngineSettings {
            lockdown: st.settings.client_mode != ClientMode::Monitor,
            all_events: st.settings.enable_all_event_upload,
            no_unknown_events: st.settings.disable_unknown_event_upload,
            bundles: st.settings.enable_bundles,
        }
    }

    /// Simulates one execution at `now` (Unix seconds). Stores the event if santad would, and
    /// for a block uploads it immediately outside any full sync (with per-hash 10-minute
    /// back-off), following up with BUNDLE_BINARY events if the server asks (§5.1, §5.4).
    pub async fn execute(&self, ctx: &Ctx, now: f64) {
        let (event, binary, immediate) = {
            let mut guard = self.lock();
            let st = &mut *guard;
            let idx = match &self.software {
                Some(sw) if !sw.runs.is_empty() => sw.runs[st.rng.random_range(0..sw.runs.len())],
                _ => st.rng.random_range(0..ctx.catalog.binaries.len()),
            };
            let b = &ctx.catalog.binaries[idx];
            let s = Self::engine_settings(st);
            let mut d = events::decide(&st.db, b, s.lockdown);
            // A scenario's blocked software is blocked unless a rule decided otherwise.
            if d == Decision::AllowUnknown && self.software.as_ref().is_some_and(|sw| sw.blocked.contains(&idx)) {
                d = Decision::BlockUnknown;
            }
            if d.is_block() {
                st.blocked_executions += 1;
            }
            if !events::is_uploaded(d, s) {
                return;
            }
            let e = events::event_for(b, d, &self.host.primary_user, now, &mut st.rng, s);
            let id = st.next_event_id;
            st.next_event_id += 1;
            st.pending.push_back((id, e.clone()));
            let recent = st.recent_blocks.get(&b.sha256).is_some_and(|t| now - t < 600.0);
            let immediate = d.is_block() && !recent;
            if immediate {
                st.recent_blocks.insert(b.sha256.clone(), now);
            }
            (Some((id, e)), idx, immediate)
        };
        let Some((id, event)) = event else { return };
        if !immediate {
            return;
        }
        Metrics::add(&ctx.metrics().immediate_uploads, 1);
        let mut faulted = false;
        let bundle_hash = event.file_bundle_hash.clone();
        match self.upload(ctx, vec![event], &mut faulted).await {
            Ok(resp) => {
                self.lock().pending.retain(|(i, _)| *i != id);
                if !bundle_hash.is_empty() && resp.event_upload_bundle_binaries.contains(&bundle_hash) {
                    let follow = {
                        let mut st = self.lock();
                        events::bundle_binary_events(&ctx.catalog.binaries[binary], &mut st.rng)
                    };
                    let batch = self.lock().settings.batch_size.max(1) as usize;
                    for chunk in follow.chunks(batch) {
                        if self.upload(ctx, chunk.to_vec(), &mut faulted).await.is_err() {
                            // Stored and sent at the next sync.
                            let mut st = self.lock();
                            for e in chunk {
                                let id = st.next_event_id;
                                st.next_event_id += 1;
                                st.pending.push_back((id, e.clone()));
                            }
                        }
                    }
                }
            }
            Err(e) => ctx.metrics().error("eventupload", &e.kind(), faulted), // stays pending
        }
    }

    /// Marks the client as wanting a clean sync (`santactl sync --clean[-all]`).
    pub fn request_clean(&self, t: SyncType) {
        self.lock().sync_type_required = t;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(sync_type: Option<SyncType>, clean: Option<bool>) -> PreflightResponse {
        PreflightResponse { sync_type: sync_type.map(|t| t as i32), clean_sync: clean, ..Default::default() }
    }

    #[test]
    fn clean_sync_resolution_table() {
        use SyncType::*;
        let g = Generation::Nps2026_7;
        let r = SimClient::resolve_sync_type;
        assert_eq!(r(g, CleanAll, &resp(None, None)), Normal);
        assert_eq!(r(g, Normal, &resp(Some(Clean), None)), Clean);
        assert_eq!(r(g, CleanAll, &resp(Some(Clean), None)), CleanAll);
        assert_eq!(r(g, Normal, &resp(Some(CleanAll), None)), CleanAll);
        assert_eq!(r(g, Normal, &resp(None, Some(true))), Clean);
        assert_eq!(r(g, Normal, &resp(Some(Normal), Some(true))), Normal, "sync_type present → clean_sync ignored");
        assert_eq!(r(g, Normal, &resp(Some(CleanStandalone), None)), Normal);
        // < 2024.1: only clean_sync, and it deletes everything.
        assert_eq!(r(Generation::Gs2023_6, Normal, &resp(Some(Clean), None)), Normal);
        assert_eq!(r(Generation::Gs2023_6, Normal, &resp(None, Some(true))), CleanAll);
    }
}
