//! Upload benchmark (issue #5): drain N queued observations to the real FHIR peer (Medplum's
//! router behind the Node wrapper, oidc-provider tokens; `scripts/install/fhir-server.sh`).
//!
//! `cargo bench --bench upload -- [--observations 100000] [--bundle transaction|batch]
//! [--per-bundle N] [--append-size N] [--pairs N] [--gateway-only]
//! [--gap-experiment US [--idle-ms MS]]`
//!
//! Bundle configurations (stated in the first line printed):
//! - `transaction` (default): as configured for Medplum, transactions of 6 conditional-create
//!   Observations + 2 Devices (`bundle_size = 6`, `max_bundle_entries = 8`: Medplum refuses
//!   transactions of more than 8 conditional creates);
//! - `batch`: `bundle_type = "batch"`, `bundle_size = N` (`--per-bundle`, default 96), no
//!   entry limit (Medplum applies its 8-entry limit to transactions only, and resolves the
//!   Devices' `urn:uuid` references in batches too).
//!
//! Two phases per pair, each against a fresh peer process (so both do the same creates):
//! - baseline: the same Bundles, pre-built before timing, POSTed one at a time with a minimal
//!   reqwest client and one bearer token — the floor any uploader pays for this server;
//! - gateway: the records in the sled queue, drained by the real `Uploader` (peek, decode,
//!   build, token cache, POST, per-entry settle, ack), configured as for Medplum
//!   (transactions, conditional create, `max_bundle_entries = 8`).
//!
//! First printed (CPU only, no server): the queue calls of the drain alone (peek, grouped acks)
//! over a fresh sled queue, with the resident memory they left behind; then decoding the queued
//! units and building the Bundles in the queued format and builder of round 3 against the JSON
//! units and serde Bundle of before. After the baseline phase: reading one real reply of the
//! server (its first answer while warming up) with the uploader's reply scanner against
//! serde_json skipping the same bytes.
//!
//! Pairs (`--pairs N`, default 3): each pair is a baseline phase and a gateway phase of N
//! observations one right after the other, in alternating order (baseline first in pairs 1, 3,
//! …; gateway first in 2, 4, …). The verdict is the median over the pairs of each pair's
//! throughput ratio and of the gateway's CPU per observation. Why: the Node server does ≈ 97 %
//! of the work per observation, and on a shared host its speed drifts by 10–15 % over minutes;
//! one pair of phases minutes apart judged that drift, not the gateway (round 8). A slow spell
//! now spoils one pair, which the median sets aside, and the phases it compares are adjacent.
//!
//! Experiments (round 10; they replace the gateway's phase, so they give no verdict):
//! `--gap-experiment US` runs a second baseline in its place that keeps the CPU busy for US µs
//! after each reply (as the gateway is while it settles, acks, peeks and builds), and
//! `--idle-ms MS` lets that side's warmed server idle MS ms before timing (as it does while
//! the gateway's queue is filled). Neither made the server slower (docs/PERFORMANCE.md).
//!
//! Printed: wall time and observations/s of both, their ratio (goal ≥ 0.9), and the CPU time
//! of THIS process per observation (getrusage; the server is another process, so its CPU is
//! not included; goal ≤ 15 µs for the gateway), split into the main thread (the uploader's
//! loop and the HTTP client: one current-thread runtime) and the other threads (the queue's
//! commit thread and sled's own I/O threads), with the server's CPU per observation from
//! /proc for context, and the Bundles and bytes the server received (its counters; the same
//! on both sides). One Bundle is in flight at a time in both phases, as in the gateway.

#[path = "support/cpu_time.rs"]
mod cpu_time;

// Shared with tests/upload_peers.rs (fault injection and stats are unused here).
#[allow(dead_code)]
#[path = "../tests/support/node_peers.rs"]
mod node_peers;

use std::sync::Arc;
use std::time::{Duration, Instant};

use cpu_time::{cpu_process, cpu_thread};
use node_peers::{NodePeers, PeerOptions};
use vectorcare_gateway::config::problems::Problems;
use vectorcare_gateway::fhir::bundle_reference::serde_bundle_text;
use vectorcare_gateway::fhir::examples::{example_map_context, example_readings};
use vectorcare_gateway::fhir::{
    BundleOptions, BundleType, UploadUnit, WriteMode, build_bundle, decode_unit_owned, encode_unit,
    map_reading,
};
use vectorcare_gateway::queue::{DurableQueue, QueueConfig, SledQueue};
use vectorcare_gateway::upload::keys::{SigningAlg, generate_into_dir};
use vectorcare_gateway::upload::reply::ReplyBundle;
use vectorcare_gateway::upload::uploader::Step;
use vectorcare_gateway::upload::{RawUploadConfig, UploadConfig, build};
use vectorcare_hal::clock::SimulatedClock;

