//! The engine: turns a scenario into a timeline of events (all computed up front from the
//! seed) and plays it against a [`Target`], sleeping `1/speed` of the scenario time between
//! events (`speed = 0`: no sleeping at all, as fast as the target takes it).

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use time::OffsetDateTime;

use super::SimError;
use super::scenario::{DeviceSpec, FaultKind, Scenario, Special, Transport};
use super::stream::{Prng, Quantity, ValueStream};
use crate::reading::{Decimal, DeviceTime};

/// One measured value as the device would send it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleValue {
    Number(Decimal),
    Special(Special),
}

/// One measurement of one device.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// What the device clock says.
    pub time: DeviceTime,
    /// The device clock is not set (it restarted at 2000-01-01).
    pub clock_unset: bool,
    pub values: BTreeMap<Quantity, SampleValue>,
    /// Per-device running number from 1 (glucose/CGM record sequence, time offsets).
    pub sequence: u32,
    /// Minutes since the device's session started (CGM time offset).
    pub session_minutes: u32,
    /// Serial lines go out byte by byte (a `slow` fault is active).
    pub slow: bool,
}

impl Sample {
    /// The value of `q` as a number, if it has one.
    pub fn number(&self, q: Quantity) -> Option<Decimal> {
        match self.values.get(&q) {
            Some(SampleValue::Number(d)) => Some(*d),
            _ => None,
        }
    }
}

/// What happens to a device at one moment.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Measure(Sample),
    /// Records measured while nobody listened: they land in the device's store (RACP).
    Store(Vec<Sample>),
    Garbage(Vec<u8>),
    Disconnect,
    Reconnect,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Seconds of scenario time from the start.
    pub at: f64,
    pub device: usize,
    pub action: Action,
}

/// A place devices live: hal's simulator, BlueZ, a pty, a broker.
pub trait Target {
    /// Prepares every device the target plays (called once, before the first event).
    fn start(&mut self, scenario: &Scenario) -> impl Future<Output = Result<(), SimError>>;
    /// Whether this target plays devices of this transport (others are skipped).
    fn plays(&self, transport: &Transport) -> bool;
    fn apply(
        &mut self,
        device: &DeviceSpec,
        index: usize,
        action: &Action,
    ) -> impl Future<Output = Result<(), SimError>>;
    /// Work to do between events (deliver values a central subscribed to meanwhile); polled
    /// while the engine waits for the next event.
    fn idle(&mut self) -> impl Future<Output = ()> {
        std::future::pending()
    }
    /// Called after the last event (flush, wait for acknowledgements).
    fn finish(&mut self) -> impl Future<Output = Result<(), SimError>>;
}

/// What was played, per device (name → counts).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlayReport {
    pub devices: BTreeMap<String, DeviceCounts>,
    pub skipped_devices: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceCounts {
    pub measurements: u64,
    pub stored_records: u64,
    pub garbage: u64,
    pub disconnects: u64,
}

impl PlayReport {
    pub fn total_measurements(&self) -> u64 {
        self.devices.values().map(|c| c.measurements).sum()
    }
}

/// A CGM session started this long before the scenario (so back-dated records have
/// positive time offsets).
pub const CGM_SESSION_LEAD_SECONDS: f64 = 86_400.0;

/// Device time 2000-01-01 00:00:00: where an unset device clock starts.
fn unset_epoch() -> OffsetDateTime {
    time::macros::datetime!(2000-01-01 00:00:00 UTC)
}

fn device_time(at: OffsetDateTime) -> DeviceTime {
    DeviceTime {
        year: u16::try_from(at.year()).unwrap_or(2000),
        month: u8::from(at.month()),
        day: at.day(),
        hours: at.hour(),
        minutes: at.minute(),
        seconds: at.second(),
    }
}

fn offset(seconds: f64) -> time::Duration {
    time::Duration::seconds_f64(seconds)
}

