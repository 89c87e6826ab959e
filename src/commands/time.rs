//! Times a person types on the command line (`restore --at`, `collect --before`).

use anyhow::anyhow;
use chrono::{DateTime, Local, NaiveDate, NaiveDateTime, Utc};

/// Parses RFC 3339, or a local `YYYY-MM-DD HH:MM[:SS]` (a `T` works too), or a local
/// date alone, which means the end of that day: the next midnight, so that every
/// version stored during that day counts. `flag` names the option in errors.
pub fn parse_local_time(flag: &str, s: &str) -> anyhow::Result<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let naive = [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
    .or_else(|| {
        NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.succ_opt())
            .and_then(|d| d.and_hms_opt(0, 0, 0))
    })
    .ok_or_else(|| {
        anyhow!(
            "{flag} {s:?}: expected a time like \"2024-05-01 14:30\", \"2024-05-01\" or RFC 3339"
        )
    })?;
    naive
        .and_local_timezone(Local)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| anyhow!("{flag} {s:?} does not exist in the local time zone"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        let t = parse_local_time("--at", "2024-05-01T12:00:00Z").unwrap();
        assert_eq!(t.to_rfc3339(), "2024-05-01T12:00:00+00:00");
        assert!(parse_local_time("--at", "2024-05-01 14:30").is_ok());
        assert!(parse_local_time("--at", "2024-05-01T14:30").is_ok());
        let late_evening = parse_local_time("--at", "2024-05-01 23:59:59").unwrap();
        let day = parse_local_time("--at", "2024-05-01").unwrap();
        assert_eq!(day - late_evening, chrono::Duration::seconds(1));
        let err = parse_local_time("--before", "friday").unwrap_err();
        assert!(err.to_string().starts_with("--before \"friday\""), "{err}");
    }
}