const CLIENT_ID: &str = "gw-bench";
/// Medplum refuses transactions with more than 8 conditional creates: 2 Devices + 6 readings.
const OBS_PER_TRANSACTION: usize = 6;
/// Each request has a cost of its own for any client (≈ 70–90 µs of CPU on a quiet host, up
/// to ≈ 280 µs on a loaded one; docs/PERFORMANCE.md, rounds 9 and 10), and the gateway adds
/// ≈ 27 µs per Bundle, so larger Bundles cost both sides less per observation and the server
/// no more (96 since round 9; 48 before, `--per-bundle 48`).
const OBS_PER_BATCH: usize = 96;
/// Readings sent to each fresh peer before timing (not counted).
const WARM_UP: usize = 3000;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

/// Pairs of phases (`--pairs N`, default 3; at least 1).
fn pairs_arg() -> usize {
    arg("--pairs").map_or(3, |v| v.parse::<usize>().expect("--pairs N").max(1))
}

fn observations_arg() -> usize {
    arg("--observations").map_or(100_000, |v| v.parse().expect("--observations N"))
}

/// The Bundle configuration measured (both phases use the same).
#[derive(Clone, Copy)]
struct Shape {
    bundle_type: BundleType,
    per_bundle: usize,
}

impl Shape {
    fn from_args() -> Self {
        let bundle_type = match arg("--bundle").as_deref() {
            None | Some("transaction") => BundleType::Transaction,
            Some("batch") => BundleType::Batch,
            Some(other) => panic!("--bundle transaction|batch, not {other}"),
        };
        let default = match bundle_type {
            BundleType::Transaction => OBS_PER_TRANSACTION,
            BundleType::Batch => OBS_PER_BATCH,
        };
        let per_bundle =
            arg("--per-bundle").map_or(default, |v| v.parse().expect("--per-bundle N"));
        Self {
            bundle_type,
            per_bundle,
        }
    }

    fn describe(&self) -> String {
        match self.bundle_type {
            BundleType::Transaction => format!(
                "transactions of {} conditional-create Observations + 2 Devices (max_bundle_entries = 8)",
                self.per_bundle
            ),
            BundleType::Batch => format!(
                "batches of {} conditional-create Observations + 2 Devices (no entry limit)",
                self.per_bundle
            ),
        }
    }
}

/// `n` distinct heart-rate readings from one strap (one gateway + one device per Bundle).
fn units(n: usize) -> Vec<UploadUnit> {
    let (_, base) = example_readings()
        .into_iter()
        .find(|(name, _)| *name == "heart_rate")
        .expect("heart rate example");
    let ctx = example_map_context(true);
    (0..n)
        .map(|i| {
            let mut r = base.clone();
            r.received_at += time::Duration::milliseconds(i as i64 * 10);
            map_reading(&r, &ctx).expect("map")
        })
        .collect()
}

/// User + system CPU time of another process, from /proc/PID/stat (clock ticks).
fn cpu_of(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("proc stat");
    let after_comm = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = after_comm.split(' ').collect();
    // Fields 14 and 15 of stat (utime, stime) are 12 and 13 after "(comm) ".
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_micros(ticks * 1_000_000 / hz)
}

struct Phase {
    wall: Duration,
    cpu: Duration,
    main_cpu: Duration,
    server_cpu: Duration,
    /// Bundles the server received in the phase, and their bytes (the same on both sides).
    posted: (u64, u64),
    /// The first reply body the server sent in this phase (baseline phases only).
    first_reply: bytes::Bytes,
}

/// Resident memory of this process (KiB), from /proc/self/status.
fn rss_kib() -> i64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Starts the clocks of a phase.
struct Timer {
    cpu: Duration,
    main_cpu: Duration,
    server_cpu: Duration,
    posted: (u64, u64),
    wall: Instant,
    pid: u32,
}

