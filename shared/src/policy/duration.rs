//! Durations as people write them in YAML and annotations: `90s`, `30m`,
//! `1h`, `2h30m`.
//!
//! The same format is used in the policy (`defaultTtl`, `maxTtl`) and in the
//! `gitwarden.io/break-glass-ttl` annotation, so a person writing either has
//! one thing to learn. It is deliberately narrow: whole hours, minutes and
//! seconds, largest unit first, each at most once, no spaces, no signs, no
//! fractions. Anything else is refused with an error that shows the format,
//! rather than being guessed at, because a break-glass TTL is a security
//! bound.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A non-negative duration with whole-second precision, written like `2h30m`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct HumanDuration {
    seconds: u64,
}

/// The units the format accepts, largest first, with their length in seconds.
const UNITS: [(char, u64); 3] = [('h', 3600), ('m', 60), ('s', 1)];

impl HumanDuration {
    /// The zero duration (`0s`).
    pub const ZERO: HumanDuration = HumanDuration { seconds: 0 };

    /// A duration of `seconds` seconds.
    pub const fn from_secs(seconds: u64) -> Self {
        Self { seconds }
    }

    /// A duration of `minutes` minutes.
    pub const fn from_mins(minutes: u64) -> Self {
        Self {
            seconds: minutes.saturating_mul(60),
        }
    }

    /// A duration of `hours` hours.
    pub const fn from_hours(hours: u64) -> Self {
        Self {
            seconds: hours.saturating_mul(3600),
        }
    }

    /// The length in whole seconds.
    pub const fn as_secs(self) -> u64 {
        self.seconds
    }

    /// Whether this is the zero duration.
    pub const fn is_zero(self) -> bool {
        self.seconds == 0
    }

    /// The same length as a standard-library duration, for timestamp
    /// arithmetic (`jiff::Timestamp::checked_add` accepts it).
    pub const fn as_std(self) -> std::time::Duration {
        std::time::Duration::from_secs(self.seconds)
    }

    /// Parse the format described in the module docs.
    pub fn parse(input: &str) -> Result<Self, DurationError> {
        let fail = |problem| DurationError {
            input: input.to_owned(),
            problem,
        };
        if input.is_empty() {
            return Err(fail(DurationProblem::Empty));
        }
        let mut seconds: u64 = 0;
        // Index into UNITS of the next unit still allowed (largest first).
        let mut next_unit = 0;
        let mut chars = input.chars().peekable();
        while chars.peek().is_some() {
            let mut number: Option<u64> = None;
            while let Some(digit) = chars.peek().and_then(|c| c.to_digit(10)) {
                chars.next();
                number = Some(
                    number
                        .unwrap_or(0)
                        .checked_mul(10)
                        .and_then(|n| n.checked_add(u64::from(digit)))
                        .ok_or_else(|| fail(DurationProblem::TooLarge))?,
                );
            }
            let unit = chars.next();
            let (number, unit) = match (number, unit) {
                (Some(number), Some(unit)) => (number, unit),
                (Some(_), None) => return Err(fail(DurationProblem::MissingUnit)),
                (None, Some(c)) => return Err(fail(DurationProblem::UnexpectedCharacter(c))),
                (None, None) => return Err(fail(DurationProblem::Empty)),
            };
            let position = UNITS
                .iter()
                .position(|(name, _)| *name == unit)
                .ok_or_else(|| fail(DurationProblem::UnknownUnit(unit)))?;
            if position < next_unit {
                return Err(fail(DurationProblem::UnitOutOfOrder(unit)));
            }
            next_unit = position + 1;
            seconds = number
                .checked_mul(UNITS[position].1)
                .and_then(|s| seconds.checked_add(s))
                .ok_or_else(|| fail(DurationProblem::TooLarge))?;
        }
        Ok(Self { seconds })
    }
}

impl FromStr for HumanDuration {
    type Err = DurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for HumanDuration {
    type Error = DurationError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<HumanDuration> for String {
    fn from(value: HumanDuration) -> Self {
        value.to_string()
    }
}

/// Writes the canonical form: largest units first, zero parts left out
/// (`5400s` is written `1h30m`), and `0s` for zero.
impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.seconds == 0 {
            return f.write_str("0s");
        }
        let mut rest = self.seconds;
        for (name, length) in UNITS {
            let count = rest / length;
            rest %= length;
            if count > 0 {
                write!(f, "{count}{name}")?;
            }
        }
        Ok(())
    }
}

/// A duration that could not be parsed, with the text and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid duration {input:?}: {problem}; write whole hours, minutes and seconds like \"90s\", \"30m\", \"1h\" or \"2h30m\""
)]
pub struct DurationError {
    /// The text as given.
    pub input: String,
    /// What is wrong with it.
    pub problem: DurationProblem,
}

