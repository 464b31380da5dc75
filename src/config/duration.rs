//! Durations as written in the file: `500ms`, `30s`, `5m`, `12h`, `7d`, and
//! sums such as `1h30m` or `1.5h` (Go's `time.ParseDuration` style, which
//! oauth2-proxy users already know, plus `d`).

use std::time::Duration;

/// Why a duration string was refused. Messages never echo the input: the
/// problem's key already says where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Empty text.
    #[error("must not be empty (e.g. 30s, 5m, 12h, 7d)")]
    Empty,
    /// A leading `-`.
    #[error("must not be negative")]
    Negative,
    /// Not `<number><unit>…`.
    #[error("expected a number followed by a unit ms, s, m, h or d (e.g. 30s, 1h30m)")]
    Syntax,
    /// A unit other than ms, s, m, h, d.
    #[error("unknown unit `{0}` (use ms, s, m, h or d)")]
    UnknownUnit(String),
    /// More than `u64::MAX` seconds.
    #[error("is too large")]
    Overflow,
}

/// Parses a duration string. A bare `0` is accepted (it needs no unit).
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    if text.starts_with('-') {
        return Err(DurationError::Negative);
    }
    let text = text.strip_prefix('+').unwrap_or(text);
    if text == "0" {
        return Ok(Duration::ZERO);
    }

    let mut total_nanos: u128 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_len);
        if number.is_empty() {
            return Err(DurationError::Syntax);
        }
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let nanos_per_unit: u128 = match unit {
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3600 * 1_000_000_000,
            "d" => 86400 * 1_000_000_000,
            "" => return Err(DurationError::Syntax),
            other => return Err(DurationError::UnknownUnit(other.to_string())),
        };
        total_nanos = total_nanos
            .checked_add(component_nanos(number, nanos_per_unit)?)
            .ok_or(DurationError::Overflow)?;
        rest = next;
    }
    let secs = u64::try_from(total_nanos / 1_000_000_000).map_err(|_| DurationError::Overflow)?;
    // The remainder is below 10^9, so it always fits.
    let subsec = u32::try_from(total_nanos % 1_000_000_000).map_err(|_| DurationError::Overflow)?;
    Ok(Duration::new(secs, subsec))
}

/// `number` (`12` or `1.5`) times the unit, in integer nanoseconds so that
/// `1d2h3m4s5ms` is exact; digits finer than a nanosecond are dropped.
fn component_nanos(number: &str, nanos_per_unit: u128) -> Result<u128, DurationError> {
    let (whole, fraction) = match number.split_once('.') {
        Some((w, f)) => (w, f),
        None => (number, ""),
    };
    if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
        return Err(DurationError::Syntax);
    }
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| DurationError::Overflow)?
    };
    let mut nanos = whole
        .checked_mul(nanos_per_unit)
        .ok_or(DurationError::Overflow)?;
    let mut scale = nanos_per_unit;
    for digit in fraction.bytes().take(20) {
        scale /= 10;
        nanos = nanos
            .checked_add(u128::from(digit - b'0') * scale)
            .ok_or(DurationError::Overflow)?;
    }
    Ok(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_units_parse() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("12h"), Ok(Duration::from_secs(12 * 3600)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86400)));
        assert_eq!(parse_duration("168h"), Ok(Duration::from_secs(168 * 3600)));
    }

    #[test]
    fn combinations_and_fractions_add_up() {
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(
            parse_duration("1d2h3m4s5ms"),
            Ok(Duration::from_millis(((86400 + 7200 + 180 + 4) * 1000) + 5))
        );
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
    }

    #[test]
    fn zero_forms_are_zero() {
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration(" 0s "), Ok(Duration::ZERO));
    }

    #[test]
    fn negative_is_refused() {
        assert_eq!(parse_duration("-5s"), Err(DurationError::Negative));
    }

    #[test]
    fn garbage_is_refused() {
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        assert_eq!(parse_duration("abc"), Err(DurationError::Syntax));
        assert_eq!(parse_duration("30"), Err(DurationError::Syntax));
        assert_eq!(parse_duration("h"), Err(DurationError::Syntax));
        assert_eq!(parse_duration("1..5s"), Err(DurationError::Syntax));
        assert_eq!(
            parse_duration("5 s"),
            Err(DurationError::UnknownUnit(" s".into()))
        );
        assert_eq!(
            parse_duration("3w"),
            Err(DurationError::UnknownUnit("w".into()))
        );
    }

    #[test]
    fn absurd_sizes_are_refused_not_panicking() {
        let huge = format!("{}d", "9".repeat(400));
        assert!(parse_duration(&huge).is_err());
    }
}
