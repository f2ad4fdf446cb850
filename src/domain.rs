//! Validated domain values. Parsing is the only way to get one, so a `Username` or a
//! `DateOfBirth` in hand is known good; the error says, in a sentence a client can act
//! on, why the input was refused.

use jiff::civil::Date;
use std::fmt;

/// The longest accepted username, in bytes (= letters: only ASCII is accepted).
pub const MAX_USERNAME_LEN: usize = 64;

/// Why an input was refused. `Display` is the message returned to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValidationError {
    UsernameEmpty,
    UsernameTooLong,
    UsernameNotLetters,
    DateMissing,
    DateNotString,
    DateFormat,
    DateNotReal,
    DateNotInPast,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ValidationError::UsernameEmpty => "username must not be empty",
            ValidationError::UsernameTooLong => "username must be at most 64 letters",
            ValidationError::UsernameNotLetters => {
                "username must contain only the letters A-Z and a-z"
            }
            ValidationError::DateMissing => "body must be a JSON object with a dateOfBirth field",
            ValidationError::DateNotString => "dateOfBirth must be a string in YYYY-MM-DD form",
            ValidationError::DateFormat => "dateOfBirth must be in YYYY-MM-DD form",
            ValidationError::DateNotReal => "dateOfBirth is not a real calendar date",
            ValidationError::DateNotInPast => "dateOfBirth must be a date before today",
        })
    }
}

impl std::error::Error for ValidationError {}

/// A username: 1 to 64 ASCII letters, case-sensitive, borrowed from the request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Username<'a>(&'a str);

impl<'a> Username<'a> {
    /// Takes the raw path segment as sent: no percent-decoding happens anywhere, so
    /// `%41` is three bytes and refused, not an `A`.
    pub fn parse(raw: &'a str) -> Result<Self, ValidationError> {
        if raw.is_empty() {
            return Err(ValidationError::UsernameEmpty);
        }
        if !raw.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(ValidationError::UsernameNotLetters);
        }
        if raw.len() > MAX_USERNAME_LEN {
            return Err(ValidationError::UsernameTooLong);
        }
        Ok(Username(raw))
    }

    pub fn as_str(&self) -> &'a str {
        self.0
    }
}

/// A date of birth: a real calendar date written exactly `YYYY-MM-DD`, before today.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateOfBirth(Date);

impl DateOfBirth {
    /// `today` is the caller's notion of today (see `DOB_TIMEZONE`); the date must be
    /// strictly earlier.
    pub fn parse(raw: &str, today: Date) -> Result<Self, ValidationError> {
        let date = parse_iso_date(raw)?;
        if date >= today {
            return Err(ValidationError::DateNotInPast);
        }
        Ok(DateOfBirth(date))
    }

    /// Wraps a date read back from the database, where it was validated on the way in.
    pub fn from_stored(date: Date) -> Self {
        DateOfBirth(date)
    }

    pub fn date(&self) -> Date {
        self.0
    }
}

/// Exactly `YYYY-MM-DD`: four, two and two ASCII digits. Stricter than jiff's parser,
/// which also accepts other ISO 8601 spellings that the contract refuses.
fn parse_iso_date(raw: &str) -> Result<Date, ValidationError> {
    let b = raw.as_bytes();
    let shape_ok = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !shape_ok {
        return Err(ValidationError::DateFormat);
    }
    let num = |range: std::ops::Range<usize>| {
        b[range]
            .iter()
            .fold(0i16, |acc, c| acc * 10 + i16::from(c - b'0'))
    };
    let (year, month, day) = (num(0..4), num(5..7), num(8..10));
    if year == 0 {
        // Year 0 is valid ISO 8601 (1 BC) but no date of birth; PostgreSQL refuses it too.
        return Err(ValidationError::DateNotReal);
    }
    let month = i8::try_from(month).map_err(|_| ValidationError::DateNotReal)?;
    let day = i8::try_from(day).map_err(|_| ValidationError::DateNotReal)?;
    Date::new(year, month, day).map_err(|_| ValidationError::DateNotReal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    #[test]
    fn usernames_of_letters_up_to_64_are_accepted_case_sensitively() {
        assert_eq!(Username::parse("Bob").unwrap().as_str(), "Bob");
        assert_ne!(Username::parse("Bob"), Username::parse("bob"));
        assert!(Username::parse(&"a".repeat(64)).is_ok());
    }

    #[test]
    fn bad_usernames_are_refused_with_a_reason() {
        assert_eq!(Username::parse(""), Err(ValidationError::UsernameEmpty));
        assert_eq!(
            Username::parse(&"a".repeat(65)),
            Err(ValidationError::UsernameTooLong)
        );
        for bad in ["bob1", "bo b", "bob\n", "b%41", "bøb", "Émile", "bob-", "_"] {
            assert_eq!(
                Username::parse(bad),
                Err(ValidationError::UsernameNotLetters),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_past_calendar_date_is_accepted() {
        let today = date(2024, 6, 15);
        assert_eq!(
            DateOfBirth::parse("1990-02-28", today).unwrap().date(),
            date(1990, 2, 28)
        );
        assert_eq!(
            DateOfBirth::parse("2000-02-29", today).unwrap().date(),
            date(2000, 2, 29)
        );
        assert_eq!(
            DateOfBirth::parse("2024-06-14", today).unwrap().date(),
            date(2024, 6, 14)
        );
    }

    #[test]
    fn today_and_future_dates_are_refused() {
        let today = date(2024, 6, 15);
        assert_eq!(
            DateOfBirth::parse("2024-06-15", today),
            Err(ValidationError::DateNotInPast)
        );
        assert_eq!(
            DateOfBirth::parse("2024-06-16", today),
            Err(ValidationError::DateNotInPast)
        );
        assert_eq!(
            DateOfBirth::parse("9999-12-31", today),
            Err(ValidationError::DateNotInPast)
        );
    }

    #[test]
    fn anything_but_zero_padded_yyyy_mm_dd_is_refused() {
        let today = date(2024, 6, 15);
        for bad in [
            "1990-2-28",
            "90-02-28",
            "1990/02/28",
            "1990-02-28T00:00",
            " 1990-02-28",
            "1990-02-28\n",
            "19900228",
            "+1990-02-28",
            "1990-0a-28",
            "",
            "1990-02-2８",
        ] {
            assert_eq!(
                DateOfBirth::parse(bad, today),
                Err(ValidationError::DateFormat),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn impossible_dates_are_refused() {
        let today = date(2024, 6, 15);
        for bad in [
            "1990-02-29",
            "1990-13-01",
            "1990-00-10",
            "1990-04-31",
            "1990-01-00",
            "0000-01-01",
        ] {
            assert_eq!(
                DateOfBirth::parse(bad, today),
                Err(ValidationError::DateNotReal),
                "{bad:?}"
            );
        }
    }
}
