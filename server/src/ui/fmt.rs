//! Small formatting helpers shared by the pages.

use maud::{Markup, html};

/// `YYYY-MM-DD HH:MM:SS UTC` of Unix seconds (`—` for 0 or negative).
pub fn time(unix: i64) -> String {
    if unix <= 0 {
        return "—".into();
    }
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC", secs / 3600, secs % 3600 / 60, secs % 60)
}

/// `YYYY-MM-DD` of Unix seconds.
pub fn date(unix: i64) -> String {
    let (y, m, d) = civil_from_days(unix.div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}")
}

/// Days since 1970-01-01 → (year, month, day) (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Unix seconds of `YYYY-MM-DD` (00:00 UTC), if it is such a date.
pub fn parse_date(s: &str) -> Option<i64> {
    let mut it = s.splitn(3, '-');
    let (y, m, d): (i64, i64, i64) = (it.next()?.parse().ok()?, it.next()?.parse().ok()?, it.next()?.parse().ok()?);
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || !(1..=31).contains(&d) || s.len() != 10 {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    // Refuse dates that do not exist (2026-02-30).
    (date(days * 86_400) == s).then_some(days * 86_400)
}

/// "3 min ago", "2 h ago", "5 d ago" (`never` for 0).
pub fn ago(unix: i64, now: i64) -> String {
    if unix <= 0 {
        return "never".into();
    }
    let d = now.saturating_sub(unix).max(0);
    match d {
        0..60 => format!("{d} s ago"),
        60..3600 => format!("{} min ago", d / 60),
        3600..86_400 => format!("{} h ago", d / 3600),
        _ => format!("{} d ago", d / 86_400),
    }
}

/// A time with its age as a tooltip-free pair: `2026-01-02 10:00:00 UTC (3 h ago)`.
pub fn when(unix: i64, now: i64) -> Markup {
    html! { span title=(time(unix)) { (ago(unix, now)) } }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_times() {
        assert_eq!(time(0), "—");
        assert_eq!(time(1_700_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(date(951_782_400), "2000-02-29");
        assert_eq!(ago(100, 130), "30 s ago");
        assert_eq!(ago(0, 130), "never");
        assert_eq!(ago(100, 100 + 7200), "2 h ago");
        assert_eq!(ago(100, 100 + 3 * 86_400), "3 d ago");
        assert_eq!(parse_date("2000-02-29"), Some(951_782_400));
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("2023-11-14"), Some(1_699_920_000));
        for bad in ["2026-02-30", "2026-13-01", "26-01-01", "2026-1-1", "x", "2026-01-01x"] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }
}