/// What is wrong with a duration's text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationProblem {
    /// Nothing was written.
    #[error("it is empty")]
    Empty,
    /// A number is not followed by a unit (`90`).
    #[error("the last number has no unit")]
    MissingUnit,
    /// A unit other than `h`, `m` or `s` (`1d`, `5ms` reads as `m` then `s`).
    #[error("{0:?} is not a unit (use h, m or s)")]
    UnknownUnit(char),
    /// A character where a number was expected (a sign, a space, a dot).
    #[error("expected a number, found {0:?}")]
    UnexpectedCharacter(char),
    /// A unit repeated or written after a smaller one (`30m1h`, `1h1h`).
    #[error("unit {0:?} is repeated or comes after a smaller unit")]
    UnitOutOfOrder(char),
    /// The total does not fit in 64 bits of seconds.
    #[error("it is too large")]
    TooLarge,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn secs(text: &str) -> u64 {
        HumanDuration::parse(text).unwrap().as_secs()
    }

    fn problem(text: &str) -> DurationProblem {
        HumanDuration::parse(text).unwrap_err().problem
    }

    #[test]
    fn single_units_parse() {
        assert_eq!(secs("90s"), 90);
        assert_eq!(secs("30m"), 1800);
        assert_eq!(secs("1h"), 3600);
        assert_eq!(secs("0s"), 0);
    }

    #[test]
    fn combined_units_parse_largest_first() {
        assert_eq!(secs("2h30m"), 9000);
        assert_eq!(secs("1h0m5s"), 3605);
        assert_eq!(secs("1m30s"), 90);
    }

    #[test]
    fn empty_text_is_refused() {
        assert_eq!(problem(""), DurationProblem::Empty);
    }

    #[test]
    fn number_without_unit_is_refused() {
        assert_eq!(problem("3600"), DurationProblem::MissingUnit);
        assert_eq!(problem("1h30"), DurationProblem::MissingUnit);
    }

    #[test]
    fn unknown_units_are_refused() {
        assert_eq!(problem("1d"), DurationProblem::UnknownUnit('d'));
        assert_eq!(problem("1H"), DurationProblem::UnknownUnit('H'));
    }

    #[test]
    fn signs_spaces_and_fractions_are_refused() {
        assert_eq!(problem("-1h"), DurationProblem::UnexpectedCharacter('-'));
        assert_eq!(problem(" 1h"), DurationProblem::UnexpectedCharacter(' '));
        assert_eq!(problem("1h 30m"), DurationProblem::UnexpectedCharacter(' '));
        assert_eq!(problem("1.5h"), DurationProblem::UnknownUnit('.'));
        assert_eq!(problem("h"), DurationProblem::UnexpectedCharacter('h'));
    }

    #[test]
    fn units_out_of_order_or_repeated_are_refused() {
        assert_eq!(problem("30m1h"), DurationProblem::UnitOutOfOrder('h'));
        assert_eq!(problem("1h1h"), DurationProblem::UnitOutOfOrder('h'));
    }

    #[test]
    fn overflow_is_refused() {
        assert_eq!(problem("99999999999999999999s"), DurationProblem::TooLarge);
        assert_eq!(problem("18446744073709551615h"), DurationProblem::TooLarge);
    }

    #[test]
    fn error_message_names_the_input_and_shows_the_format() {
        let message = HumanDuration::parse("1 day").unwrap_err().to_string();
        assert!(message.contains("\"1 day\""), "{message}");
        assert!(message.contains("2h30m"), "{message}");
    }

    #[test]
    fn display_writes_the_canonical_form() {
        assert_eq!(HumanDuration::from_secs(0).to_string(), "0s");
        assert_eq!(HumanDuration::from_secs(90).to_string(), "1m30s");
        assert_eq!(HumanDuration::from_secs(5400).to_string(), "1h30m");
        assert_eq!(HumanDuration::from_secs(3601).to_string(), "1h1s");
        assert_eq!(HumanDuration::from_hours(4).to_string(), "4h");
    }

    #[test]
    fn serde_round_trips_through_the_string_form() {
        let d: HumanDuration = serde_json::from_str("\"2h30m\"").unwrap();
        assert_eq!(d, HumanDuration::from_mins(150));
        assert_eq!(serde_json::to_string(&d).unwrap(), "\"2h30m\"");
    }

    #[test]
    fn serde_refuses_numbers() {
        assert!(serde_json::from_str::<HumanDuration>("3600").is_err());
    }
}