/// Bundles POSTed to the peer so far, and their bytes (its counters).
async fn posted(peers: &NodePeers) -> (u64, u64) {
    let stats = peers.stats(&reqwest::Client::new()).await;
    let count = |k: &str| stats[k].as_u64().expect("counter");
    (count("bundles"), count("bundle_bytes"))
}

impl Timer {
    async fn start(peers: &NodePeers) -> Self {
        let posted = posted(peers).await;
        Self {
            posted,
            cpu: cpu_process(),
            main_cpu: cpu_thread(),
            server_cpu: cpu_of(peers.pid()),
            wall: Instant::now(),
            pid: peers.pid(),
        }
    }

    /// Stops the clocks, then reads the peer's counters (not timed).
    async fn stop(self, peers: &NodePeers) -> Phase {
        let wall = self.wall.elapsed();
        let cpu = cpu_process() - self.cpu;
        let main_cpu = cpu_thread() - self.main_cpu;
        let server_cpu = cpu_of(self.pid) - self.server_cpu;
        let now = posted(peers).await;
        Phase {
            wall,
            cpu,
            main_cpu,
            server_cpu,
            posted: (now.0 - self.posted.0, now.1 - self.posted.1),
            first_reply: bytes::Bytes::new(),
        }
    }
}

fn upload_config(
    fhir_base: &str,
    key: &vectorcare_gateway::upload::keys::GeneratedKey,
    shape: Shape,
) -> UploadConfig {
    let bundle = match shape.bundle_type {
        BundleType::Transaction => "max_bundle_entries = 8\nbundle_type = \"transaction\"",
        BundleType::Batch => "bundle_type = \"batch\"",
    };
    let text = format!(
        "fhir_base_url = {fhir_base:?}\nclient_id = {CLIENT_ID:?}\nprivate_key = {:?}\n\
         active_kid = {:?}\nalg = \"ES384\"\nbundle_size = {}\n{bundle}\n\
         write_mode = \"conditional_create\"\n",
        key.private_key_path, key.kid, shape.per_bundle
    );
    let raw: RawUploadConfig = toml::from_str(&text).expect("toml");
    let mut problems = Problems::new();
    raw.validate("upload", &mut problems).expect("valid config")
}

/// Warms the Node peer's JIT with other readings, so neither phase pays for it. Returns the
/// server's first reply (a response Bundle to a full Bundle of `shape`).
async fn warm_up(peers: &NodePeers, cfg: &UploadConfig, shape: Shape, n: usize) -> bytes::Bytes {
    let warm: Vec<UploadUnit> = units(n + WARM_UP).split_off(n);
    baseline(peers, cfg, shape, &warm, Duration::ZERO)
        .await
        .first_reply
}

/// Reading one real reply of the server (the uploader's `ReplyBundle::parse`) against
/// serde_json skipping the same text (`IgnoredAny`: a generic parser that checks and skips
/// every token, allocating nothing), in this process. Prints µs per reply and ns per byte.
fn reply_line(reply: &[u8], per_bundle: usize) {
    const ROUNDS: u32 = 2000;
    let reader = ReplyBundle::parse(reply).expect("the server's reply reads");
    assert!(
        reader.entry(per_bundle - 1).is_some(),
        "one answer per entry"
    );
    let time = |f: &dyn Fn()| {
        let start = Instant::now();
        for _ in 0..ROUNDS {
            f();
        }
        start.elapsed() / ROUNDS
    };
    let scanner = time(&|| {
        std::hint::black_box(ReplyBundle::parse(std::hint::black_box(reply)).is_ok());
    });
    let serde = time(&|| {
        let skipped: Result<serde::de::IgnoredAny, _> =
            serde_json::from_slice(std::hint::black_box(reply));
        std::hint::black_box(skipped.is_ok());
    });
    let ns_per_byte = |d: Duration| d.as_nanos() as f64 / reply.len() as f64;
    println!(
        "reply     one reply of {} bytes ({per_bundle} entries): ReplyBundle::parse {:.1} µs ({:.2} ns/byte, {:.2} µs/obs); serde_json IgnoredAny {:.1} µs ({:.2} ns/byte)",
        reply.len(),
        scanner.as_secs_f64() * 1e6,
        ns_per_byte(scanner),
        scanner.as_secs_f64() * 1e6 / per_bundle as f64,
        serde.as_secs_f64() * 1e6,
        ns_per_byte(serde),
    );
}

