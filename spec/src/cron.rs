//! Cron schedules as CronJobs write them: five fields (minute, hour, day of
//! month, month, day of week) with `*`, `?`, lists, ranges, steps and
//! month/day names, the macros `@yearly` ... `@hourly`, and a time zone
//! (`spec.timeZone`, or a `CRON_TZ=`/`TZ=` prefix; UTC when unset, as
//! kube-controller-manager runs in UTC). When both day fields are
//! restricted, a day matches either (cron semantics).
//!
//! Here in `spec` so validation refuses a bad schedule or time zone at its
//! file:line; the reconciler plans with the same parser. A named time zone
//! is looked up in the host's time zone database (`/usr/share/zoneinfo`,
//! through jiff), as kube-apiserver does: the one read of the filesystem
//! this crate makes.

use std::fmt;

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleError(pub String);

impl fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ScheduleError {}

/// A parsed schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    minutes: Vec<u8>,
    hours: Vec<u8>,
    days: Vec<u8>,
    months: Vec<u8>,
    weekdays: Vec<u8>,
    days_restricted: bool,
    weekdays_restricted: bool,
    tz: TimeZone,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

fn err(msg: impl Into<String>) -> ScheduleError {
    ScheduleError(msg.into())
}

fn value(s: &str, lo: u8, hi: u8, names: &[&str], base: u8) -> Result<u8, ScheduleError> {
    let lower = s.to_ascii_lowercase();
    if let Some(i) = names.iter().position(|n| *n == lower) {
        return Ok(i as u8 + base);
    }
    let v: u8 = s
        .parse()
        .map_err(|_| err(format!("{s:?} is not a number")))?;
    if v < lo || v > hi {
        return Err(err(format!("{v} is outside {lo}-{hi}")));
    }
    Ok(v)
}

/// One field: its values and whether it was restricted (not `*`/`?`).
fn field(
    spec: &str,
    lo: u8,
    hi: u8,
    names: &[&str],
    base: u8,
) -> Result<(Vec<u8>, bool), ScheduleError> {
    let mut out = Vec::new();
    let mut restricted = false;
    for part in spec.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u8 = s
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| err(format!("{s:?} is not a valid step")))?;
                (r, step)
            }
            None => (part, 1),
        };
        let (a, b) = if range == "*" || range == "?" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            restricted = true;
            (
                value(a, lo, hi, names, base)?,
                value(b, lo, hi, names, base)?,
            )
        } else {
            restricted = true;
            let a = value(range, lo, hi, names, base)?;
            (a, if part.contains('/') { hi } else { a })
        };
        if a > b {
            return Err(err(format!("range {a}-{b} is empty")));
        }
        if step > 1 && (range == "*" || range == "?") {
            restricted = true;
        }
        out.extend((a..=b).step_by(step as usize));
    }
    out.sort();
    out.dedup();
    Ok((out, restricted))
}

impl Schedule {
    /// Parse `schedule` (possibly with a `CRON_TZ=`/`TZ=` prefix) in the
    /// time zone `time_zone` (IANA name; UTC when None).
    pub fn parse(schedule: &str, time_zone: Option<&str>) -> Result<Self, ScheduleError> {
        let mut text = schedule.trim();
        let mut zone = time_zone.map(str::to_string);
        if let Some(rest) = text
            .strip_prefix("CRON_TZ=")
            .or_else(|| text.strip_prefix("TZ="))
        {
            if time_zone.is_some() {
                return Err(err(
                    "a CRON_TZ or TZ prefix cannot be combined with spec.timeZone",
                ));
            }
            let (z, s) = rest
                .split_once(char::is_whitespace)
                .ok_or_else(|| err("nothing after the time zone"))?;
            zone = Some(z.to_string());
            text = s.trim();
        }
        let tz = match zone.as_deref() {
            None | Some("UTC") | Some("Etc/UTC") => TimeZone::UTC,
            Some(z) => {
                TimeZone::get(z).map_err(|e| err(format!("unknown time zone {z:?}: {e}")))?
            }
        };
        let expanded = match text {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            t if t.starts_with('@') => return Err(err(format!("unknown macro {t:?}"))),
            t => t,
        };
        let f: Vec<&str> = expanded.split_whitespace().collect();
        let [m, h, dom, mon, dow] = f.as_slice() else {
            return Err(err(format!(
                "{expanded:?} has {} fields, want 5 (minute hour day-of-month month day-of-week)",
                f.len()
            )));
        };
        let (minutes, _) = field(m, 0, 59, &[], 0)?;
        let (hours, _) = field(h, 0, 23, &[], 0)?;
        let (days, days_restricted) = field(dom, 1, 31, &[], 1)?;
        let (months, _) = field(mon, 1, 12, &MONTHS, 1)?;
        let (mut weekdays, weekdays_restricted) = field(dow, 0, 7, &WEEKDAYS, 0)?;
        // 7 is Sunday too
        if weekdays.contains(&7) {
            weekdays.retain(|d| *d != 7);
            if !weekdays.contains(&0) {
                weekdays.insert(0, 0);
            }
        }
        Ok(Schedule {
            minutes,
            hours,
            days,
            months,
            weekdays,
            days_restricted,
            weekdays_restricted,
            tz,
        })
    }

