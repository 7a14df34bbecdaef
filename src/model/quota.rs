//! A rate-limit quota: `count` attempts per `period`, GCRA-style.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::InvalidInput;

/// On average `count` attempts per `period`, with bursts of up to `count`
/// at once (the `FLASHSALE_RATE_LIMIT` format: `10/1m`, `5/s`, `100/30s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RateQuota {
    count: u32,
    period: Duration,
}

impl RateQuota {
    /// `count` attempts per `period`; both must be non-zero.
    pub fn new(count: u32, period: Duration) -> Result<Self, InvalidInput> {
        if count == 0 {
            return Err(InvalidInput::new("rate_limit", "count must be at least 1"));
        }
        if period < Duration::from_millis(1) {
            return Err(InvalidInput::new(
                "rate_limit",
                "period must be at least 1 ms",
            ));
        }
        if period / count < Duration::from_micros(1) {
            return Err(InvalidInput::new(
                "rate_limit",
                "more than one attempt per microsecond is not a limit",
            ));
        }
        Ok(Self { count, period })
    }

    /// `count` per second.
    pub fn per_second(count: u32) -> Result<Self, InvalidInput> {
        Self::new(count, Duration::from_secs(1))
    }

    /// The burst size (and the count per period).
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The period.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// The steady-state spacing between attempts: `period / count`.
    pub fn emission_interval(&self) -> Duration {
        self.period / self.count
    }
}

impl FromStr for RateQuota {
    type Err = InvalidInput;

    /// Parses `<count>/<period>`, where period is `<n><unit>` or just a
    /// unit, with unit `ms`, `s`, `m` or `h` (`10/1m`, `5/s`).
    fn from_str(s: &str) -> Result<Self, InvalidInput> {
        let bad = || {
            InvalidInput::new(
                "rate_limit",
                format!("{s:?} is not <count>/<period>, e.g. 10/1m, 5/s or 100/30s"),
            )
        };
        let (count, period) = s.trim().split_once('/').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        let period = period.trim();
        let split = period.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let (n, unit) = period.split_at(split);
        let n: u64 = if n.is_empty() {
            1
        } else {
            n.parse().map_err(|_| bad())?
        };
        let unit = match unit {
            "ms" => Duration::from_millis(1),
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            _ => return Err(bad()),
        };
        let period = unit
            .checked_mul(u32::try_from(n).map_err(|_| bad())?)
            .ok_or_else(bad)?;
        Self::new(count, period)
    }
}

impl fmt::Display for RateQuota {
    /// `<count>/<n><unit>` in the largest unit that divides the period, so
    /// that every quota prints as a string [`FromStr`] parses back to it
    /// (`n` must fit in a `u32`, and in milliseconds a long period would
    /// not).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.period.as_millis();
        let (n, unit) = [(3_600_000, "h"), (60_000, "m"), (1_000, "s")]
            .into_iter()
            .find(|(size, _)| ms.is_multiple_of(*size))
            .map_or((ms, "ms"), |(size, unit)| (ms / size, unit));
        write!(f, "{}/{n}{unit}", self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_what_it_parses() {
        // Found by fuzz/fuzz_targets/quota_parse.rs: printed in
        // milliseconds, this period no longer fitted the parser's u32.
        for (text, shown) in [
            ("1/0111178470s", "1/111178470s"),
            ("10/1m", "10/1m"),
            ("10/60s", "10/1m"),
            ("3/90s", "3/90s"),
            ("7/1500ms", "7/1500ms"),
            ("2/48h", "2/48h"),
        ] {
            let q: RateQuota = text.parse().unwrap();
            assert_eq!(q.to_string(), shown);
            let again: RateQuota = shown.parse().unwrap();
            assert_eq!((again.count(), again.period()), (q.count(), q.period()));
        }
    }

    #[test]
    fn parses_the_documented_forms() {
        let q: RateQuota = "10/1m".parse().unwrap();
        assert_eq!((q.count(), q.period()), (10, Duration::from_secs(60)));
        let q: RateQuota = "5/s".parse().unwrap();
        assert_eq!((q.count(), q.period()), (5, Duration::from_secs(1)));
        let q: RateQuota = " 100 / 250ms ".parse().unwrap();
        assert_eq!(q.emission_interval(), Duration::from_micros(2_500));
        assert_eq!(
            "2/1h".parse::<RateQuota>().unwrap().period(),
            Duration::from_secs(3600)
        );
    }

    #[test]
    fn rejects_malformed_and_degenerate_quotas() {
        for bad in [
            "", "10", "10/", "/1m", "0/1m", "10/0s", "-1/1m", "10/1d", "x/1m", "10/m1",
        ] {
            let err = bad.parse::<RateQuota>().unwrap_err();
            assert_eq!(err.field, "rate_limit", "{bad:?}");
        }
    }

    #[test]
    fn display_round_trips() {
        let q: RateQuota = "7/3s".parse().unwrap();
        assert_eq!(q.to_string().parse::<RateQuota>().unwrap(), q);
    }
}

/// The answer to [`RateLimiter::check`](crate::RateLimiter::check).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    /// Admitted; the cost was charged.
    Allowed,
    /// Not admitted; nothing was charged.
    Limited {
        /// When an attempt of the same cost will next be admitted.
        retry_after: Duration,
    },
}
