//! Fleet generation: seeded, deterministic hosts built from real-shaped macOS data
//! (reference `macos-fleet-data.md` §1–§3).
//!
//! For every host we *write* the two documents a real client reads —
//! `/System/Library/CoreServices/SystemVersion.plist` and the `ioreg -a -c
//! IOPlatformExpertDevice` dump — and then build the host's [`DeviceInfo`] by *parsing* them
//! with the `plist` crate, as `SNTSystemInfo` does. Hosts can also be loaded from a directory
//! of real files. This module never talks to the network.

use crate::generation::Generation;
use plist::{Dictionary, Value};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::Path;

/// A macOS release: `(ProductVersion, ProductBuildVersion, release date YYYY-MM-DD)`.
pub type Release = (&'static str, &'static str, &'static str);

/// Every macOS release the generator knows, newest major first.
pub fn releases() -> impl Iterator<Item = Release> {
    [TAHOE, SEQUOIA, SONOMA, OLDER].into_iter().flatten().copied()
}

/// True if Mac `model` (`hw.model`) can run macOS `major` (Apple silicon from its first
/// release on; Intel up to its last).
pub fn model_runs(model: &str, major: u32) -> bool {
    if let Some(m) = APPLE_SILICON.iter().find(|m| m.0 == model) {
        return major >= m.3;
    }
    INTEL.iter().find(|m| m.0 == model).is_some_and(|m| major <= m.4)
}

/// Current major (Tahoe 26), ≈ 70 % of a 2026 fleet (§1.3).
const TAHOE: &[Release] = &[
    ("26.5.1", "25F80", "2026-06-01"),
    ("26.5.2", "25F84", "2026-06-29"),
    ("26.6", "25G72", "2026-07-27"),
    ("26.6.1", "25G76", "2026-08-06"),
    ("26.6.2", "25G83", "2026-08-17"),
];
/// N-1 (Sequoia 15), ≈ 20 %.
const SEQUOIA: &[Release] = &[
    ("15.7.5", "24G624", "2026-03-24"),
    ("15.7.7", "24G720", "2026-05-11"),
    ("15.7.8", "24G824", "2026-07-27"),
    ("15.7.9", "24G830", "2026-08-06"),
];
/// N-2 (Sonoma 14), ≈ 7 %.
const SONOMA: &[Release] = &[("14.8.7", "23J520", "2026-05-11"), ("14.8.9", "23J631", "2026-08-06")];
/// Older, ≈ 3 % (including the Ventura RSR base build, which Santa reports, §1.1).
const OLDER: &[Release] =
    &[("13.7.8", "22H730", "2025-08-20"), ("12.7.6", "21H1320", "2024-07-29"), ("13.3.1", "22E261", "2023-04-07")];

/// An Apple-silicon model: `(hw.model, board, SoC, first macOS major, 10-char serial)`.
type AsModel = (&'static str, &'static str, &'static str, u32, bool);
const APPLE_SILICON: &[AsModel] = &[
    ("MacBookAir10,1", "J313AP", "t8103", 11, false),
    ("MacBookPro17,1", "J293AP", "t8103", 11, false),
    ("MacBookPro18,1", "J316sAP", "t6000", 12, true),
    ("MacBookPro18,3", "J314sAP", "t6000", 12, true),
    ("Mac14,2", "J413AP", "t8112", 12, true),
    ("Mac14,9", "J414sAP", "t6020", 13, true),
    ("Mac14,15", "J415AP", "t8112", 13, true),
    ("Mac15,3", "J504AP", "t8122", 14, true),
    ("Mac15,7", "J516sAP", "t6030", 14, true),
    ("Mac15,12", "J613AP", "t8122", 14, true),
    ("Mac15,13", "J615AP", "t8122", 14, true),
    ("Mac16,1", "J604AP", "t8132", 15, true),
    ("Mac16,8", "J614sAP", "t6040", 15, true),
    ("Mac16,10", "J773gAP", "t8132", 15, true),
    ("Mac16,12", "J713AP", "t8132", 15, true),
    ("Mac17,2", "J704AP", "t8142", 26, true),
    ("Mac17,3", "J813AP", "t8142", 26, true),
];

/// An Intel model: `(hw.model, board-id, bridge-model (T2), serial model codes, last major)`.
type IntelModel = (&'static str, &'static str, Option<&'static str>, &'static [&'static str], u32);
const INTEL: &[IntelModel] = &[
    ("MacBookPro16,1", "Mac-E1008331FDC96864", Some("J152fAP"), &["MD6N", "MD6M", "MD6W"], 26),
    ("MacBookPro16,2", "Mac-5F9802EFE386AA28", Some("J214kAP"), &["ML7H", "ML7L", "ML7K"], 26),
    ("MacBookPro15,1", "Mac-937A206F2EE63C01", Some("J680AP"), &["KGYG", "JG5H", "JG5J"], 15),
    ("MacBookPro15,4", "Mac-53FDB3D8DB8CA971", Some("J213AP"), &["L40Y", "L410", "L411"], 15),
    ("iMac20,1", "Mac-CFF7D910A743CAAF", Some("J185AP"), &["PN5T", "PN5Y", "PN5X"], 26),
    ("MacBookAir9,1", "Mac-0CFF9C7C2B63DF8D", Some("J230kAP"), &["MNHP", "MNHY", "MNHX"], 15),
    ("iMac19,1", "Mac-AA95B1DDAB278B95", None, &["JV3Q", "JV3P", "JV40"], 15),
];

const FIRST_NAMES: &[&str] = &[
    "Jane", "John", "Alice", "Bob", "Maria", "Wei", "Priya", "Ahmed", "Sofia", "Lukas", "Emma", "Noah", "Olivia",
    "Liam", "Yuki", "Carlos", "Fatima", "Ivan", "Chloe", "Mateo",
];
const LAST_NAMES: &[&str] = &[
    "Doe", "Smith", "Nguyen", "Garcia", "Kim", "Patel", "Muller", "Rossi", "Tanaka", "Silva", "Khan", "Johnson", "Lee",
    "Brown", "Martin", "Novak", "Cohen", "Okafor", "Larsen", "Dubois",
];
const GROUPS: &[&str] = &["engineering", "design", "sales", "finance", "it", "support", "santa-lockdown-wave2"];

/// Raw values a generated host is made of (what the documents encode).
#[derive(Clone, Debug, PartialEq)]
pub struct HostSpec {
    /// `IOPlatformUUID`.
    pub uuid: String,
    /// `IOPlatformSerialNumber`.
    pub serial: String,
    /// `hw.model`.
    pub model: String,
    /// Apple-silicon board (`J613AP`) or `None` on Intel.
    pub board: Option<String>,
    /// SoC (`t8122`) on Apple silicon.
    pub soc: Option<String>,
    /// Intel `board-id`.
    pub board_id: Option<String>,
    /// Intel T2 `bridge-model`.
    pub bridge_model: Option<String>,
    /// ProductVersion.
    pub os_version: String,
    /// ProductBuildVersion.
    pub os_build: String,
    /// Release date of that build (`YYYY-MM-DD`).
    pub os_date: String,
    /// `SystemVersion.plist` `BuildID` (UUIDv1 stamped a few days before release).
    pub build_id: String,
    /// Full hostname.
    pub hostname: String,
    /// Short user name.
    pub primary_user: String,
    /// Owner groups.
    pub groups: Vec<String>,
    /// Santa `CFBundleVersion`.
    pub santa_version: String,
    /// Client generation.
    pub generation: Generation,
    /// Raw SIP flags (0 when SIP is on).
    pub sip_status: u32,
}

/// What a client knows about its machine, parsed from the documents (Santa's `SNTSystemInfo`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    /// `IOPlatformUUID` (the default machine id).
    pub hardware_uuid: String,
    /// `IOPlatformSerialNumber`.
    pub serial: String,
    /// `model` (= `hw.model`).
    pub model: String,
    /// `ProductVersion`.
    pub os_version: String,
    /// `ProductBuildVersion`.
    pub os_build: String,
}

/// A simulated host: its parsed device info plus the user-level facts of the fleet.
#[derive(Clone, Debug, PartialEq)]
pub struct Host {
    /// Parsed from the documents.
    pub device: DeviceInfo,
    /// Machine id used in URLs (profile `MachineID` or the hardware UUID).
    pub machine_id: String,
    /// Full hostname.
    pub hostname: String,
    /// Primary user.
    pub primary_user: String,
    /// Owner groups.
    pub groups: Vec<String>,
    /// Santa version string.
    pub santa_version: String,
    /// Client generation (drives encoding and parsing).
    pub generation: Generation,
    /// SIP flags.
    pub sip_status: u32,
}

/// An error reading host documents.
#[derive(Debug, thiserror::Error)]
pub enum DocError {
    /// Not a plist.
    #[error("not a property list: {0}")]
    Plist(#[from] plist::Error),
    /// A required key is missing or has the wrong type.
    #[error("{doc}: key {key} missing or not a {kind}")]
    Missing {
        /// Which document.
        doc: &'static str,
        /// The key.
        key: &'static str,
        /// Expected plist type.
        kind: &'static str,
    },
    /// No `IOPlatformExpertDevice` entry in the ioreg dump.
    #[error("ioreg dump has no IOPlatformExpertDevice entry")]
    NoPlatformDevice,
    /// File system error.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The error.
        source: std::io::Error,
    },
}

/// A deterministic PRNG for `seed` and a sub-stream (host index), so hosts are independent of
/// fleet size and order.
pub fn rng_for(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    r.set_stream(stream);
    r
}

fn pick<'a, T>(rng: &mut impl Rng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

fn uuid_v4(rng: &mut impl Rng) -> String {
    let mut b: [u8; 16] = rng.random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    fmt_uuid(&b)
}

fn fmt_uuid(b: &[u8; 16]) -> String {
    let h: String = b.iter().map(|x| format!("{x:02X}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// Days since 1970-01-01 for a `YYYY-MM-DD` date (civil calendar).
fn days_from_civil(date: &str) -> i64 {
    let mut it = date.split('-').map(|p| p.parse::<i64>().unwrap_or(1));
    let (y, m, d) = (it.next().unwrap_or(1970), it.next().unwrap_or(1), it.next().unwrap_or(1));
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// A version-1 UUID whose timestamp is `release − U(2..8) days` (§1.2 `BuildID`).
fn build_id(rng: &mut impl Rng, release: &str) -> String {
    let unix = days_from_civil(release) * 86400 - rng.random_range(2 * 86400..8 * 86400);
    // 100-ns intervals since 1582-10-15.
    let ts = (unix as u64 + 12_219_292_800) * 10_000_000 + rng.random_range(0..10_000_000u64);
    let mut b = [0u8; 16];
    b[0..4].copy_from_slice(&((ts & 0xffff_ffff) as u32).to_be_bytes());
    b[4..6].copy_from_slice(&(((ts >> 32) & 0xffff) as u16).to_be_bytes());
    b[6..8].copy_from_slice(&((((ts >> 48) & 0x0fff) as u16) | 0x1000).to_be_bytes());
    let clock: u16 = rng.random();
    b[8] = ((clock >> 8) as u8 & 0x3f) | 0x80;
    b[9] = clock as u8;
    let node: [u8; 6] = rng.random();
    b[10..16].copy_from_slice(&node);
    fmt_uuid(&b)
}

const SERIAL10: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ0123456789";
const YEAR_HALF: &[u8] = b"CDFGHJKLMNPQRSTVWXYZ";
const WEEK: &[u8] = b"123456789CDFGHJKLMNPQRTVWXY";
const PLANTS: &[&str] = &["C02", "C07", "C17", "C1M", "D25", "F5K", "FVF", "FVH", "G8W"];

fn serial10(rng: &mut impl Rng) -> String {
    (0..10).map(|_| SERIAL10[rng.random_range(0..SERIAL10.len())] as char).collect()
}

fn serial12(rng: &mut impl Rng, model_code: &str) -> String {
    let mut s = String::from(*pick(rng, PLANTS));
    s.push(YEAR_HALF[rng.random_range(0..YEAR_HALF.len())] as char);
    s.push(WEEK[rng.random_range(0..WEEK.len())] as char);
    for _ in 0..3 {
        s.push(SERIAL10[rng.random_range(0..SERIAL10.len())] as char);
    }
    s.push_str(model_code);
    s
}

fn release_for(rng: &mut impl Rng, max_major: u32, min_major: u32) -> Release {
    for _ in 0..16 {
        let p = rng.random_range(0..100);
        let pool = match p {
            0..70 => TAHOE,
            70..90 => SEQUOIA,
            90..97 => SONOMA,
            _ => OLDER,
        };
        let r = *pick(rng, pool);
        let major: u32 = r.0.split('.').next().and_then(|m| m.parse().ok()).unwrap_or(0);
        if major <= max_major && major >= min_major {
            return r;
        }
    }
    SEQUOIA[SEQUOIA.len() - 1]
}

fn hostname(rng: &mut impl Rng, first: &str, last: &str, user: &str, model: &str, i: u64) -> String {
    let kind = if model.starts_with("iMac") {
        "iMac"
    } else if model.starts_with("Macmini") || model == "Mac16,10" {
        "Mac-mini"
    } else if model.starts_with("MacBookAir") || matches!(model, "Mac14,2" | "Mac14,15" | "Mac15,12" | "Mac15,13") {
        "MacBook-Air"
    } else {
        "MacBook-Pro"
    };
    match rng.random_range(0..10) {
        0..5 => format!("{first}-{last}s-{kind}.local"),
        5..9 => format!("{}-{user}-{}.corp.example.com", pick(rng, &["nyc", "sfo", "lon", "ber", "tyo"]), i % 1000),
        _ => format!("{kind}-{}.local", rng.random_range(2..9)),
    }
}

/// Generates host `index` of the fleet with `seed`; `gens` is the generation mix (weights).
pub fn generate_spec(seed: u64, index: u64, gens: &[(Generation, u32)]) -> HostSpec {
    let mut rng = rng_for(seed, index);
    let apple_silicon = rng.random_range(0..100) < 90;
    let (model, board, soc, board_id, bridge, serial, os) = if apple_silicon {
        let (model, board, soc, first, ten) = *pick(&mut rng, APPLE_SILICON);
        let serial = if ten { serial10(&mut rng) } else { serial12(&mut rng, "Q6L4") };
        let os = release_for(&mut rng, 26, first);
        (model, Some(board.to_owned()), Some(soc.to_owned()), None, None, serial, os)
    } else {
        let (model, board_id, bridge, codes, last) = *pick(&mut rng, INTEL);
        let code = *pick(&mut rng, codes);
        let serial = serial12(&mut rng, code);
        let os = release_for(&mut rng, last, 12);
        (model, None, None, Some(board_id.to_owned()), bridge.map(str::to_owned), serial, os)
    };
    let first = *pick(&mut rng, FIRST_NAMES);
    let last = *pick(&mut rng, LAST_NAMES);
    let user = format!("{}{}", first[..1].to_ascii_lowercase(), last.to_ascii_lowercase());
    let host = hostname(&mut rng, first, last, &user, model, index);
    let mut groups = vec![(*pick(&mut rng, GROUPS)).to_owned()];
    if rng.random_range(0..4) == 0 {
        groups.push("santa-lockdown-wave2".to_owned());
        groups.dedup();
    }
    let generation = Generation::pick_weighted(&mut rng, gens);
    let santa_version = generation.bundle_version(rng.random_range(100..999));
    let sip_status = if rng.random_range(0..200) == 0 { 111 } else { 0 };
    HostSpec {
        uuid: uuid_v4(&mut rng),
        serial,
        model: model.to_owned(),
        board,
        soc,
        board_id,
        bridge_model: bridge,
        os_version: os.0.to_owned(),
        os_build: os.1.to_owned(),
        os_date: os.2.to_owned(),
        build_id: build_id(&mut rng, os.2),
        hostname: host,
        primary_user: user,
        groups,
        santa_version,
        generation,
        sip_status,
    }
}

fn s(v: &str) -> Value {
    Value::String(v.to_owned())
}

/// NUL-terminated data, as ioreg shows `<"text">`.
fn cdata(parts: &[&str]) -> Value {
    let mut b = Vec::new();
    for p in parts {
        b.extend_from_slice(p.as_bytes());
        b.push(0);
    }
    Value::Data(b)
}

fn padded(text: &[u8], at: usize, len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len.max(at + text.len())];
    b[at..at + text.len()].copy_from_slice(text);
    b
}

fn to_xml(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    v.to_writer_xml(&mut out).expect("writing a plist to memory cannot fail");
    out
}

/// Renders `/System/Library/CoreServices/SystemVersion.plist` (§1.1 key order and shapes).
pub fn render_system_version(spec: &HostSpec) -> Vec<u8> {
    let major: u32 = spec.os_version.split('.').next().and_then(|m| m.parse().ok()).unwrap_or(26);
    let minor: u32 = spec.os_version.split('.').nth(1).and_then(|m| m.parse().ok()).unwrap_or(0);
    let ios = match major {
        12 => format!("15.{minor}"),
        13 => format!("16.{}", (minor + 1).min(7)),
        14 => format!("17.{}", minor.min(7)),
        15 => format!("18.{minor}"),
        m => format!("{m}.{minor}"),
    };
    let year = &spec.os_date[..4];
    let mut d = Dictionary::new();
    d.insert("BuildID".into(), s(&spec.build_id));
    d.insert("ProductBuildVersion".into(), s(&spec.os_build));
    d.insert("ProductCopyright".into(), s(&format!("1983-{year} Apple Inc.")));
    d.insert("ProductName".into(), s("macOS"));
    d.insert("ProductUserVisibleVersion".into(), s(&spec.os_version));
    d.insert("ProductVersion".into(), s(&spec.os_version));
    d.insert("iOSSupportVersion".into(), s(&ios));
    to_xml(&Value::Dictionary(d))
}

/// Renders `ioreg -rd1 -c IOPlatformExpertDevice -a` (Apple silicon: top-level array) or the
/// `-d2` form rooted at `Root` (Intel), with strings vs data as on real hardware (§2.2).
pub fn render_ioreg(spec: &HostSpec) -> Vec<u8> {
    let mut d = Dictionary::new();
    d.insert("IOObjectClass".into(), s("IOPlatformExpertDevice"));
    d.insert("IOPlatformSerialNumber".into(), s(&spec.serial));
    d.insert("IOPlatformUUID".into(), s(&spec.uuid));
    d.insert("manufacturer".into(), cdata(&["Apple Inc."]));
    d.insert("model".into(), cdata(&[&spec.model]));
    match (&spec.board, &spec.board_id) {
        (Some(board), _) => {
            d.insert("IORegistryEntryID".into(), Value::Integer(4294967821u64.into()));
            d.insert("IORegistryEntryName".into(), s(board));
            d.insert("IOPolledInterface".into(), s("AppleARMWatchdogTimerHibernateHandler is not serializable"));
            d.insert("compatible".into(), cdata(&[board, &spec.model, "AppleARM"]));
            d.insert("device_type".into(), cdata(&["bootrom"]));
            d.insert("name".into(), cdata(&["device-tree"]));
            let soc = spec.soc.as_deref().unwrap_or("t8103");
            d.insert("platform-name".into(), Value::Data(padded(soc.as_bytes(), 0, 32)));
            d.insert("region-info".into(), Value::Data(padded(b"LL/A", 0, 32)));
            d.insert("secure-root-prefix".into(), cdata(&["md"]));
            d.insert("serial-number".into(), Value::Data(padded(spec.serial.as_bytes(), 0, 32)));
            d.insert("target-type".into(), cdata(&[board.trim_end_matches("AP")]));
            d.insert("clock-frequency".into(), Value::Data(vec![0x00, 0x36, 0x6e, 0x01]));
            to_xml(&Value::Array(vec![Value::Dictionary(d)]))
        }
        (None, board_id) => {
            d.insert("IORegistryEntryName".into(), s(&spec.model));
            d.insert("IOPolledInterface".into(), s("SMCPolledInterface is not serializable"));
            if let Some(b) = board_id {
                d.insert("board-id".into(), cdata(&[b]));
            }
            if let Some(b) = &spec.bridge_model {
                d.insert("bridge-model".into(), cdata(&[b]));
            }
            d.insert("clock-frequency".into(), Value::Data(vec![0x00, 0x84, 0xd7, 0x17]));
            d.insert("compatible".into(), cdata(&[&spec.model]));
            d.insert("name".into(), cdata(&["/"]));
            d.insert("platform-feature".into(), Value::Data(vec![0x32, 0, 0, 0, 0, 0, 0, 0]));
            d.insert("product-name".into(), cdata(&[&spec.model]));
            let code = &spec.serial[spec.serial.len().saturating_sub(4)..];
            let mut sn = padded(code.as_bytes(), 0, 13);
            sn.extend_from_slice(&padded(spec.serial.as_bytes(), 0, 30));
            d.insert("serial-number".into(), Value::Data(sn));
            d.insert("system-type".into(), Value::Data(vec![2]));
            d.insert("target-type".into(), cdata(&["Mac"]));
            d.insert("version".into(), cdata(&["1.0"]));
            let mut root = Dictionary::new();
            root.insert("IOObjectClass".into(), s("IORegistryEntry"));
            root.insert("IORegistryEntryChildren".into(), Value::Array(vec![Value::Dictionary(d)]));
            root.insert("IORegistryEntryID".into(), Value::Integer(4294967552u64.into()));
            root.insert("IORegistryEntryName".into(), s("Root"));
            to_xml(&Value::Dictionary(root))
        }
    }
}

fn get_str(d: &Dictionary, doc: &'static str, key: &'static str) -> Result<String, DocError> {
    d.get(key).and_then(Value::as_string).map(str::to_owned).ok_or(DocError::Missing { doc, key, kind: "string" })
}

/// Finds the `IOPlatformExpertDevice` dict in either ioreg shape.
fn find_platform_device(v: &Value) -> Option<&Dictionary> {
    match v {
        Value::Array(items) => items.iter().find_map(find_platform_device),
        Value::Dictionary(d) => {
            if d.get("IOObjectClass").and_then(Value::as_string) == Some("IOPlatformExpertDevice") {
                return Some(d);
            }
            d.get("IORegistryEntryChildren").and_then(find_platform_device)
        }
        _ => None,
    }
}

/// Builds [`DeviceInfo`] by parsing the two documents, as the client does.
pub fn parse_documents(system_version: &[u8], ioreg: &[u8]) -> Result<DeviceInfo, DocError> {
    let sv = Value::from_reader(std::io::Cursor::new(system_version))?;
    let sv = sv.as_dictionary().ok_or(DocError::Missing { doc: "SystemVersion.plist", key: "<root>", kind: "dict" })?;
    let io = Value::from_reader(std::io::Cursor::new(ioreg))?;
    let dev = find_platform_device(&io).ok_or(DocError::NoPlatformDevice)?;
    let model = match dev.get("model") {
        Some(Value::Data(b)) => String::from_utf8_lossy(b.split(|c| *c == 0).next().unwrap_or_default()).into_owned(),
        Some(Value::String(s)) => s.clone(),
        _ => return Err(DocError::Missing { doc: "ioreg", key: "model", kind: "data" }),
    };
    Ok(DeviceInfo {
        hardware_uuid: get_str(dev, "ioreg", "IOPlatformUUID")?,
        serial: get_str(dev, "ioreg", "IOPlatformSerialNumber")?,
        model,
        os_version: get_str(sv, "SystemVersion.plist", "ProductVersion")?,
        os_build: get_str(sv, "SystemVersion.plist", "ProductBuildVersion")?,
    })
}

impl Host {
    /// Generates the documents for `spec` and builds the host by parsing them.
    pub fn from_spec(spec: &HostSpec) -> Result<Host, DocError> {
        let device = parse_documents(&render_system_version(spec), &render_ioreg(spec))?;
        Ok(Host {
            machine_id: device.hardware_uuid.clone(),
            device,
            hostname: spec.hostname.clone(),
            primary_user: spec.primary_user.clone(),
            groups: spec.groups.clone(),
            santa_version: spec.santa_version.clone(),
            generation: spec.generation,
            sip_status: spec.sip_status,
        })
    }
}

/// Generates `count` hosts for `seed`.
pub fn generate(seed: u64, count: usize, gens: &[(Generation, u32)]) -> Vec<Host> {
    (0..count as u64)
        .map(|i| Host::from_spec(&generate_spec(seed, i, gens)).expect("generated documents always parse"))
        .collect()
}

/// Loads hosts from a directory: each sub-directory (or the directory itself) holding
/// `SystemVersion.plist` and an ioreg dump (`ioreg.plist` or `ioreg.xml`).
pub fn load_dir(dir: &Path, generation: Generation) -> Result<Vec<Host>, DocError> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| DocError::Io { path: p.display().to_string(), source: e });
    let mut dirs = vec![dir.to_path_buf()];
    if let Ok(rd) = std::fs::read_dir(dir) {
        let mut subs: Vec<_> = rd.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.is_dir()).collect();
        subs.sort();
        dirs.extend(subs);
    }
    let mut hosts = Vec::new();
    for (i, d) in dirs.iter().enumerate() {
        let sv = d.join("SystemVersion.plist");
        let io = ["ioreg.plist", "ioreg.xml"].iter().map(|n| d.join(n)).find(|p| p.exists());
        let (true, Some(io)) = (sv.exists(), io) else { continue };
        let device = parse_documents(&read(&sv)?, &read(&io)?)?;
        hosts.push(Host {
            machine_id: device.hardware_uuid.clone(),
            hostname: format!("loaded-{i}.local"),
            device,
            primary_user: String::new(),
            groups: Vec::new(),
            santa_version: generation.bundle_version(1),
            generation,
            sip_status: 0,
        });
    }
    Ok(hosts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mix() -> Vec<(Generation, u32)> {
        Generation::ALL.iter().map(|g| (*g, 1)).collect()
    }

    #[test]
    fn same_seed_gives_identical_fleet_and_different_seed_differs() {
        let a = generate(42, 50, &mix());
        let b = generate(42, 50, &mix());
        assert_eq!(a, b);
        let c = generate(43, 50, &mix());
        assert_ne!(a, c);
        // Host i does not depend on fleet size.
        assert_eq!(generate(42, 10, &mix())[..], a[..10]);
    }

    #[test]
    fn generated_plists_parse_and_match_documented_shapes() {
        for i in 0..200 {
            let spec = generate_spec(7, i, &mix());
            let sv = Value::from_reader(std::io::Cursor::new(render_system_version(&spec))).unwrap();
            let sv = sv.as_dictionary().unwrap();
            let keys: Vec<_> = sv.keys().map(String::as_str).collect();
            assert_eq!(
                keys,
                [
                    "BuildID",
                    "ProductBuildVersion",
                    "ProductCopyright",
                    "ProductName",
                    "ProductUserVisibleVersion",
                    "ProductVersion",
                    "iOSSupportVersion"
                ]
            );
            let build_id = sv["BuildID"].as_string().unwrap();
            assert_eq!(build_id.len(), 36);
            assert_eq!(&build_id[14..15], "1", "BuildID is a version-1 UUID: {build_id}");
            assert_eq!(sv["ProductName"].as_string(), Some("macOS"));
            assert_eq!(sv["iOSSupportVersion"].as_string().unwrap().split('.').count(), 2);

            let io = Value::from_reader(std::io::Cursor::new(render_ioreg(&spec))).unwrap();
            let dev = find_platform_device(&io).unwrap();
            assert!(matches!(dev["IOPlatformUUID"], Value::String(_)));
            assert!(matches!(dev["IOPlatformSerialNumber"], Value::String(_)));
            assert!(matches!(dev["model"], Value::Data(_)));
            assert!(matches!(dev["serial-number"], Value::Data(_)));
            let uuid = dev["IOPlatformUUID"].as_string().unwrap();
            assert_eq!(uuid, uuid.to_ascii_uppercase());
            assert_eq!(uuid.split('-').map(str::len).collect::<Vec<_>>(), [8, 4, 4, 4, 12]);
            if spec.board.is_some() {
                assert!(matches!(io, Value::Array(_)), "Apple silicon: -rd1 form is an array");
                assert!(dev.get("board-id").is_none());
                let sn = dev["serial-number"].as_data().unwrap();
                assert_eq!(sn.len(), 32);
                assert!(spec.serial.len() == 10 || spec.serial.len() == 12);
            } else {
                assert_eq!(io.as_dictionary().unwrap()["IORegistryEntryName"].as_string(), Some("Root"));
                assert!(dev["board-id"].as_data().unwrap().starts_with(b"Mac-"));
                assert_eq!(spec.serial.len(), 12);
                let sn = dev["serial-number"].as_data().unwrap();
                assert_eq!(&sn[13..25], spec.serial.as_bytes(), "Intel serial at offset 13");
            }
            let parsed = parse_documents(&render_system_version(&spec), &render_ioreg(&spec)).unwrap();
            assert_eq!(parsed.hardware_uuid, spec.uuid);
            assert_eq!(parsed.serial, spec.serial);
            assert_eq!(parsed.model, spec.model);
            assert_eq!(parsed.os_version, spec.os_version);
            assert_eq!(parsed.os_build, spec.os_build);
        }
    }

    #[test]
    fn intel_hosts_respect_last_major() {
        for i in 0..500 {
            let spec = generate_spec(3, i, &mix());
            if let Some((_, _, _, _, last)) = INTEL.iter().find(|m| m.0 == spec.model) {
                let major: u32 = spec.os_version.split('.').next().unwrap().parse().unwrap();
                assert!(major <= *last && major >= 12, "{} on {}", spec.model, spec.os_version);
            }
        }
    }

    #[test]
    fn loads_hosts_from_a_directory_of_documents() {
        let dir = tempfile::tempdir().unwrap();
        let specs: Vec<_> = (0..3).map(|i| generate_spec(5, i, &mix())).collect();
        for (i, spec) in specs.iter().enumerate() {
            let d = dir.path().join(format!("{i:02}"));
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("SystemVersion.plist"), render_system_version(spec)).unwrap();
            std::fs::write(d.join("ioreg.plist"), render_ioreg(spec)).unwrap();
        }
        std::fs::create_dir_all(dir.path().join("empty")).unwrap();
        let hosts = load_dir(dir.path(), Generation::Gs2024_7).unwrap();
        assert_eq!(hosts.len(), 3);
        for (h, spec) in hosts.iter().zip(&specs) {
            assert_eq!(h.machine_id, spec.uuid);
            assert_eq!(h.device.model, spec.model);
            assert_eq!(h.generation, Generation::Gs2024_7);
        }
    }

    #[test]
    fn parses_the_reference_ioreg_example() {
        let xml = br#"<?xml version="1.0" encoding="UTF-8"?>
<plist version="1.0"><array><dict>
<key>IOObjectClass</key><string>IOPlatformExpertDevice</string>
<key>IOPlatformSerialNumber</key><string>H4WV7QJ2KX</string>
<key>IOPlatformUUID</key><string>854EB79C-2338-4B0B-979B-762A0896F7A2</string>
<key>model</key><data>TWFjMTUsMTIA</data></dict></array></plist>"#;
        let sv = br#"<?xml version="1.0" encoding="UTF-8"?><plist version="1.0"><dict>
<key>ProductBuildVersion</key><string>25G83</string><key>ProductVersion</key><string>26.6.2</string>
</dict></plist>"#;
        let d = parse_documents(sv, xml).unwrap();
        assert_eq!(d.model, "Mac15,12");
        assert_eq!(d.serial, "H4WV7QJ2KX");
        assert_eq!(d.os_build, "25G83");
    }
}