async fn baseline(
    peers: &NodePeers,
    cfg: &UploadConfig,
    shape: Shape,
    units: &[UploadUnit],
    gap: Duration,
) -> Phase {
    let opts = BundleOptions {
        bundle_type: shape.bundle_type,
        write_mode: WriteMode::ConditionalCreate,
    };
    let bundles: Vec<bytes::Bytes> = units
        .chunks(shape.per_bundle)
        .map(|c| bytes::Bytes::from(build_bundle(c, &opts).json.get().to_owned()))
        .collect();
    let (_, auth) = build::authorizer(cfg, Arc::new(SimulatedClock::new(0, true))).expect("auth");
    let token = auth.token().await.expect("token").access_token.clone();
    let http = reqwest::Client::new();
    let timer = Timer::start(peers).await;
    let mut first_reply = bytes::Bytes::new();
    for body in bundles {
        let r = http
            .post(&peers.fhir_base)
            .bearer_auth(&token)
            // The request headers the gateway sends (`upload::client::post_bundle`), so the
            // server does the same work for both sides.
            .header("content-type", "application/fhir+json")
            .header("accept", "application/fhir+json")
            .header("prefer", "return=minimal")
            .body(body)
            .send()
            .await
            .expect("post");
        assert!(r.status().is_success(), "baseline POST: {}", r.status());
        let reply = r.bytes().await.expect("body");
        if first_reply.is_empty() {
            first_reply = reply;
        }
        spin(gap);
    }
    Phase {
        first_reply,
        ..timer.stop(peers).await
    }
}

