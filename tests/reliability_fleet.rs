//! A fleet (issue #9): N gateway processes (`vectorcare-gateway run --simulate-devices`, one
//! simulated serial oximeter each, their own gateway id, patient, state directory and status
//! port) upload to ONE Medplum behind the fault proxy. The proxy refuses connections for a
//! while ("server down"), then recovers.
//!
//! Asserted: after recovery the request rate at the server (from the proxy log, in sliding
//! windows) stays within 2× the steady rate measured before the outage — jittered backoff, no
//! thundering herd — and every reading each gateway queued arrives exactly once (the fleet is
//! stopped, each gateway restarted without devices to drain its queue, and the records ever
//! appended to each queue are compared with the server's Observations for its patient).
//!
//!   short (normal run, ~1.5 min): cargo test --test reliability_fleet -- --nocapture
//!   long (100 gateways, 5-minute outage, ~17 min):
//!       cargo test --test reliability_fleet -- --ignored --nocapture

#[allow(dead_code)]
#[path = "support/fault_proxy.rs"]
mod fault_proxy;
#[allow(dead_code)]
#[path = "support/netfault_gateway.rs"]
mod netfault_gateway;
#[allow(dead_code)]
#[path = "support/node_peers.rs"]
mod node_peers;

use std::time::Duration;

use fault_proxy::Mode;
use netfault_gateway::{Gateway, GatewaySpec, Servers, finite_scenario, wait_for};

struct Fleet {
    gateways: usize,
    /// Each gateway's device measures this often.
    interval_seconds: u64,
    warm_up: Duration,
    steady: Duration,
    outage: Duration,
    recovery: Duration,
    /// Rates are averaged over windows this long (a 1-s bucket of a few requests is noise).
    window: Duration,
    backoff_base_ms: u64,
    backoff_cap_seconds: u64,
}

/// Requests per second in each `window` starting every second within `[from, to)`.
fn sliding_rates(times: &[Duration], from: Duration, to: Duration, window: Duration) -> Vec<f64> {
    let mut rates = Vec::new();
    let mut start = from;
    while start + window <= to {
        let n = times
            .iter()
            .filter(|t| **t >= start && **t < start + window)
            .count();
        rates.push(n as f64 / window.as_secs_f64());
        start += Duration::from_secs(1);
    }
    rates
}

