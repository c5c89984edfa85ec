//! Durations on the command line: `500ms`, `10s`, `5m`, `2h`, `1d` (a bare number is seconds).

use std::time::Duration;

/// Parses a duration such as `10s` or `500ms`; a bare number means seconds.
pub fn parse(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if !t.is_empty() && t.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return eddy_core::duration::parse_duration(&format!("{t}s"));
    }
    eddy_core::duration::parse_duration(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse("1.5m").unwrap(), Duration::from_secs(90));
        assert_eq!(parse("2h").unwrap(), Duration::from_secs(7200));
        assert!(parse("10 parsecs").is_err());
        assert!(parse("s").is_err());
    }
}