/// Keeps this thread busy for `d` (the CPU work a client does between two requests).
fn spin(d: Duration) {
    let start = Instant::now();
    while start.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// Records per append while filling the queue (`--append-size`, default 1 000: one group
/// commit each). A gateway that is offline while readings trickle in commits a few at a time
/// (`--append-size 16` is like that for sled: no batch fills a leaf past its split point; see
/// `Store::split_appended_leaves`); large appends are a device emptying its memory at once.
fn append_size_arg() -> usize {
    arg("--append-size").map_or(1000, |v| {
        v.parse::<usize>().expect("--append-size N").max(1)
    })
}

/// A fresh sled queue (in /var/tmp: a real disk, not tmpfs) holding `units` in format 1.
async fn filled_queue(units: &[UploadUnit]) -> (tempfile::TempDir, SledQueue) {
    let dir = tempfile::tempdir_in("/var/tmp").expect("queue dir");
    let queue = SledQueue::open(dir.path(), &QueueConfig::default()).expect("queue");
    for chunk in units.chunks(append_size_arg()) {
        let payloads = chunk
            .iter()
            .map(|u| encode_unit(u).expect("encode"))
            .collect();
        queue.append(payloads).await.expect("append");
    }
    (dir, queue)
}

async fn gateway(peers: &NodePeers, cfg: &UploadConfig, units: &[UploadUnit]) -> Phase {
    let fill = Instant::now();
    let (_dir, queue) = filled_queue(units).await;
    eprintln!("gateway phase: queue filled in {:?}", fill.elapsed());
    let queue = Arc::new(queue);
    let mut uploader = build::uploader(cfg, queue.clone(), Arc::new(SimulatedClock::new(0, true)))
        .expect("uploader");
    eprintln!("gateway phase: timing starts");
    let timer = Timer::start(peers).await;
    loop {
        match uploader.step().await.expect("step") {
            Step::Sent { .. } => {}
            Step::Empty if queue.stats().expect("stats").depth == 0 => break,
            Step::Empty => tokio::time::sleep(Duration::from_millis(1)).await,
            Step::Wait(d) => panic!(
                "the peer refused during the benchmark ({d:?}): {:?}",
                uploader.status().borrow()
            ),
        }
    }
    let phase = timer.stop(peers).await;
    let status = uploader.status().borrow().clone();
    assert_eq!(
        status.uploaded as usize,
        units.len(),
        "all created, none lost: {status:?}"
    );
    phase
}

/// The uploader's CPU-only work per record, queued format 0 (JSON unit, serde Bundle, as
/// before round 3) against format 1 (framed unit, concatenated Bundle), on the same units, in
/// this process: decode every payload, then build Bundles of `per_bundle`. Prints µs/obs and
/// payload bytes/obs of both.
fn codec(units: &[UploadUnit], shape: Shape) {
    let opts = BundleOptions {
        bundle_type: shape.bundle_type,
        write_mode: WriteMode::ConditionalCreate,
    };
    let old: Vec<Vec<u8>> = units
        .iter()
        .map(|u| serde_json::to_vec(u).expect("json"))
        .collect();
    let new: Vec<Vec<u8>> = units
        .iter()
        .map(|u| encode_unit(u).expect("encode"))
        .collect();
    let per = |d: Duration| d.as_secs_f64() * 1e6 / units.len() as f64;
    let bytes = |p: &[Vec<u8>]| p.iter().map(Vec::len).sum::<usize>() as f64 / p.len() as f64;
    let mut total = 0usize;
    let start = Instant::now();
    for chunk in old.chunks(shape.per_bundle) {
        let decoded: Vec<UploadUnit> = chunk
            .iter()
            .map(|p| serde_json::from_slice(p).expect("decode"))
            .collect();
        total += serde_bundle_text(&decoded, &opts).expect("bundle").len();
    }
    let before = start.elapsed();
    let start = Instant::now();
    for chunk in new.chunks(shape.per_bundle) {
        let decoded: Vec<UploadUnit> = chunk
            .iter()
            // As the uploader does: the queue hands it a copy of the stored payload, which
            // becomes the unit (`decode_unit_owned`).
            .map(|p| decode_unit_owned(p.clone()).expect("decode"))
            .collect();
        total -= build_bundle(&decoded, &opts).json.get().len();
    }
    let after = start.elapsed();
    assert_eq!(total, 0, "both builders write the same Bundle text");
    println!(
        "codec     decode + build, CPU only: format 0 (JSON unit, serde Bundle) {:.2} µs/obs, {:.0} B/unit; format 1 (framed unit, concatenated Bundle) {:.2} µs/obs, {:.0} B/unit",
        per(before),
        bytes(&old),
        per(after),
        bytes(&new),
    );
}

/// The queue's share of the drain, no server and no Bundles: the uploader's queue calls alone
/// (`peek_skipping` of `per_bundle` records, one `ack` per 256 confirmed ones, as
/// `AckGrouping::DEFAULT` does) over the same format-1 payloads, on a fresh sled queue.
/// Prints CPU µs/obs of this process, main thread and other threads, and how much the
/// process's resident memory grew over the drain (a drain must not keep what it read:
/// docs/PERFORMANCE.md, "Round 5"; it runs first, before other phases' freed memory could
/// hide growth).
async fn queue_only(units: &[UploadUnit], shape: Shape) {
    let (_dir, queue) = filled_queue(units).await;
    let rss_before = rss_kib();
    let (cpu, main_cpu) = (cpu_process(), cpu_thread());
    let mut pending = Vec::new();
    let mut drained = 0;
    loop {
        let records = queue
            .peek_skipping(shape.per_bundle, &pending)
            .expect("peek");
        if records.is_empty() {
            break;
        }
        drained += records.len();
        pending.extend(records.iter().map(|r| r.id));
        pending.sort_unstable();
        if pending.len() >= 256 {
            queue.ack(&pending).expect("ack");
            pending.clear();
        }
    }
    queue.ack(&pending).expect("ack");
    let (cpu, main_cpu) = (cpu_process() - cpu, cpu_thread() - main_cpu);
    let rss_growth_mib = (rss_kib() - rss_before) as f64 / 1024.0;
    assert_eq!(drained, units.len());
    let per = |d: Duration| d.as_secs_f64() * 1e6 / units.len() as f64;
    println!(
        "queue     peek + grouped ack only (no server): CPU {:.2} µs/obs (main thread {:.2}, other threads {:.2}); resident memory {:+.1} MiB over the drain",
        per(cpu),
        per(main_cpu),
        per(cpu.saturating_sub(main_cpu)),
        rss_growth_mib,
    );
}

fn line(name: &str, n: usize, p: &Phase) {
    let per = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
    println!(
        "{name:<11} wall {:>7.2} s  {:>8.0} obs/s  client CPU {:>6.2} µs/obs (main thread {:>6.2}, other threads {:>6.2})  server CPU {:>7.1} µs/obs  ({} Bundles, {} bytes)",
        p.wall.as_secs_f64(),
        n as f64 / p.wall.as_secs_f64(),
        per(p.cpu),
        per(p.main_cpu),
        per(p.cpu.saturating_sub(p.main_cpu)),
        per(p.server_cpu),
        p.posted.0,
        p.posted.1,
    );
}

/// The middle value (the mean of the middle two for an even count).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    }
}

