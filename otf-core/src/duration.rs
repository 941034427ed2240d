//! Durations as people write and read them: `7200`, `90s`, `30m`, `2h`,
//! `1h30m`, `1.5s` (a bare number is seconds, as in every otf flag).

use std::time::Duration;

/// Why a duration did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a duration: write seconds (7200) or a number with a unit, such as 90s, 30m, 2h or 1h30m")]
pub struct InvalidDuration {
    pub input: String,
}

/// Parse a duration: parts of a number and a unit (`h`, `m`, `s`, `ms`),
/// or a bare number of seconds.
pub fn parse(input: &str) -> Result<Duration, InvalidDuration> {
    let bad = || InvalidDuration {
        input: input.to_string(),
    };
    let text = input.trim();
    if text.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|_| bad());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let (number, tail) = rest.split_at(digits);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let value: f64 = number.parse().map_err(|_| bad())?;
        let scale = match unit {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            _ => return Err(bad()),
        };
        let part = Duration::try_from_secs_f64(value * scale).map_err(|_| bad())?;
        total = total.checked_add(part).ok_or_else(bad)?;
        rest = next;
    }
    Ok(total)
}

/// A duration for people: `2h`, `90s` as `1m30s`, `1h30m`, `1.5s`.
pub fn human(d: Duration) -> String {
    if d.subsec_millis() != 0 && d.as_secs() < 60 {
        return format!("{}s", d.as_secs_f64());
    }
    let s = d.as_secs();
    let (h, m, s) = (s / 3600, (s % 3600) / 60, s % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

/// [`human`] for text that lives as long as the process, such as a flag's
/// default in `--help` taken from a `Default` impl (so each default is
/// written once): each distinct duration is formatted and kept once.
pub fn human_static(d: Duration) -> &'static str {
    static SHOWN: std::sync::Mutex<Vec<(Duration, &'static str)>> =
        std::sync::Mutex::new(Vec::new());
    let mut shown = SHOWN.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, text)) = shown.iter().find(|(k, _)| *k == d) {
        return text;
    }
    let text: &'static str = Box::leak(human(d).into_boxed_str());
    shown.push((d, text));
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn static_text_is_formatted_once() {
        let a = human_static(Duration::from_secs(7200));
        assert_eq!(a, "2h");
        assert!(std::ptr::eq(a, human_static(Duration::from_secs(7200))));
    }

    #[test]
    fn parses_what_people_write() {
        for (text, secs) in [
            ("7200", 7200.0),
            ("2h", 7200.0),
            ("24h", 86400.0),
            ("30m", 1800.0),
            ("1h30m", 5400.0),
            ("90s", 90.0),
            ("1.5s", 1.5),
            ("0.25", 0.25),
            ("500ms", 0.5),
        ] {
            assert_eq!(parse(text), Ok(Duration::from_secs_f64(secs)), "{text}");
        }
        for text in ["", "h", "2x", "-1", "1h-", "two hours", "1e999"] {
            let err = parse(text).unwrap_err();
            assert!(err.to_string().contains("90s, 30m, 2h"), "{text}: {err}");
        }
    }

    #[test]
    fn reads_well() {
        assert_eq!(human(Duration::from_secs(7200)), "2h");
        assert_eq!(human(Duration::from_secs(5400)), "1h30m");
        assert_eq!(human(Duration::from_secs(86400)), "24h");
        assert_eq!(human(Duration::from_secs(0)), "0s");
        assert_eq!(human(Duration::from_millis(1500)), "1.5s");
    }

    proptest! {
        #[test]
        fn what_it_prints_it_parses(secs in 0u64..10_000_000) {
            let d = Duration::from_secs(secs);
            prop_assert_eq!(parse(&human(d)), Ok(d));
        }
    }
}