fn run(fleet: Fleet) {
    let servers = Servers::start(300);
    let generate_for = (fleet.warm_up + fleet.steady + fleet.outage + fleet.recovery).as_secs();
    let mut gateways: Vec<Gateway> = (0..fleet.gateways)
        .map(|i| {
            let scenario = finite_scenario(1, fleet.interval_seconds, generate_for, 100 + i as u64);
            let mut spec = GatewaySpec::new(&format!("fleet-{i:03}"), scenario, 1);
            spec.upload_extra = format!(
                "backoff_base_ms = {}\nbackoff_cap_seconds = {}\n",
                fleet.backoff_base_ms, fleet.backoff_cap_seconds
            );
            Gateway::spawn(&spec, &servers)
        })
        .collect();
    for g in &mut gateways {
        g.wait_ready(Duration::from_secs(120));
    }
    let t0 = servers.fhir.now();
    // Warm-up: every gateway has delivered something.
    let all_up = wait_for(fleet.warm_up + Duration::from_secs(60), || {
        let counts = servers.counts();
        (gateways
            .iter()
            .all(|g| counts.by_subject.contains_key(&g.patient)))
        .then_some(())
    });
    assert!(
        all_up.is_some(),
        "not every gateway uploaded: {:?}",
        servers.counts()
    );
    let warm_left = (t0 + fleet.warm_up).saturating_sub(servers.fhir.now());
    std::thread::sleep(warm_left);

    let steady_from = servers.fhir.now();
    std::thread::sleep(fleet.steady);
    let down_from = servers.fhir.now();
    let cpu_before: Vec<Duration> = gateways.iter().map(Gateway::cpu_time).collect();
    servers.set_mode(Mode::Refuse);
    std::thread::sleep(fleet.outage);
    let cpu_down: Duration = gateways
        .iter()
        .zip(&cpu_before)
        .map(|(g, before)| g.cpu_time().saturating_sub(*before))
        .sum();
    let up_from = servers.fhir.now();
    servers.set_mode(Mode::PassThrough);
    std::thread::sleep(fleet.recovery);
    let up_to = servers.fhir.now();

    let events = servers.events();
    let tries: Vec<Duration> = events
        .iter()
        .filter(|e| e.is_attempt())
        .map(|e| e.at)
        .collect();
    let count_in =
        |from: Duration, to: Duration| tries.iter().filter(|t| **t >= from && **t < to).count();
    let steady_rate =
        count_in(steady_from, down_from) as f64 / (down_from - steady_from).as_secs_f64();
    let down_rate = count_in(down_from, up_from) as f64 / (up_from - down_from).as_secs_f64();
    let after = sliding_rates(&tries, up_from, up_to, fleet.window);
    let peak = after.iter().copied().fold(0.0, f64::max);
    // Every reading each gateway stored is on the server once: stop the fleet (SIGTERM),
    // restart each gateway on its state directory without devices so it uploads what was left
    // in its queue, stop it again, and compare its queue's append count with the server.
    for g in &gateways {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(g.pid() as libc::pid_t, libc::SIGTERM) };
    }
    for g in &mut gateways {
        assert_eq!(
            g.terminate(Duration::from_secs(60)),
            Some(0),
            "{} on SIGTERM",
            g.id
        );
    }
    let mut drainers: Vec<Gateway> = gateways
        .iter()
        .map(|g| {
            let mut spec = GatewaySpec::new(&g.id, String::new(), 0);
            spec.scenario = None;
            spec.state_dir = Some(g.state_dir.clone());
            Gateway::spawn(&spec, &servers)
        })
        .collect();
    for d in &mut drainers {
        d.wait_ready(Duration::from_secs(120));
    }
    let drained = wait_for(Duration::from_secs(120), || {
        drainers
            .iter()
            .all(|d| {
                d.status()
                    .is_some_and(|s| s["queue"]["depth"].as_u64() == Some(0))
            })
            .then_some(())
    });
    assert!(
        drained.is_some(),
        "the restarted gateways did not drain their queues"
    );
    for d in &mut drainers {
        assert_eq!(
            d.terminate(Duration::from_secs(60)),
            Some(0),
            "{} on SIGTERM",
            d.id
        );
    }
    let counts = servers.counts();
    let mut stored_total = 0;
    let mut per_gateway = Vec::new();
    for g in &gateways {
        let stats = netfault_gateway::queue_stats(&g.state_dir);
        // Record ids start at 1: every record ever appended is below next_id.
        let appended = stats["next_id"].as_u64().expect("next_id") - 1;
        stored_total += appended;
        per_gateway.push((
            g.id.clone(),
            appended,
            counts.by_subject.get(&g.patient).copied().unwrap_or(0),
            stats["depth"].as_u64().unwrap_or(u64::MAX),
            stats["dead_letters"].as_u64().unwrap_or(u64::MAX),
            stats["quarantined"].as_u64().unwrap_or(u64::MAX),
        ));
    }
    eprintln!(
        "fleet: {} gateways, outage {:?}; requests/s steady {steady_rate:.2}, while down {down_rate:.2}, \
         after recovery peak {peak:.2} ({:.2}x steady) over {:?} windows: [{}]",
        fleet.gateways,
        fleet.outage,
        peak / steady_rate,
        fleet.window,
        after
            .iter()
            .map(|r| format!("{r:.1}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    eprintln!(
        "  gateways' CPU while down: {:.2}s total = {:.2}% of a core per gateway",
        cpu_down.as_secs_f64(),
        100.0 * cpu_down.as_secs_f64() / fleet.outage.as_secs_f64() / fleet.gateways as f64
    );
    eprintln!(
        "  readings queued {stored_total}, on the server {} (identifiers {}, duplicated {})",
        counts.observations, counts.identifiers, counts.duplicated
    );
    for (id, appended, on_server, depth, dead, quarantined) in &per_gateway {
        assert!(*appended > 0, "{id} queued nothing");
        assert_eq!(appended, on_server, "{id}: queued vs on the server");
        assert_eq!((*depth, *dead, *quarantined), (0, 0, 0), "{id}: queue left");
    }
    assert_eq!(counts.duplicated, 0, "{counts:?}");
    assert_eq!(counts.observations, counts.identifiers, "{counts:?}");
    assert_eq!(counts.observations, stored_total);
    assert!(steady_rate > 0.0);
    assert!(
        peak <= 2.0 * steady_rate,
        "thundering herd: {peak:.2} requests/s after recovery vs {steady_rate:.2} steady"
    );
}

#[test]
fn fleet_outage_short() {
    run(Fleet {
        gateways: 10,
        interval_seconds: 2,
        warm_up: Duration::from_secs(10),
        steady: Duration::from_secs(20),
        outage: Duration::from_secs(20),
        recovery: Duration::from_secs(30),
        // A multiple of the interval: the fleet's devices tick together (spawned together),
        // so a window of 2.5 ticks alternates 2 and 3 ticks — ±20 % that is no herd. Half the
        // backoff cap: with only 10 gateways, 6-s windows measured the clustering of ten
        // jittered probes more than a herd (1.83-2.27x in six runs on 2026-11-29, the same
        // with the queue changes of that day switched off; docs/RELIABILITY.md "Fleet").
        window: Duration::from_secs(10),
        // Long enough that the probes after recovery spread (the 2x bound is a property of
        // cap vs. backlog, see docs/RELIABILITY.md "Fleet"), short enough for a 20-s outage.
        backoff_base_ms: 1000,
        backoff_cap_seconds: 20,
    });
}

#[test]
#[ignore = "100 gateway processes, 5-minute outage: see the module doc for the command"]
fn fleet_outage_long() {
    run(Fleet {
        gateways: 100,
        interval_seconds: 10,
        warm_up: Duration::from_secs(60),
        steady: Duration::from_secs(60),
        outage: Duration::from_secs(300),
        // The shipped backoff (base 1 s, cap 300 s): probes after recovery spread over up
        // to 300 s, so the window covers all of them.
        recovery: Duration::from_secs(360),
        window: Duration::from_secs(10),
        backoff_base_ms: 1000,
        backoff_cap_seconds: 300,
    });
}
