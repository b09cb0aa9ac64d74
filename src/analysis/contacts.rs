//! Repeat contacts: when a customer's earlier contacts count as repeats of this one
//! (`ContactLog`, one rule for the stream and for `--history`), and the RFC 3339 timestamps
//! they are compared by (`parse_timestamp`). Reads nothing itself.

use std::collections::HashMap;

/// Earlier contacts per customer, to count repeats within the priority window.
///
/// The rule: a contact of the same customer counts as a prior contact of one at `at` when it
/// was recorded before this one (earlier in `--history` or in the input) and its time lies in
/// `[at - window, at]`. Both ends are inclusive, so a contact exactly one window earlier counts,
/// and so does one at the very same second: two tickets a customer sends within one second are
/// a repeat, not one contact (timestamps have whole seconds, so "same second" is not "same
/// message"). Contacts later than `at` never count, whatever their order in the input.
///
/// Timestamps older than the window before the newest one seen are dropped, so memory follows
/// the window's traffic rather than the input's length when the input is in time order.
#[derive(Debug, Default)]
pub struct ContactLog {
    window: i64,
    newest: i64,
    seen: HashMap<String, Vec<i64>>,
    added: usize,
}

impl ContactLog {
    /// `window` in seconds (`PriorityEngine::repeat_window_secs`).
    pub fn new(window: i64) -> ContactLog {
        ContactLog {
            window,
            newest: i64::MIN,
            ..ContactLog::default()
        }
    }

    /// Recorded contacts of `customer` in `[at - window, at]` (see the rule above); then
    /// records this one.
    pub fn count_and_add(&mut self, customer: &str, at: i64) -> u32 {
        let from = at.saturating_sub(self.window);
        // Known customers (the common case) cost one lookup and no allocation.
        let list = match self.seen.get_mut(customer) {
            Some(list) => list,
            None => self.seen.entry(customer.to_owned()).or_default(),
        };
        let n = list.iter().filter(|&&t| t >= from && t <= at).count();
        list.push(at);
        self.newest = self.newest.max(at);
        self.added += 1;
        if self.added.is_multiple_of(65_536) {
            self.prune();
        }
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// Records a contact without counting (history loaded before the input).
    pub fn add(&mut self, customer: &str, at: i64) {
        self.seen.entry(customer.to_string()).or_default().push(at);
        self.newest = self.newest.max(at);
    }

    fn prune(&mut self) {
        let keep_from = self.newest.saturating_sub(self.window);
        self.seen.retain(|_, v| {
            v.retain(|&t| t >= keep_from);
            !v.is_empty()
        });
    }
}

/// Seconds since the Unix epoch of an RFC 3339 / ISO 8601 timestamp (`2026-09-01T00:03:55Z`,
/// with optional fraction and offset, `T` or a space), or of a bare date (midnight UTC).
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let s = s.trim();
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        if t.bytes().all(|c| c.is_ascii_digit()) && !t.is_empty() {
            t.parse().ok()
        } else {
            None
        }
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    if b.len() == 10 {
        return Some(days * 86_400);
    }
    if !(b[10] == b'T' || b[10] == b't' || b[10] == b' ') || b.len() < 19 {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    if let Some(r) = rest.strip_prefix('.') {
        let digits = r.bytes().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        rest = &r[digits..];
    }
    let offset = match rest {
        "" | "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let o = &rest[1..];
            let (oh, om) = match o.len() {
                5 if o.as_bytes()[2] == b':' => (o[..2].parse::<i64>().ok()?, o[3..].parse().ok()?),
                4 => (o[..2].parse::<i64>().ok()?, o[2..].parse().ok()?),
                2 => (o.parse::<i64>().ok()?, 0),
                _ => return None,
            };
            sign * (oh * 3600 + om * 60)
        }
    };
    Some(days * 86_400 + h * 3600 + mi * 60 + sec - offset)
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_parse_with_offsets_fractions_and_dates() {
        assert_eq!(parse_timestamp("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_timestamp("2026-09-01T00:03:55Z"), Some(1_788_221_035));
        assert_eq!(
            parse_timestamp("2026-09-01T02:03:55+02:00"),
            parse_timestamp("2026-09-01T00:03:55Z")
        );
        assert_eq!(
            parse_timestamp("2026-09-01 00:03:55.123"),
            parse_timestamp("2026-09-01T00:03:55Z")
        );
        assert_eq!(parse_timestamp("2024-02-29"), Some(1_709_164_800));
        for bad in [
            "",
            "yesterday",
            "2026-13-01",
            "2026-09-01T25:00:00Z",
            "2026-09-01Tx",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
    }

    #[test]
    fn contacts_count_only_earlier_ones_inside_the_window() {
        let mut log = ContactLog::new(72 * 3600);
        let h = 3600;
        assert_eq!(log.count_and_add("a", 0), 0);
        assert_eq!(log.count_and_add("a", 10 * h), 1);
        assert_eq!(log.count_and_add("b", 11 * h), 0);
        assert_eq!(
            log.count_and_add("a", 80 * h),
            1,
            "the first is outside 72 h"
        );
        log.add("c", 0);
        assert_eq!(log.count_and_add("c", h), 1);
    }

    #[test]
    fn same_second_and_window_edge_count_later_ones_do_not() {
        let h = 3600;
        let at = 1_000 * h;
        let mut log = ContactLog::new(72 * h);
        for t in [at - 73 * h, at - 72 * h, at - 10 * h, at, at + h] {
            log.add("a", t);
        }
        // Exactly 72 h earlier, 10 h earlier and the same second count; 73 h earlier and an
        // hour later do not.
        assert_eq!(log.count_and_add("a", at), 3);
        // The contact just counted is now a same-second prior contact of the next one.
        assert_eq!(log.count_and_add("a", at), 4);
        assert_eq!(log.count_and_add("b", at), 0);
    }
}