/// Which phase runs; a pair runs both, in the order its number gives.
#[derive(Clone, Copy, PartialEq)]
enum Side {
    Baseline,
    Gateway,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    vectorcare_gateway::crypto::install_providers();
    let n = observations_arg();
    let keys = tempfile::tempdir().expect("tempdir");
    let key = generate_into_dir(keys.path(), SigningAlg::ES384).expect("key");
    let jwks: jsonwebtoken::jwk::JwkSet =
        serde_json::from_slice(&std::fs::read(&key.jwks_path).expect("jwks")).expect("jwks");
    let shape = Shape::from_args();
    let units = units(n);
    // `--gateway-only`: one gateway phase (for profiling it, e.g. under `perf record`).
    let gateway_only = std::env::args().any(|a| a == "--gateway-only");
    let pairs = if gateway_only { 1 } else { pairs_arg() };
    // `--gap-experiment US` (module doc): the gateway's side is a second baseline that keeps
    // the CPU busy US µs between requests.
    let gap = arg("--gap-experiment").map(|v| Duration::from_micros(v.parse().expect("US")));
    let side = if gap.is_some() { "gapped" } else { "gateway" };
    let idle = arg("--idle-ms").map(|v| Duration::from_millis(v.parse().expect("--idle-ms MS")));
    println!(
        "upload: {n} observations to Medplum (Node peer), {}, one Bundle in flight; queue filled {} records per append; {pairs} pair(s) of phases",
        shape.describe(),
        append_size_arg()
    );
    if !gateway_only {
        // The queue line first: its memory figure must not reuse what the codec line freed.
        queue_only(&units, shape).await;
        codec(&units, shape);
    }

    let per_obs = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
    let (mut ratios, mut gateway_cpus) = (Vec::new(), Vec::new());
    for pair in 1..=pairs {
        let order = match (gateway_only, pair % 2) {
            (true, _) => vec![Side::Gateway],
            (false, 1) => vec![Side::Baseline, Side::Gateway],
            (false, _) => vec![Side::Gateway, Side::Baseline],
        };
        let (mut base, mut gw) = (None, None);
        for side in order {
            let peers = NodePeers::start(&PeerOptions::new(CLIENT_ID, jwks.clone()));
            let cfg = upload_config(&peers.fhir_base, &key, shape);
            let reply = warm_up(&peers, &cfg, shape, n).await;
            if side == Side::Baseline {
                let phase = baseline(&peers, &cfg, shape, &units, Duration::ZERO).await;
                drop(peers);
                if pair == 1 {
                    reply_line(&reply, shape.per_bundle);
                }
                line(&format!("baseline {pair}"), n, &phase);
                base = Some(phase);
            } else if let Some(gap) = gap {
                if let Some(idle) = idle {
                    tokio::time::sleep(idle).await;
                }
                let phase = baseline(&peers, &cfg, shape, &units, gap).await;
                drop(peers);
                line(&format!("gapped {pair}"), n, &phase);
                gw = Some(phase);
            } else {
                let phase = gateway(&peers, &cfg, &units).await;
                drop(peers);
                line(&format!("gateway {pair}"), n, &phase);
                gw = Some(phase);
            }
        }
        let gw = gw.expect("every pair runs the gateway");
        gateway_cpus.push(per_obs(gw.cpu));
        if let Some(base) = base {
            let ratio = base.wall.as_secs_f64() / gw.wall.as_secs_f64();
            ratios.push(ratio);
            println!(
                "pair {pair}    {side}/baseline throughput {ratio:.3}; {side} CPU {:.2} µs/obs",
                per_obs(gw.cpu)
            );
        }
    }

    if !ratios.is_empty() {
        let range = |v: &[f64], digits: usize| {
            let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            format!("{lo:.digits$}–{hi:.digits$}")
        };
        // An experiment's second side is no gateway: its figures are no verdict on the goals.
        let (ratio_goal, cpu_goal) = match gap {
            None => ("goal >= 0.9; ", "goal <= 15; "),
            Some(_) => ("", ""),
        };
        println!(
            "median of {pairs} pair(s): {side}/baseline throughput {:.3} ({ratio_goal}pairs {}); {side} CPU {:.2} µs/obs ({cpu_goal}pairs {})",
            median(ratios.clone()),
            range(&ratios, 3),
            median(gateway_cpus.clone()),
            range(&gateway_cpus, 2),
        );
    }
}
