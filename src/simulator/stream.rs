//! Seeded value streams: a bounded random walk around a trend, one per measured quantity.
//!
//! Everything random in a run comes from [`Prng`]s derived from the scenario seed, so the same
//! scenario and seed give the same values, timings and garbage bytes on every target.

use serde::Deserialize;

use crate::reading::Decimal;

/// SplitMix64: small, fast, and good enough for test data (not for anything secret).
#[derive(Debug, Clone)]
pub struct Prng(u64);

impl Prng {
    /// A generator for `stream` of the run seeded `seed` (independent streams per purpose).
    pub fn new(seed: u64, stream: u64) -> Self {
        let mut p = Prng(seed ^ stream.wrapping_mul(0xD6E8_FEB8_6659_FD93));
        p.next_u64();
        p
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Roughly normal with mean 0 and deviation 1 (sum of four uniforms).
    pub fn normal(&mut self) -> f64 {
        let sum: f64 = (0..4).map(|_| self.unit()).sum();
        (sum - 2.0) * (3.0f64).sqrt()
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| (self.next_u64() >> 56) as u8).collect()
    }
}

/// What a stream measures. Names are the scenario keys (`[devices.streams.<name>]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Quantity {
    HeartRate,
    Systolic,
    Diastolic,
    Pulse,
    Temperature,
    Spo2,
    Weight,
    Glucose,
}

impl Quantity {
    pub const ALL: [Quantity; 8] = [
        Quantity::HeartRate,
        Quantity::Systolic,
        Quantity::Diastolic,
        Quantity::Pulse,
        Quantity::Temperature,
        Quantity::Spo2,
        Quantity::Weight,
        Quantity::Glucose,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Quantity::HeartRate => "heart_rate",
            Quantity::Systolic => "systolic",
            Quantity::Diastolic => "diastolic",
            Quantity::Pulse => "pulse",
            Quantity::Temperature => "temperature",
            Quantity::Spo2 => "spo2",
            Quantity::Weight => "weight",
            Quantity::Glucose => "glucose",
        }
    }

    pub fn from_name(name: &str) -> Option<Quantity> {
        Quantity::ALL.into_iter().find(|q| q.name() == name)
    }

    /// A realistic resting adult default (units: /min, mmHg, °C, %, kg, mg/dL).
    pub fn default_stream(self) -> StreamSpec {
        let s = |min, max, start, step, decimals| StreamSpec {
            min,
            max,
            start,
            step,
            trend_per_hour: 0.0,
            decimals,
        };
        match self {
            Quantity::HeartRate => s(45.0, 130.0, 70.0, 2.0, 0),
            Quantity::Systolic => s(95.0, 170.0, 124.0, 4.0, 0),
            Quantity::Diastolic => s(55.0, 105.0, 80.0, 3.0, 0),
            Quantity::Pulse => s(45.0, 120.0, 68.0, 2.0, 0),
            Quantity::Temperature => s(35.5, 39.5, 36.8, 0.1, 1),
            Quantity::Spo2 => s(88.0, 100.0, 97.0, 0.7, 0),
            Quantity::Weight => s(40.0, 160.0, 78.0, 0.15, 1),
            Quantity::Glucose => s(55.0, 300.0, 110.0, 6.0, 0),
        }
    }
}

/// How one quantity evolves: a random walk of `step` deviation per sample, drifting
/// `trend_per_hour` per hour of scenario time, kept within `min..=max`, rounded to `decimals`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamSpec {
    pub min: f64,
    pub max: f64,
    pub start: f64,
    #[serde(default)]
    pub step: f64,
    #[serde(default)]
    pub trend_per_hour: f64,
    #[serde(default)]
    pub decimals: u8,
}

/// A running stream.
#[derive(Debug, Clone)]
pub struct ValueStream {
    spec: StreamSpec,
    walk: f64,
    rng: Prng,
}

impl ValueStream {
    pub fn new(spec: StreamSpec, rng: Prng) -> Self {
        Self {
            walk: 0.0,
            spec,
            rng,
        }
    }

    /// The value at `elapsed_seconds` of scenario time (advances the walk by one step).
    pub fn sample(&mut self, elapsed_seconds: f64) -> Decimal {
        let s = &self.spec;
        self.walk += self.rng.normal() * s.step;
        let trend = s.start + s.trend_per_hour * elapsed_seconds / 3600.0;
        let mut value = trend + self.walk;
        if value > s.max || value < s.min {
            // Reflect the walk so the stream keeps moving instead of sticking to a bound.
            value = value.clamp(s.min, s.max);
            self.walk = value - trend;
        }
        let scale = 10f64.powi(i32::from(s.decimals));
        Decimal::new((value * scale).round() as i64, -(s.decimals as i8))
    }
}

/// A decimal as a float (for ranges and unit conversions; never for what is sent).
pub fn to_f64(d: Decimal) -> f64 {
    d.mantissa as f64 * 10f64.powi(i32::from(d.exponent))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_values_and_values_stay_in_range() {
        let spec = StreamSpec {
            min: 60.0,
            max: 70.0,
            start: 65.0,
            step: 0.5,
            trend_per_hour: 100.0,
            decimals: 1,
        };
        let run = |seed| {
            let mut s = ValueStream::new(spec.clone(), Prng::new(seed, 3));
            (0..500)
                .map(|i| s.sample(f64::from(i) * 60.0))
                .collect::<Vec<_>>()
        };
        let a = run(9);
        assert_eq!(a, run(9));
        assert_ne!(a, run(10));
        for d in &a {
            let v = to_f64(*d);
            assert!((60.0..=70.0).contains(&v), "{v} out of range");
            assert_eq!(d.exponent, -1);
        }
        // The upward trend (1.7 per sample against a 0.5 step) pins the stream to the top.
        assert!(to_f64(a[499]) > 68.0);
    }

    #[test]
    fn every_default_stream_starts_inside_its_range() {
        for q in Quantity::ALL {
            let s = q.default_stream();
            assert!(s.min <= s.start && s.start <= s.max, "{}", q.name());
            assert_eq!(Quantity::from_name(q.name()), Some(q));
        }
    }
}
