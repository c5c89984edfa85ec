//! Five-field cron expressions (`minute hour day-of-month month day-of-week`, UTC), and the
//! duration parser of eddy-core re-exported (`"500ms"`, `"10s"`, `"5m"`, `"2h"`, `"1d"`).

pub use eddy_core::duration::parse_duration;

/// A five-field cron expression. Each field is `*`, a number, a range `a-b`, a step `*/n` or
/// `a-b/n`, or a comma-separated list of those. Day of week is 0–7 (0 and 7 are Sunday). As in
/// Vixie cron, when both day of month and day of week are restricted, a day matching either
/// one fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    days_restricted: bool,
    weekdays_restricted: bool,
    text: String,
}

impl std::fmt::Display for Cron {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

fn field(text: &str, name: &str, lo: u32, hi: u32) -> Result<u64, String> {
    let mut bits = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s
                    .parse()
                    .ok()
                    .filter(|&s| s > 0)
                    .ok_or_else(|| format!("{name}: bad step `{s}`"))?;
                (r, step)
            }
            None => (part, 1),
        };
        let num = |s: &str| -> Result<u32, String> {
            s.parse::<u32>()
                .ok()
                .filter(|v| (lo..=hi).contains(v))
                .ok_or_else(|| format!("{name}: `{s}` is not a number in {lo}..={hi}"))
        };
        let (a, b) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            (num(a)?, num(b)?)
        } else {
            let a = num(range)?;
            (a, if step > 1 { hi } else { a })
        };
        if a > b {
            return Err(format!("{name}: range `{range}` runs backwards"));
        }
        let mut v = a;
        while v <= b {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok(bits)
}

impl Cron {
    /// Parses `minute hour day-of-month month day-of-week`.
    pub fn parse(text: &str) -> Result<Cron, String> {
        let parts: Vec<&str> = text.split_whitespace().collect();
        if parts.len() != 5 {
            return Err(format!(
                "`{text}` has {} fields; cron needs 5 (minute hour day-of-month month day-of-week)",
                parts.len()
            ));
        }
        let mut weekdays = field(parts[4], "day-of-week", 0, 7)?;
        if weekdays & (1 << 7) != 0 {
            weekdays |= 1;
        }
        Ok(Cron {
            minutes: field(parts[0], "minute", 0, 59)?,
            hours: field(parts[1], "hour", 0, 23)?,
            days: field(parts[2], "day-of-month", 1, 31)?,
            months: field(parts[3], "month", 1, 12)?,
            weekdays,
            days_restricted: parts[2] != "*",
            weekdays_restricted: parts[4] != "*",
            text: text.to_string(),
        })
    }

    /// The first matching minute strictly after `after_s` (seconds since the Unix epoch, UTC),
    /// in seconds since the epoch; `None` if none within eight years (e.g. `0 0 31 2 *`).
    pub fn next_after(&self, after_s: u64) -> Option<u64> {
        let mut minute = after_s / 60 + 1;
        let limit = minute + 8 * 366 * 24 * 60;
        while minute < limit {
            let day = minute / 1440;
            let (_, month, dom) = civil_from_days(day as i64);
            let weekday = (day + 4) % 7; // 1970-01-01 was a Thursday
            let day_ok = match (self.days_restricted, self.weekdays_restricted) {
                (true, true) => bit(self.days, dom) || bit(self.weekdays, weekday as u32),
                _ => bit(self.days, dom) && bit(self.weekdays, weekday as u32),
            };
            if !bit(self.months, month) || !day_ok {
                minute = (day + 1) * 1440;
                continue;
            }
            let (h, m) = ((minute % 1440) / 60, minute % 60);
            if !bit(self.hours, h as u32) {
                minute = day * 1440 + (h + 1) * 60;
                continue;
            }
            if bit(self.minutes, m as u32) {
                return Some(minute * 60);
            }
            minute += 1;
        }
        None
    }
}

fn bit(set: u64, v: u32) -> bool {
    set & (1 << v) != 0
}

/// (year, month 1–12, day 1–31) of a day number since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }

    #[test]
    fn cron_next_times() {
        // 2024-01-01T00:00:00Z, a Monday
        let t0 = 19_723 * 86_400;
        let hourly = Cron::parse("0 * * * *").unwrap();
        assert_eq!(hourly.next_after(t0), Some(t0 + 3600));
        let every15 = Cron::parse("*/15 * * * *").unwrap();
        assert_eq!(every15.next_after(t0 + 1), Some(t0 + 900));
        let friday_noon = Cron::parse("30 12 * * 5").unwrap();
        assert_eq!(
            friday_noon.next_after(t0),
            Some(t0 + 4 * 86_400 + 12 * 3600 + 1800)
        );
        let leap = Cron::parse("0 0 29 2 *").unwrap();
        assert_eq!(leap.next_after(t0), Some(t0 + 59 * 86_400));
        let sunday7 = Cron::parse("0 0 * * 7").unwrap();
        assert_eq!(sunday7.next_after(t0), Some(t0 + 6 * 86_400));
        assert_eq!(Cron::parse("0 0 31 2 *").unwrap().next_after(t0), None);
    }

    #[test]
    fn cron_refuses_bad_fields() {
        for bad in [
            "* * * *",
            "60 * * * *",
            "* 24 * * *",
            "*/0 * * * *",
            "5-1 * * * *",
            "x * * * *",
        ] {
            assert!(Cron::parse(bad).is_err(), "{bad}");
        }
    }
}
