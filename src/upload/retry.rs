//! Retry policy, kept apart from the I/O: what a response means, and how long to wait.
//!
//! - 2xx → done; 401 → mint a new token once and resend; 408, 429, 5xx, timeouts, resets →
//!   transient; any other 4xx → permanent (dead-letter with the OperationOutcome).
//! - Waits use exponential backoff with **full jitter** (a uniform draw in
//!   `[0, min(cap, base·2^attempt)]`, AWS Architecture Blog "Exponential Backoff and Jitter"), so
//!   many hubs coming back after an outage do not synchronise. A server's `Retry-After`
//!   (seconds or HTTP-date) is a floor on the wait, itself capped so a bogus value cannot park
//!   the uploader for days.

use std::time::{Duration, SystemTime};

use rand::Rng;

/// What an HTTP status (of the whole request or one Bundle entry) means for the records in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    Success,
    /// The bearer token was refused: refresh it once, then resend.
    Unauthorized,
    /// Worth retrying later: 408, 429, 5xx.
    Transient,
    /// The server will never accept this content: dead-letter it.
    Permanent,
}

pub fn classify_status(status: u16) -> StatusClass {
    match status {
        200..=299 => StatusClass::Success,
        401 => StatusClass::Unauthorized,
        408 | 429 | 500..=599 => StatusClass::Transient,
        // 1xx/3xx should never reach us (redirects are not followed: a token must not be
        // forwarded to another host); treat them as transient server oddities.
        100..=199 | 300..=399 => StatusClass::Transient,
        _ => StatusClass::Permanent,
    }
}

/// The status code of a Bundle entry's `response.status` (e.g. `"201 Created"`).
pub fn entry_status(status_text: &str) -> Option<u16> {
    status_text.split_whitespace().next()?.parse().ok()
}

/// Parses `Retry-After`: delta-seconds or an HTTP-date (relative to `now`).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Exponential backoff with full jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
    /// Largest `Retry-After` honoured.
    pub max_retry_after: Duration,
}

impl Backoff {
    /// Upper bound of the jitter window for the `attempt`-th consecutive failure (0-based).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The wait before the next try after `attempt` consecutive failures.
    pub fn delay(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        rng: &mut impl Rng,
    ) -> Duration {
        let ceiling = self.ceiling(attempt).as_millis() as u64;
        let jittered = Duration::from_millis(rng.random_range(0..=ceiling));
        match retry_after {
            Some(floor) => jittered.max(floor.min(self.max_retry_after)),
            None => jittered,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn backoff() -> Backoff {
        Backoff {
            base: Duration::from_millis(500),
            cap: Duration::from_secs(60),
            max_retry_after: Duration::from_secs(600),
        }
    }

    #[test]
    fn statuses_are_classified_like_the_issue_says() {
        assert_eq!(classify_status(201), StatusClass::Success);
        assert_eq!(classify_status(401), StatusClass::Unauthorized);
        for s in [408, 429, 500, 502, 503, 504] {
            assert_eq!(classify_status(s), StatusClass::Transient, "{s}");
        }
        for s in [400, 403, 404, 409, 412, 422] {
            assert_eq!(classify_status(s), StatusClass::Permanent, "{s}");
        }
        assert_eq!(entry_status("201 Created"), Some(201));
        assert_eq!(entry_status("412"), Some(412));
        assert_eq!(entry_status("Created"), None);
    }

    #[test]
    fn retry_after_accepts_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        // 2015-10-21 07:28:00 GMT is `now`; 10 minutes later:
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:38:00 GMT", now),
            Some(Duration::from_secs(600))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn ceiling_doubles_then_caps_without_overflow() {
        let b = backoff();
        assert_eq!(b.ceiling(0), Duration::from_millis(500));
        assert_eq!(b.ceiling(3), Duration::from_secs(4));
        assert_eq!(b.ceiling(7), Duration::from_secs(60));
        assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn full_jitter_spreads_over_the_whole_window() {
        let b = backoff();
        let mut rng = StdRng::seed_from_u64(7);
        let draws: Vec<Duration> = (0..2000).map(|_| b.delay(4, None, &mut rng)).collect();
        let ceiling = b.ceiling(4);
        assert!(draws.iter().all(|d| *d <= ceiling));
        let low = draws.iter().filter(|d| **d < ceiling / 4).count();
        let high = draws.iter().filter(|d| **d > ceiling * 3 / 4).count();
        // Uniform: about a quarter in each outer quarter.
        assert!((400..600).contains(&low), "low={low}");
        assert!((400..600).contains(&high), "high={high}");
    }

    #[test]
    fn retry_after_is_a_capped_floor() {
        let b = backoff();
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..100 {
            let d = b.delay(0, Some(Duration::from_secs(30)), &mut rng);
            assert_eq!(d, Duration::from_secs(30));
        }
        let d = b.delay(0, Some(Duration::from_secs(86_400)), &mut rng);
        assert_eq!(d, Duration::from_secs(600));
    }
}
