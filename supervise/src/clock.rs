//! The CRI log's timestamps, `2006-01-02T15:04:05.999999999Z` with all nine
//! digits, written into a fixed buffer: the supervisor stamps every log line
//! and this keeps its hot path free of a date library and of `fmt`.

use std::time::{SystemTime, UNIX_EPOCH};

/// Bytes of one timestamp.
pub const LEN: usize = 30;

/// `t` in UTC as RFC 3339 with nanoseconds. Times before 1970 are written
/// as the epoch (a host clock that far off is not a log's concern).
pub fn rfc3339_nanos(t: SystemTime) -> [u8; LEN] {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, dd) = civil_from_days(days as i64);
    let mut b = *b"0000-00-00T00:00:00.000000000Z";
    digits(&mut b[0..4], y.clamp(0, 9999) as u64);
    digits(&mut b[5..7], u64::from(m));
    digits(&mut b[8..10], u64::from(dd));
    digits(&mut b[11..13], rem / 3600);
    digits(&mut b[14..16], rem % 3600 / 60);
    digits(&mut b[17..19], rem % 60);
    digits(&mut b[20..29], u64::from(d.subsec_nanos()));
    b
}

/// `v` as decimal, zero-padded to the slice's width (high digits dropped).
fn digits(out: &mut [u8], mut v: u64) {
    for c in out.iter_mut().rev() {
        *c = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// Days since 1970-01-01 -> (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
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
    use std::time::Duration;

    #[test]
    fn matches_jiff_across_leap_years_and_month_ends() {
        let mut cases: Vec<u64> = vec![
            0,
            59,
            86_399,
            86_400,
            951_782_400,     // 2000-02-29
            951_868_799,     // 2000-02-29T23:59:59
            1_709_164_800,   // 2024-02-29
            4_107_542_399,   // 2100-02-28T23:59:59
            4_107_542_400,   // 2100-03-01 (no leap day)
            253_402_207_200, // 9999-12-30T22:00:00, jiff's last second
        ];
        // a day and a bit at a time over two centuries
        cases.extend((0..80_000u64).map(|i| i * 90_061));
        for s in cases {
            for ns in [0u32, 1, 999_999_999, 123_456_789] {
                let t = UNIX_EPOCH + Duration::new(s, ns);
                let ours = rfc3339_nanos(t);
                let ts = jiff::Timestamp::new(s as i64, ns as i32).unwrap();
                assert_eq!(
                    std::str::from_utf8(&ours).unwrap(),
                    format!("{ts:.9}"),
                    "{s}.{ns}"
                );
            }
        }
    }

    #[test]
    fn before_the_epoch_is_the_epoch() {
        let t = UNIX_EPOCH - Duration::from_secs(5);
        assert_eq!(&rfc3339_nanos(t), b"1970-01-01T00:00:00.000000000Z");
    }
}
