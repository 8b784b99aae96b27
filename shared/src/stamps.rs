//! The break-glass stamps on an object, read in one place.
//!
//! `/mutate` writes `gitwarden.io/break-glass-by`, `-at` and `-until`; the
//! webhook's decision checks them on every later request, and the agent reads
//! `-until` to know when to revert. Both read them here, so they cannot
//! disagree about what a stamp says (a stamp that is not an RFC 3339 time is
//! no time at all, and so no open window).

use std::collections::BTreeMap;

use jiff::Timestamp;

use crate::names::{BREAK_GLASS_AT, BREAK_GLASS_BY, BREAK_GLASS_UNTIL};

/// The three stamp annotations as found on an object.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stamps<'a> {
    /// `gitwarden.io/break-glass-by`: who opened the window.
    pub by: Option<&'a str>,
    /// `gitwarden.io/break-glass-at`, as written.
    pub at: Option<&'a str>,
    /// `gitwarden.io/break-glass-until`, as written.
    pub until: Option<&'a str>,
}

impl<'a> Stamps<'a> {
    /// The stamps among `annotations` (none when there are none).
    pub fn of(annotations: Option<&'a BTreeMap<String, String>>) -> Self {
        let get = |key: &str| annotations.and_then(|a| a.get(key)).map(String::as_str);
        Self {
            by: get(BREAK_GLASS_BY),
            at: get(BREAK_GLASS_AT),
            until: get(BREAK_GLASS_UNTIL),
        }
    }

    /// Whether no stamp is present.
    pub fn is_empty(&self) -> bool {
        self.by.is_none() && self.at.is_none() && self.until.is_none()
    }

    /// When the window opened, if `-at` is a valid time.
    pub fn at(&self) -> Option<Timestamp> {
        self.at.and_then(|t| t.parse().ok())
    }

    /// When the window closes, if `-until` is a valid time.
    pub fn until(&self) -> Option<Timestamp> {
        self.until.and_then(|t| t.parse().ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn valid_stamps_are_read_as_times() {
        let a = annotations(&[
            (BREAK_GLASS_BY, "carol"),
            (BREAK_GLASS_AT, "2026-11-23T06:00:00Z"),
            (BREAK_GLASS_UNTIL, "2026-11-23T07:00:00Z"),
        ]);
        let stamps = Stamps::of(Some(&a));
        assert_eq!(stamps.by, Some("carol"));
        assert_eq!(
            stamps.until().map(|t| t.to_string()).as_deref(),
            Some("2026-11-23T07:00:00Z")
        );
        assert!(stamps.at().is_some());
    }

    #[test]
    fn a_stamp_that_is_no_time_is_no_time() {
        let a = annotations(&[(BREAK_GLASS_UNTIL, "tomorrow")]);
        let stamps = Stamps::of(Some(&a));
        assert!(!stamps.is_empty());
        assert_eq!(stamps.until(), None);
        assert!(Stamps::of(None).is_empty());
    }
}