/// Every event of the run, in time order. `start` is when device clocks start.
pub fn timeline(scenario: &Scenario, seed: u64, start: OffsetDateTime) -> Vec<Event> {
    let mut events = Vec::new();
    for (index, device) in scenario.devices.iter().enumerate() {
        device_events(scenario, device, index, seed, start, &mut events);
    }
    // Stable: simultaneous events keep device order, and within a device their order.
    events.sort_by(|a, b| a.at.total_cmp(&b.at));
    events
}

struct DeviceRun<'a> {
    spec: &'a DeviceSpec,
    streams: BTreeMap<Quantity, ValueStream>,
    start: OffsetDateTime,
    sequence: u32,
    specials: Vec<(Special, u32)>,
}

impl DeviceRun<'_> {
    fn window(&self, at: f64, kind: fn(&FaultKind) -> Option<f64>) -> Option<&FaultKind> {
        self.spec.faults.iter().find_map(|f| {
            let d = kind(&f.kind)?;
            (f.at <= at && at < f.at + d).then_some(&f.kind)
        })
    }

    fn sample(&mut self, at: f64) -> Sample {
        self.sequence += 1;
        let mut values: BTreeMap<Quantity, SampleValue> = self
            .streams
            .iter_mut()
            .map(|(q, s)| (*q, SampleValue::Number(s.sample(at))))
            .collect();
        // A diastolic pressure above the systolic one is not a realistic reading.
        if let (Some(SampleValue::Number(sys)), Some(SampleValue::Number(dia))) = (
            values.get(&Quantity::Systolic),
            values.get(&Quantity::Diastolic),
        ) && super::stream::to_f64(*dia) > super::stream::to_f64(*sys) - 20.0
        {
            let capped = Decimal::new(
                sys.mantissa - 20 * 10i64.pow(u32::from(sys.exponent.unsigned_abs())),
                sys.exponent,
            );
            values.insert(Quantity::Diastolic, SampleValue::Number(capped));
        }
        if let Some((special, left)) = self.specials.last_mut() {
            if let Some(first) = self.spec.transport.quantities().first() {
                values.insert(*first, SampleValue::Special(*special));
            }
            *left -= 1;
            if *left == 0 {
                self.specials.pop();
            }
        }
        let unset = self
            .spec
            .faults
            .iter()
            .find(|f| matches!(f.kind, FaultKind::ClockUnset { duration } if f.at <= at && at < f.at + duration));
        let (time, clock_unset) = match unset {
            Some(f) => (device_time(unset_epoch() + offset(at - f.at)), true),
            None => (device_time(self.start + offset(at)), false),
        };
        Sample {
            time,
            clock_unset,
            values,
            sequence: self.sequence,
            session_minutes: ((at + CGM_SESSION_LEAD_SECONDS) / 60.0).max(0.0) as u32,
            slow: self
                .window(at, |k| match k {
                    FaultKind::Slow { duration, .. } => Some(*duration),
                    _ => None,
                })
                .is_some(),
        }
    }
}

