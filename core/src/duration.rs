//! Durations as people write them in configs and on the command line: `500ms`, `10s`, `1.5m`,
//! `2h`, `1d` — a non-negative number and a unit. The one parser every crate uses (TOML
//! workflow specs, serving config, model-stream schedules, CLI flags), so `"10s"` means the
//! same everywhere.

use std::time::Duration;

/// Parses a duration: a non-negative number (integer or decimal) followed by a unit
/// (`ms`, `s`, `m` or `min`, `h`, `d`). A bare number is refused (`"has no unit"`); callers
/// that accept one (CLI flags meaning seconds) check for it first. The error message names
/// the text and what is wrong with it.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (examples: 500ms, 10s, 5m, 2h)"))?;
    let scale = match unit.trim() {
        "ms" => 1e-3,
        "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        "" => return Err(format!("`{text}` has no unit (use ms, s, m, h or d)")),
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{text}` (use ms, s, m, h or d)"
            ))
        }
    };
    let secs = value * scale;
    if !secs.is_finite() || secs > 1e12 {
        return Err(format!("`{text}` is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_refusals() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration(" 1.5m ").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("1d").unwrap(), Duration::from_secs(86_400));
        assert!(parse_duration("10").unwrap_err().contains("no unit"));
        assert!(parse_duration("ten seconds").is_err());
        assert!(parse_duration("5 parsecs").unwrap_err().contains("parsecs"));
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("1e400s").is_err());
    }
}
