//! Birthday arithmetic. Pure: every function takes `today` from its caller, so nothing
//! here reads the clock and every case is testable on fixed dates.

use jiff::civil::Date;
use std::fmt::Write;

/// The date `dob`'s birthday falls on in `year`. Someone born on 29 February celebrates
/// on 28 February in years without one.
pub fn birthday_in_year(dob: Date, year: i16) -> Date {
    let (month, day) = (dob.month(), dob.day());
    Date::new(year, month, day).unwrap_or_else(|_| {
        // Only 29 February can fail to exist in another year.
        debug_assert!(month == 2 && day == 29);
        Date::constant(year, 2, 28)
    })
}

/// Whole days from `today` until the next birthday: 0 when it is today, otherwise 1 to 365.
pub fn days_until_birthday(dob: Date, today: Date) -> i32 {
    let this_year = birthday_in_year(dob, today.year());
    let next = if this_year >= today {
        this_year
    } else {
        // Dates run to 9999; a birthday after 31 Dec 9999 cannot be greeted anyway.
        birthday_in_year(dob, today.year().saturating_add(1).min(9999))
    };
    // A civil-date difference is a span of whole days (the default largest unit), and
    // `next >= today`, so it is in 0..=365 and cannot fail.
    next.since(today).map_or(0, |span| span.get_days())
}

/// Appends the greeting JSON object for `username` to `out`, without allocating more
/// than `out` needs. The username is letters only, so it needs no JSON escaping.
pub fn write_greeting_json(out: &mut String, username: &str, days: i32) {
    out.push_str("{\"message\":\"Hello, ");
    out.push_str(username);
    if days == 0 {
        out.push_str("! Happy birthday!\"}");
    } else {
        // Writing to a String cannot fail.
        let _ = write!(out, "! Your birthday is in {days} day(s)\"}}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    fn days(dob: Date, today: Date) -> i32 {
        days_until_birthday(dob, today)
    }

    #[test]
    fn birthday_today_is_zero_days() {
        assert_eq!(days(date(1990, 6, 15), date(2024, 6, 15)), 0);
    }

    #[test]
    fn birthday_tomorrow_is_one_day() {
        assert_eq!(days(date(1990, 6, 16), date(2024, 6, 15)), 1);
    }

    #[test]
    fn birthday_yesterday_is_a_year_minus_one_day() {
        // 2025-06-14 to 2026-06-14: no 29 February in between.
        assert_eq!(days(date(1990, 6, 14), date(2025, 6, 15)), 364);
        // 2024-01-02 to 2025-01-01 spans nothing special either: 365 - 1.
        assert_eq!(days(date(1990, 1, 1), date(2024, 1, 2)), 365);
        // 2023-03-02 to 2024-03-01 contains 2024-02-29.
        assert_eq!(days(date(1990, 3, 1), date(2023, 3, 2)), 365);
    }

    #[test]
    fn year_boundaries() {
        assert_eq!(days(date(1990, 1, 1), date(2024, 12, 31)), 1);
        assert_eq!(days(date(1990, 12, 31), date(2025, 1, 1)), 364);
        assert_eq!(days(date(1990, 12, 31), date(2024, 1, 1)), 365);
        assert_eq!(days(date(1990, 1, 1), date(2025, 1, 1)), 0);
        assert_eq!(days(date(1990, 12, 31), date(2025, 12, 31)), 0);
    }

    #[test]
    fn leap_day_birthday_in_a_leap_year_is_29_february() {
        assert_eq!(days(date(2000, 2, 29), date(2024, 2, 28)), 1);
        assert_eq!(days(date(2000, 2, 29), date(2024, 2, 29)), 0);
        assert_eq!(days(date(2000, 2, 29), date(2024, 1, 1)), 59);
    }

    #[test]
    fn leap_day_birthday_in_a_common_year_is_28_february() {
        assert_eq!(days(date(2000, 2, 29), date(2025, 2, 28)), 0);
        assert_eq!(days(date(2000, 2, 29), date(2025, 2, 27)), 1);
        // After 28 February in a common year the next one is 29 February of a leap year.
        assert_eq!(days(date(2000, 2, 29), date(2023, 3, 1)), 365);
        // ... or 28 February of another common year.
        assert_eq!(days(date(2000, 2, 29), date(2025, 3, 1)), 364);
    }

    #[test]
    fn leap_day_today_for_other_birthdays() {
        assert_eq!(days(date(1990, 3, 1), date(2024, 2, 29)), 1);
        // 2024-02-29 + 365 days = 2025-02-28 (2025 has no 29 February).
        assert_eq!(days(date(1990, 2, 28), date(2024, 2, 29)), 365);
    }

    #[test]
    fn greeting_text_follows_the_contract() {
        let mut out = String::new();
        write_greeting_json(&mut out, "Bob", 0);
        assert_eq!(out, r#"{"message":"Hello, Bob! Happy birthday!"}"#);
        out.clear();
        write_greeting_json(&mut out, "Bob", 1);
        assert_eq!(
            out,
            r#"{"message":"Hello, Bob! Your birthday is in 1 day(s)"}"#
        );
        out.clear();
        write_greeting_json(&mut out, "Bob", 365);
        assert_eq!(
            out,
            r#"{"message":"Hello, Bob! Your birthday is in 365 day(s)"}"#
        );
    }
}