fn device_events(
    scenario: &Scenario,
    spec: &DeviceSpec,
    index: usize,
    seed: u64,
    start: OffsetDateTime,
    events: &mut Vec<Event>,
) {
    let stream_seed = |q: Quantity| (index as u64) << 8 | q as u64;
    let mut run = DeviceRun {
        spec,
        streams: spec
            .streams
            .iter()
            .map(|(q, s)| {
                (
                    *q,
                    ValueStream::new(s.clone(), Prng::new(seed, stream_seed(*q))),
                )
            })
            .collect(),
        start,
        sequence: 0,
        specials: Vec::new(),
    };
    let mut timing = Prng::new(seed, 0xFFFF_0000 | index as u64);
    let mut faults: Vec<_> = spec.faults.iter().collect();
    faults.sort_by(|a, b| a.at.total_cmp(&b.at));
    let mut next_fault = faults.into_iter().peekable();
    let push = |events: &mut Vec<Event>, at: f64, action: Action| {
        events.push(Event {
            at,
            device: index,
            action,
        });
    };
    // A serial device whose cable is out sends nothing (BLE devices keep their values and MQTT
    // devices store and forward, so those still measure).
    let unplugged = |at: f64| {
        matches!(spec.transport, Transport::Serial { .. })
            && spec.faults.iter().any(|f| {
                matches!(f.kind, FaultKind::Disconnect { duration } if f.at <= at && at < f.at + duration)
            })
    };
    let mut t = spec.start_offset;
    while t < scenario.duration {
        while let Some(f) = next_fault.next_if(|f| f.at <= t) {
            if unplugged(f.at)
                && matches!(f.kind, FaultKind::Garbage { .. } | FaultKind::Burst { .. })
            {
                continue;
            }
            match &f.kind {
                FaultKind::Disconnect { duration } => {
                    push(events, f.at, Action::Disconnect);
                    push(events, f.at + duration, Action::Reconnect);
                }
                FaultKind::Garbage { bytes } => {
                    push(events, f.at, Action::Garbage(timing.bytes(*bytes)));
                }
                FaultKind::SpecialValue { value, count } => run.specials.push((*value, *count)),
                FaultKind::StoredRecords { count } => {
                    // Back-dated one interval apart, ending now.
                    let samples = (0..*count)
                        .map(|k| run.sample(f.at - spec.interval * f64::from(count - k)))
                        .collect();
                    push(events, f.at, Action::Store(samples));
                }
                FaultKind::Burst { count } => {
                    for _ in 0..*count {
                        let s = run.sample(f.at);
                        push(events, f.at, Action::Measure(s));
                    }
                }
                FaultKind::ClockUnset { .. } | FaultKind::Slow { .. } => {}
            }
        }
        if !unplugged(t) {
            let s = run.sample(t);
            push(events, t, Action::Measure(s));
        }
        let factor = match run.window(t, |k| match k {
            FaultKind::Slow { duration, .. } => Some(*duration),
            _ => None,
        }) {
            Some(FaultKind::Slow { factor, .. }) => *factor,
            _ => 1.0,
        };
        let jitter = 1.0 + spec.jitter * (2.0 * timing.unit() - 1.0);
        t += spec.interval * factor * jitter;
    }
    // Faults after the last measurement still happen (a disconnect at the very end).
    for f in next_fault {
        if let FaultKind::Disconnect { duration } = f.kind {
            push(events, f.at, Action::Disconnect);
            push(
                events,
                (f.at + duration).min(scenario.duration),
                Action::Reconnect,
            );
        }
    }
}

/// How to play: `seed` overrides the scenario's, `speed` compresses time (0 = no waiting).
#[derive(Debug, Clone, Copy)]
pub struct PlayOptions {
    pub seed: Option<u64>,
    pub speed: f64,
    /// Device clocks start here (default: the scenario's `start`, else now).
    pub start: Option<OffsetDateTime>,
    /// Play the timeline again and again until stopped (the demo).
    pub repeat: bool,
}

impl Default for PlayOptions {
    fn default() -> Self {
        Self {
            seed: None,
            speed: 1.0,
            start: None,
            repeat: false,
        }
    }
}

