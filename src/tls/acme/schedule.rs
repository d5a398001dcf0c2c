//! When to order: renewal at two thirds of a certificate's lifetime (or inside the CA's
//! renewal window), and retries on exponential backoff, capped, so a failing CA or name is
//! asked less and less often, never in a burst.

use std::time::{Duration, SystemTime};

/// The wait after the first failure; it doubles with each one after.
pub const RETRY_FIRST: Duration = Duration::from_secs(2);
/// The longest wait between two attempts for one name.
pub const RETRY_CAP: Duration = Duration::from_secs(3600);

/// The wait after `failures` failures in a row (at least one).
pub fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(20);
    RETRY_FIRST.saturating_mul(1 << doublings).min(RETRY_CAP)
}

/// When a certificate valid from `not_before` to `not_after` is renewed: two thirds into its
/// lifetime, as Let's Encrypt advises for its 90-day (and shorter) certificates.
pub fn renew_at(not_before: SystemTime, not_after: SystemTime) -> SystemTime {
    let life = not_after.duration_since(not_before).unwrap_or_default();
    not_before + life * 2 / 3
}

/// The next attempt after a failure: the backoff, but a renewal whose certificate still has
/// time left never waits past the point where less than a tenth of that time would remain.
pub fn retry_at(now: SystemTime, failures: u32, expires: Option<SystemTime>) -> SystemTime {
    let wait = backoff(failures);
    match expires.and_then(|e| e.duration_since(now).ok()) {
        Some(left) if !left.is_zero() => now + wait.min((left / 10).max(RETRY_FIRST)),
        _ => now + wait,
    }
}

/// The renewal time inside a CA's suggested window (ACME Renewal Information, RFC 9773
/// §4.2): a point spread over the window by `seed`, so many names do not renew at once; now if
/// the window has begun.
pub fn in_window(now: SystemTime, start: SystemTime, end: SystemTime, seed: u64) -> SystemTime {
    let span = end.duration_since(start).unwrap_or_default();
    let at = match span.as_secs() {
        0 => start,
        secs => start + Duration::from_secs(seed % secs),
    };
    at.max(now)
}

/// When to ask the CA for the renewal window again: its `Retry-After`, bounded so that a CA
/// that says nothing is asked every six hours and one that says "now" is not asked in a loop.
pub fn ari_again(now: SystemTime, retry_after: Duration) -> SystemTime {
    now + retry_after.clamp(Duration::from_secs(60), Duration::from_secs(6 * 3600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_then_stays_at_the_cap() {
        let waits: Vec<u64> = (1..=14).map(|f| backoff(f).as_secs()).collect();
        assert_eq!(
            waits,
            [
                2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 3600, 3600, 3600
            ]
        );
        assert_eq!(backoff(u32::MAX), RETRY_CAP);
    }

    #[test]
    fn renewal_is_due_at_two_thirds_of_the_lifetime() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let ninety_days = Duration::from_secs(90 * 86_400);
        assert_eq!(
            renew_at(t0, t0 + ninety_days),
            t0 + Duration::from_secs(60 * 86_400)
        );
        // A certificate that is already past its end is due at once.
        assert!(renew_at(t0, t0) <= t0);
    }

    #[test]
    fn the_ari_window_is_followed_and_spread() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let (start, end) = (t + Duration::from_secs(100), t + Duration::from_secs(200));
        assert_eq!(in_window(t, start, end, 30), t + Duration::from_secs(130));
        assert_eq!(in_window(t, start, end, 130), t + Duration::from_secs(130));
        // A window that has begun (a revoked certificate's, in the past): renew now.
        let past = (t - Duration::from_secs(50), t - Duration::from_secs(10));
        assert_eq!(in_window(t, past.0, past.1, 7), t);
        assert_eq!(ari_again(t, Duration::ZERO), t + Duration::from_secs(60));
        assert_eq!(
            ari_again(t, Duration::from_secs(86_400)),
            t + Duration::from_secs(21_600)
        );
    }

    #[test]
    fn a_failing_renewal_retries_well_before_expiry() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        // Ten failures ask for 1024 s, but only 600 s are left: retry within a tenth of it.
        let at = retry_at(now, 10, Some(now + Duration::from_secs(600)));
        assert_eq!(at, now + Duration::from_secs(60));
        // A first order (nothing to expire) just backs off.
        assert_eq!(retry_at(now, 3, None), now + Duration::from_secs(8));
    }
}
