//! `%.6g`-style number formatting: six significant digits, no trailing zeros, stable across
//! platforms. Values written this way parse back to exactly [`round_g6`] of the original.

use std::fmt::Write;

/// Appends `x` with six significant digits to `out` (like C's `%.6g`).
pub fn write_g6(out: &mut String, x: f64) {
    if x == 0.0 || !x.is_finite() {
        if x.is_nan() {
            out.push_str("NaN");
        } else if x.is_infinite() {
            out.push_str(if x > 0.0 { "inf" } else { "-inf" });
        } else {
            out.push('0');
        }
        return;
    }
    // Round to 6 significant digits first, then decide between fixed and exponent notation
    // on the rounded exponent, as %g does.
    let mut sci = String::with_capacity(16);
    let _ = write!(sci, "{:.5e}", x);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..6).contains(&exp) {
        let decimals = (5 - exp).max(0) as usize;
        let start = out.len();
        let _ = write!(out, "{:.*}", decimals, x);
        if out[start..].contains('.') {
            while out.ends_with('0') {
                out.pop();
            }
            if out.ends_with('.') {
                out.pop();
            }
        }
    } else {
        let m = mantissa.trim_end_matches('0').trim_end_matches('.');
        let _ = write!(
            out,
            "{m}e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.abs()
        );
    }
}

/// `x` rounded the way [`write_g6`] writes it (what a reader of the text gets back).
pub fn round_g6(x: f64) -> f64 {
    let mut s = String::with_capacity(24);
    write_g6(&mut s, x);
    s.parse().unwrap_or(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g6(x: f64) -> String {
        let mut s = String::new();
        write_g6(&mut s, x);
        s
    }

    #[test]
    fn matches_c_percent_g() {
        assert_eq!(g6(0.0), "0");
        assert_eq!(g6(3.0), "3");
        assert_eq!(g6(1.234567), "1.23457");
        assert_eq!(g6(-0.5), "-0.5");
        assert_eq!(g6(123456.0), "123456");
        assert_eq!(g6(1234567.0), "1.23457e+06");
        assert_eq!(g6(0.0001234567), "0.000123457");
        assert_eq!(g6(0.00001234567), "1.23457e-05");
        assert_eq!(g6(999999.5), "1e+06");
        assert_eq!(round_g6(2.0 / 3.0), 0.666667);
    }
}