    fn day_matches(&self, d: Date) -> bool {
        if !self.months.contains(&(d.month() as u8)) {
            return false;
        }
        let dom = self.days.contains(&(d.day() as u8));
        let dow = self
            .weekdays
            .contains(&(d.weekday().to_sunday_zero_offset() as u8));
        match (self.days_restricted, self.weekdays_restricted) {
            (true, true) => dom || dow,
            (true, false) => dom,
            (false, true) => dow,
            (false, false) => true,
        }
    }

    /// The first scheduled time strictly after `t` (within about 5 years).
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        let start = t.to_zoned(self.tz.clone());
        let first = start.date();
        // times of the first day before `t`'s hour cannot follow it (an
        // hour repeated by DST is checked by the timestamp below)
        let first_hour = start.hour().saturating_sub(1);
        let mut day = first;
        for _ in 0..(366 * 5) {
            if self.day_matches(day) {
                for &h in &self.hours {
                    if day == first && (h as i8) < first_hour {
                        continue;
                    }
                    for &m in &self.minutes {
                        let dt =
                            DateTime::from_parts(day, jiff::civil::time(h as i8, m as i8, 0, 0));
                        // a time skipped by a DST change runs at the shifted time
                        let Ok(z) = dt.to_zoned(self.tz.clone()) else {
                            continue;
                        };
                        if z.timestamp() > t {
                            return Some(z.timestamp());
                        }
                    }
                }
            }
            day = day.checked_add(1.day()).ok()?;
        }
        None
    }

    /// The latest scheduled time in `(after, until]`, if any, and how many
    /// there were (bounded at 100, as the CronJob controller counts).
    pub fn latest_between(&self, after: Timestamp, until: Timestamp) -> (Option<Timestamp>, u32) {
        let mut cur = after;
        let mut latest = None;
        let mut n = 0;
        while let Some(next) = self.next_after(cur) {
            if next > until {
                break;
            }
            latest = Some(next);
            n += 1;
            cur = next;
            if n >= 100 {
                // only the latest one matters: look in growing windows
                // before `until` (an hour of a minutely schedule is 60
                // steps, not the 10,000 of a week)
                for hours in [1, 24, 24 * 7, 24 * 31, 24 * 366] {
                    let from = cur.max(until - jiff::SignedDuration::from_hours(hours));
                    if let Some(last) = self.latest_near(from, until) {
                        latest = Some(last);
                        break;
                    }
                    if from == cur {
                        break;
                    }
                }
                break;
            }
        }
        (latest, n)
    }

    fn latest_near(&self, mut cur: Timestamp, until: Timestamp) -> Option<Timestamp> {
        let mut latest = None;
        while let Some(next) = self.next_after(cur) {
            if next > until {
                break;
            }
            latest = Some(next);
            cur = next;
        }
        latest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn next(s: &str, tz: Option<&str>, after: &str) -> String {
        Schedule::parse(s, tz)
            .unwrap()
            .next_after(ts(after))
            .unwrap()
            .to_string()
    }

    #[test]
    fn next_times_table() {
        let cases = [
            (
                "*/1 * * * *",
                None,
                "2026-11-30T10:00:30Z",
                "2026-11-30T10:01:00Z",
            ),
            (
                "*/15 * * * *",
                None,
                "2026-11-30T10:01:00Z",
                "2026-11-30T10:15:00Z",
            ),
            (
                "0 3 * * *",
                None,
                "2026-11-30T10:00:00Z",
                "2026-12-01T03:00:00Z",
            ),
            (
                "30 2 1 * *",
                None,
                "2026-11-30T10:00:00Z",
                "2026-12-01T02:30:00Z",
            ),
            (
                "0 0 * * mon",
                None,
                "2026-11-30T10:00:00Z",
                "2026-12-07T00:00:00Z",
            ),
            (
                "0 0 * * 7",
                None,
                "2026-11-30T10:00:00Z",
                "2026-12-06T00:00:00Z",
            ),
            (
                "0 12 * feb-mar *",
                None,
                "2026-11-30T10:00:00Z",
                "2027-02-01T12:00:00Z",
            ),
            (
                "0 0 29 2 *",
                None,
                "2026-11-30T10:00:00Z",
                "2028-02-29T00:00:00Z",
            ),
            (
                "@hourly",
                None,
                "2026-11-30T10:00:00Z",
                "2026-11-30T11:00:00Z",
            ),
            (
                "@daily",
                None,
                "2026-11-30T10:00:00Z",
                "2026-12-01T00:00:00Z",
            ),
            (
                "5,10 1-2 * * *",
                None,
                "2026-11-30T01:07:00Z",
                "2026-11-30T01:10:00Z",
            ),
            // both day fields restricted: either matches (1st of month or Friday)
            (
                "0 0 1 * fri",
                None,
                "2026-11-30T10:00:00Z",
                "2026-12-01T00:00:00Z",
            ),
            (
                "0 0 1 * fri",
                None,
                "2026-12-01T10:00:00Z",
                "2026-12-04T00:00:00Z",
            ),
            // time zones: 03:00 in Berlin is 02:00 UTC in winter
            (
                "0 3 * * *",
                Some("Europe/Berlin"),
                "2026-11-30T10:00:00Z",
                "2026-12-01T02:00:00Z",
            ),
            (
                "CRON_TZ=America/New_York 0 9 * * *",
                None,
                "2026-11-30T10:00:00Z",
                "2026-11-30T14:00:00Z",
            ),
            (
                "TZ=Asia/Tokyo 0 9 * * *",
                None,
                "2026-11-30T10:00:00Z",
                "2026-12-01T00:00:00Z",
            ),
        ];
        for (s, tz, after, want) in cases {
            assert_eq!(next(s, tz, after), want, "{s} {tz:?} after {after}");
        }
    }

    #[test]
    fn bad_schedules_are_errors() {
        for (s, tz) in [
            ("* * * *", None),
            ("61 * * * *", None),
            ("*/0 * * * *", None),
            ("5-1 * * * *", None),
            ("@fortnightly", None),
            ("0 0 * * *", Some("Mars/Olympus")),
            ("CRON_TZ=UTC 0 0 * * *", Some("UTC")),
            ("x * * * *", None),
        ] {
            assert!(Schedule::parse(s, tz).is_err(), "{s} {tz:?}");
        }
    }

    #[test]
    fn latest_missed_time() {
        let s = Schedule::parse("*/10 * * * *", None).unwrap();
        let (latest, n) = s.latest_between(ts("2026-11-30T10:00:00Z"), ts("2026-11-30T10:35:00Z"));
        assert_eq!(latest, Some(ts("2026-11-30T10:30:00Z")));
        assert_eq!(n, 3);
        let (latest, n) = s.latest_between(ts("2026-11-30T10:00:00Z"), ts("2026-11-30T10:05:00Z"));
        assert_eq!((latest, n), (None, 0));
        let every = Schedule::parse("* * * * *", None).unwrap();
        let (latest, n) =
            every.latest_between(ts("2026-11-01T00:00:00Z"), ts("2026-11-30T10:05:30Z"));
        assert_eq!(latest, Some(ts("2026-11-30T10:05:00Z")));
        assert_eq!(n, 100);
    }
}