/// Plays `scenario` against `target` until the timeline ends (or, with `repeat`, until
/// `stop` resolves; `stop` also ends a single run early).
pub async fn play<T: Target>(
    scenario: &Scenario,
    target: &mut T,
    options: PlayOptions,
    stop: impl Future<Output = ()>,
) -> Result<PlayReport, SimError> {
    let mut report = PlayReport::default();
    for d in &scenario.devices {
        if target.plays(&d.transport) {
            report
                .devices
                .insert(d.name.clone(), DeviceCounts::default());
        } else {
            report.skipped_devices.push(d.name.clone());
        }
    }
    target.start(scenario).await?;
    let seed = options.seed.unwrap_or(scenario.seed);
    let mut start = options
        .start
        .or(scenario.start)
        .unwrap_or_else(OffsetDateTime::now_utc);
    tokio::pin!(stop);
    let mut round = 0u64;
    'rounds: loop {
        let events = timeline(scenario, seed.wrapping_add(round), start);
        let began = tokio::time::Instant::now();
        for event in &events {
            let device = &scenario.devices[event.device];
            let Some(counts) = report.devices.get_mut(&device.name) else {
                continue;
            };
            if options.speed > 0.0 {
                let due = began + Duration::from_secs_f64(event.at / options.speed);
                loop {
                    tokio::select! {
                        () = tokio::time::sleep_until(due) => break,
                        () = target.idle() => {}
                        () = &mut stop => break 'rounds,
                    }
                }
            } else {
                // Let other tasks (the gateway under test) run between events.
                tokio::task::yield_now().await;
            }
            target.apply(device, event.device, &event.action).await?;
            match &event.action {
                Action::Measure(_) => counts.measurements += 1,
                Action::Store(s) => counts.stored_records += s.len() as u64,
                Action::Garbage(_) => counts.garbage += 1,
                Action::Disconnect => counts.disconnects += 1,
                Action::Reconnect => {}
            }
        }
        if !options.repeat {
            break;
        }
        if options.speed > 0.0 {
            let end = began + Duration::from_secs_f64(scenario.duration / options.speed);
            tokio::select! {
                () = tokio::time::sleep_until(end) => {}
                () = &mut stop => break 'rounds,
            }
        }
        round += 1;
        start += offset(scenario.duration);
    }
    target.finish().await?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::scenario::load_str;

    fn scenario() -> Scenario {
        load_str(
            r#"
            [scenario]
            name = "t"
            duration_seconds = 100
            start = "2026-11-23T07:00:00Z"
            [[devices]]
            name = "ox"
            transport = "ble"
            profile = "pulse_oximeter"
            interval_seconds = 10
            [[devices.faults]]
            at_seconds = 30
            kind = "clock_unset"
            duration_seconds = 15
            [[devices.faults]]
            at_seconds = 50
            kind = "burst"
            count = 3
            [[devices.faults]]
            at_seconds = 60
            kind = "special_value"
            count = 2
            [[devices.faults]]
            at_seconds = 80
            kind = "disconnect"
            duration_seconds = 5
            "#,
        )
        .expect("valid")
    }

    fn measures(events: &[Event]) -> Vec<&Sample> {
        events
            .iter()
            .filter_map(|e| match &e.action {
                Action::Measure(s) => Some(s),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn the_timeline_places_measurements_and_faults() {
        let s = scenario();
        let start = s.start.expect("start");
        let events = timeline(&s, 1, start);
        assert_eq!(events, timeline(&s, 1, start), "deterministic");
        let samples = measures(&events);
        // 10 regular (t = 0, 10, …, 90) + 3 burst.
        assert_eq!(samples.len(), 13);
        assert_eq!(samples[0].time.hours, 7);
        assert!(!samples[0].clock_unset);
        let unset: Vec<_> = samples.iter().filter(|s| s.clock_unset).collect();
        assert_eq!(unset.len(), 2, "t = 30 and 40 are in the window");
        assert_eq!(unset[0].time.year, 2000);
        let special: Vec<_> = samples
            .iter()
            .filter(|s| matches!(s.values.get(&Quantity::Spo2), Some(SampleValue::Special(_))))
            .collect();
        assert_eq!(special.len(), 2);
        let at = |a: &Action| events.iter().find(|e| &e.action == a).map(|e| e.at);
        assert_eq!(at(&Action::Disconnect), Some(80.0));
        assert_eq!(at(&Action::Reconnect), Some(85.0));
        assert!(events.windows(2).all(|w| w[0].at <= w[1].at));
    }

    #[test]
    fn a_different_seed_gives_different_values() {
        let s = scenario();
        let start = s.start.expect("start");
        let a = measures(&timeline(&s, 1, start))
            .iter()
            .map(|s| s.values.clone())
            .collect::<Vec<_>>();
        let b = measures(&timeline(&s, 2, start))
            .iter()
            .map(|s| s.values.clone())
            .collect::<Vec<_>>();
        assert_ne!(a, b);
    }
}
