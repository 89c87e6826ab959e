//! Times a person types on the command line (`restore --at`, `collect --before`).

use anyhow::anyhow;
use chrono::{DateTime, Local, NaiveDate, NaiveDateTime, TimeDelta, Utc};

/// A time as typed, with the length of its last unit: "14:30:05" is that whole second,
/// "14:30" that whole minute, "2024-05-01" that whole day; an RFC 3339 time with a
/// fraction is an instant (`len` zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TypedTime {
    pub start: DateTime<Utc>,
    pub len: TimeDelta,
}

impl TypedTime {
    /// Whether `t` is within or before the typed unit (`--at`'s meaning).
    pub fn covers(&self, t: DateTime<Utc>) -> bool {
        if self.len.is_zero() {
            t <= self.start
        } else {
            t < self.start + self.len
        }
    }

    /// "that second", "that minute", "that day", for messages.
    pub fn unit(&self) -> &'static str {
        match self.len.num_seconds() {
            0 => "that instant",
            1 => "that second",
            60 => "that minute",
            _ => "that day",
        }
    }
}

/// Parses like [`parse_local_time`] but keeps the typed precision (`restore --at`).
pub fn parse_typed_time(flag: &str, s: &str) -> anyhow::Result<TypedTime> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        let whole_second = t.timestamp_subsec_nanos() == 0 && !s.contains('.');
        let len = if whole_second {
            TimeDelta::seconds(1)
        } else {
            TimeDelta::zero()
        };
        return Ok(TypedTime {
            start: t.with_timezone(&Utc),
            len,
        });
    }
    let with_seconds = ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok());
    let (naive, len) = if let Some(n) = with_seconds {
        (n, TimeDelta::seconds(1))
    } else if let Some(n) = ["%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
    {
        (n, TimeDelta::minutes(1))
    } else {
        // A date: from its midnight to the next (which `parse_local_time` handles).
        let end = parse_local_time(flag, s)?;
        return Ok(TypedTime {
            start: end - TimeDelta::days(1),
            len: TimeDelta::days(1),
        });
    };
    let start = naive
        .and_local_timezone(Local)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| anyhow!("{flag} {s:?} does not exist in the local time zone"))?;
    Ok(TypedTime { start, len })
}

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
        let typed = parse_typed_time("--at", "2024-05-01 23:59:59").unwrap();
        assert_eq!(typed.start, late_evening);
        assert!(typed.covers(late_evening + chrono::Duration::milliseconds(999)));
        assert!(!typed.covers(day));
        let minute = parse_typed_time("--at", "2024-05-01 23:59").unwrap();
        assert!(minute.covers(late_evening));
        let exact = parse_typed_time("--at", "2024-05-01T12:00:00.5Z").unwrap();
        assert!(exact.len.is_zero());
        let whole_day = parse_typed_time("--at", "2024-05-01").unwrap();
        assert!(whole_day.covers(late_evening) && !whole_day.covers(day));
        let err = parse_local_time("--before", "friday").unwrap_err();
        assert!(err.to_string().starts_with("--before \"friday\""), "{err}");
    }
}
