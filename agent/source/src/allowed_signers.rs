//! Git's / OpenSSH's `allowed_signers` file (ssh-keygen(1), "ALLOWED SIGNERS"): which keys may
//! sign, for which principals, namespaces and time window.
//!
//! ```text
//! # comment
//! alice@example.com,bob@example.com namespaces="git" ssh-ed25519 AAAA… alice's laptop
//! *@example.com valid-after="20260101",valid-before="20270101Z" ssh-ed25519 AAAA…
//! ```
//!
//! Parsed by us rather than by running `ssh-keygen -Y verify`, so the agent image needs no
//! OpenSSH for verification and the rules are unit-tested here.

use std::{path::Path, str::FromStr};

use jiff::{Timestamp, civil, tz::TimeZone};
use ssh_key::{PublicKey, public::KeyData};

use crate::SourceError;

/// The parsed file.
#[derive(Debug, Clone, Default)]
pub struct AllowedSigners {
    entries: Vec<AllowedSigner>,
}

/// One line of the file.
#[derive(Debug, Clone)]
pub struct AllowedSigner {
    /// Comma-separated principal patterns as written (`*`, `?` wildcards, `!` negation).
    pub principals: String,
    /// `namespaces="…"` patterns; `None` means any namespace.
    pub namespaces: Option<String>,
    /// `valid-after`: signatures made before this are rejected.
    pub valid_after: Option<Timestamp>,
    /// `valid-before`: signatures made after this are rejected.
    pub valid_before: Option<Timestamp>,
    /// `cert-authority`: the key is a CA for certificates, which we do not support, so such a
    /// line never matches a plain signing key.
    pub cert_authority: bool,
    /// The allowed key.
    pub key: PublicKey,
    /// 1-based line number, for messages.
    pub line: usize,
}

/// A line of the file that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {why}")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub why: String,
}

impl AllowedSigners {
    /// Read and parse the file at `path`. Re-read at every verification so a rotated list
    /// applies to the next fetch.
    pub fn read(path: &Path) -> Result<Self, SourceError> {
        let text = std::fs::read_to_string(path).map_err(|err| SourceError::AllowedSigners {
            path: path.to_path_buf(),
            why: err.to_string(),
        })?;
        Self::parse(&text).map_err(|err| SourceError::AllowedSigners {
            path: path.to_path_buf(),
            why: err.to_string(),
        })
    }

    /// Parse the file's text. Any malformed line fails the whole file: guessing around a typo
    /// could drop a key (and reject good commits) or, worse, widen a principal pattern.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let mut entries = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            entries.push(parse_line(trimmed, line).map_err(|why| ParseError { line, why })?);
        }
        Ok(AllowedSigners { entries })
    }

    /// The entries, in file order.
    pub fn entries(&self) -> &[AllowedSigner] {
        &self.entries
    }

    /// Entries that allow `key` to sign in `namespace` at `time` (the commit's committer time,
    /// like git's `-Overify-time`), in file order.
    pub fn matching<'a>(
        &'a self,
        key: &'a KeyData,
        namespace: &'a str,
        time: Timestamp,
    ) -> impl Iterator<Item = &'a AllowedSigner> + 'a {
        self.entries.iter().filter(move |entry| {
            !entry.cert_authority
                && entry.key.key_data() == key
                && entry
                    .namespaces
                    .as_deref()
                    .is_none_or(|patterns| match_pattern_list(namespace, patterns))
                && entry.valid_after.is_none_or(|after| time >= after)
                && entry.valid_before.is_none_or(|before| time <= before)
        })
    }

    /// Whether `key` appears at all (ignoring namespace and time), to tell "unknown key" from
    /// "key not allowed here/now" in messages.
    pub fn contains_key(&self, key: &KeyData) -> bool {
        self.entries
            .iter()
            .any(|entry| !entry.cert_authority && entry.key.key_data() == key)
    }
}

impl AllowedSigner {
    /// Whether `principal` (e.g. the committer's email) matches this line's patterns.
    pub fn allows_principal(&self, principal: &str) -> bool {
        match_pattern_list(principal, &self.principals)
    }
}

fn parse_line(line: &str, line_no: usize) -> Result<AllowedSigner, String> {
    let tokens = tokenize(line)?;
    let mut tokens = tokens.iter().map(String::as_str);
    let principals = unquote(tokens.next().ok_or("missing principals")?);
    if principals.is_empty() {
        return Err("empty principals".into());
    }
    let mut next = tokens.next().ok_or("missing key")?;
    let mut entry_options = Options::default();
    if ssh_key::Algorithm::from_str(next).is_err() {
        entry_options = parse_options(next)?;
        next = tokens.next().ok_or("missing key type after options")?;
    }
    let algorithm = next;
    let base64 = tokens.next().ok_or("missing base64 key")?;
    let key = PublicKey::from_openssh(&format!("{algorithm} {base64}"))
        .map_err(|err| format!("invalid {algorithm} key: {err}"))?;
    Ok(AllowedSigner {
        principals,
        namespaces: entry_options.namespaces,
        valid_after: entry_options.valid_after,
        valid_before: entry_options.valid_before,
        cert_authority: entry_options.cert_authority,
        key,
        line: line_no,
    })
}

#[derive(Default)]
struct Options {
    namespaces: Option<String>,
    valid_after: Option<Timestamp>,
    valid_before: Option<Timestamp>,
    cert_authority: bool,
}

fn parse_options(token: &str) -> Result<Options, String> {
    let mut out = Options::default();
    for option in split_outside_quotes(token, ',') {
        let (name, value) = match option.split_once('=') {
            Some((name, value)) => (name, Some(unquote(value))),
            None => (option.as_str(), None),
        };
        match (name.to_ascii_lowercase().as_str(), value) {
            ("cert-authority", None) => out.cert_authority = true,
            ("namespaces", Some(value)) => out.namespaces = Some(value),
            ("valid-after", Some(value)) => out.valid_after = Some(parse_time(&value)?),
            ("valid-before", Some(value)) => out.valid_before = Some(parse_time(&value)?),
            _ => return Err(format!("unsupported option {option:?}")),
        }
    }
    Ok(out)
}

/// `YYYYMMDD[HHMM[SS]][Z]`: UTC with `Z`, the system's local time otherwise (as ssh-keygen).
fn parse_time(value: &str) -> Result<Timestamp, String> {
    let bad = || format!("invalid time {value:?} (want YYYYMMDD[HHMM[SS]][Z])");
    let (digits, utc) = match value.strip_suffix(['Z', 'z']) {
        Some(digits) => (digits, true),
        None => (value, false),
    };
    if !digits.bytes().all(|b| b.is_ascii_digit()) || ![8, 12, 14].contains(&digits.len()) {
        return Err(bad());
    }
    let num = |range: std::ops::Range<usize>| {
        digits
            .get(range)
            .and_then(|s| s.parse::<i16>().ok())
            .unwrap_or(0)
    };
    // All fields fit in i8 except the year; `DateTime::new` rejects impossible dates.
    let small = |range: std::ops::Range<usize>| i8::try_from(num(range)).map_err(|_| bad());
    let datetime = civil::DateTime::new(
        num(0..4),
        small(4..6)?,
        small(6..8)?,
        small(8..10)?,
        small(10..12)?,
        small(12..14)?,
        0,
    )
    .map_err(|_| bad())?;
    let tz = if utc {
        TimeZone::UTC
    } else {
        TimeZone::system()
    };
    datetime
        .to_zoned(tz)
        .map(|zoned| zoned.timestamp())
        .map_err(|_| bad())
}

/// Split a line on whitespace, keeping double-quoted stretches (which may hold spaces or commas)
/// inside their token.
fn tokenize(line: &str) -> Result<Vec<String>, String> {
    let mut tokens = Vec::new();
    let mut current = String::new();
    let mut in_quotes = false;
    for c in line.chars() {
        match c {
            '"' => {
                in_quotes = !in_quotes;
                current.push(c);
            }
            c if c.is_whitespace() && !in_quotes => {
                if !current.is_empty() {
                    tokens.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if in_quotes {
        return Err("unterminated quote".into());
    }
    if !current.is_empty() {
        tokens.push(current);
    }
    Ok(tokens)
}

fn split_outside_quotes(value: &str, separator: char) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut in_quotes = false;
    for c in value.chars() {
        if c == '"' {
            in_quotes = !in_quotes;
        }
        if c == separator && !in_quotes {
            parts.push(std::mem::take(&mut current));
        } else {
            current.push(c);
        }
    }
    parts.push(current);
    parts
}

fn unquote(value: &str) -> String {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value)
        .to_string()
}

/// OpenSSH's `match_pattern_list`: comma-separated glob patterns; a matching `!pattern` vetoes,
/// otherwise any matching pattern accepts.
pub(crate) fn match_pattern_list(value: &str, patterns: &str) -> bool {
    let mut matched = false;
    for pattern in patterns.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some(negated) = pattern.strip_prefix('!') {
            if glob_match(negated.as_bytes(), value.as_bytes()) {
                return false;
            }
        } else if glob_match(pattern.as_bytes(), value.as_bytes()) {
            matched = true;
        }
    }
    matched
}

/// `*` matches any run (including none), `?` exactly one byte; everything else literally.
fn glob_match(pattern: &[u8], value: &[u8]) -> bool {
    let (mut p, mut v) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while v < value.len() {
        match pattern.get(p) {
            Some(b'*') => {
                backtrack = Some((p, v));
                p += 1;
            }
            Some(&c) if c == b'?' || c == value[v] => {
                p += 1;
                v += 1;
            }
            _ => match backtrack {
                Some((star, consumed)) => {
                    p = star + 1;
                    v = consumed + 1;
                    backtrack = Some((star, consumed + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMRs3sCqmcX4XSo+6KzrnAO3iX6zW6wW0eVLSvU6zYh2";

    fn time(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn comments_and_blank_lines_are_ignored() {
        let signers =
            AllowedSigners::parse(&format!("# team\n\n   \nalice@example.com {KEY} laptop\n"))
                .unwrap();
        assert_eq!(signers.entries().len(), 1);
        assert_eq!(signers.entries()[0].principals, "alice@example.com");
        assert_eq!(signers.entries()[0].line, 4);
    }

    #[test]
    fn options_namespaces_and_validity_are_parsed() {
        let text = format!(
            r#"alice@example.com namespaces="git,file",valid-after="20260101Z",valid-before="20270101000000Z" {KEY}"#
        );
        let signers = AllowedSigners::parse(&text).unwrap();
        let entry = &signers.entries()[0];
        assert_eq!(entry.namespaces.as_deref(), Some("git,file"));
        assert_eq!(entry.valid_after, Some(time("2026-01-01T00:00:00Z")));
        assert_eq!(entry.valid_before, Some(time("2027-01-01T00:00:00Z")));
    }

    #[test]
    fn quoted_principals_are_unquoted() {
        let signers =
            AllowedSigners::parse(&format!(r#""alice@example.com,bob@example.com" {KEY}"#))
                .unwrap();
        assert_eq!(
            signers.entries()[0].principals,
            "alice@example.com,bob@example.com"
        );
    }

    #[test]
    fn namespace_restriction_excludes_other_namespaces() {
        let signers =
            AllowedSigners::parse(&format!(r#"alice@example.com namespaces="file" {KEY}"#))
                .unwrap();
        let key = signers.entries()[0].key.key_data().clone();
        assert_eq!(
            signers
                .matching(&key, "git", time("2026-06-01T00:00:00Z"))
                .count(),
            0
        );
        assert_eq!(
            signers
                .matching(&key, "file", time("2026-06-01T00:00:00Z"))
                .count(),
            1
        );
    }

    #[test]
    fn validity_window_is_enforced_at_the_given_time() {
        let text =
            format!(r#"alice@example.com valid-after="20260101Z",valid-before="20270101Z" {KEY}"#);
        let signers = AllowedSigners::parse(&text).unwrap();
        let key = signers.entries()[0].key.key_data().clone();
        assert_eq!(
            signers
                .matching(&key, "git", time("2025-12-31T23:59:59Z"))
                .count(),
            0
        );
        assert_eq!(
            signers
                .matching(&key, "git", time("2026-06-01T00:00:00Z"))
                .count(),
            1
        );
        assert_eq!(
            signers
                .matching(&key, "git", time("2027-01-02T00:00:00Z"))
                .count(),
            0
        );
    }

    #[test]
    fn cert_authority_lines_never_match_plain_keys() {
        let signers =
            AllowedSigners::parse(&format!("*@example.com cert-authority {KEY}")).unwrap();
        let key = signers.entries()[0].key.key_data().clone();
        assert_eq!(
            signers
                .matching(&key, "git", time("2026-06-01T00:00:00Z"))
                .count(),
            0
        );
    }

    #[test]
    fn malformed_line_fails_with_its_line_number() {
        let err = AllowedSigners::parse(&format!(
            "alice@example.com {KEY}\nbob@example.com ssh-ed25519 notbase64!\n"
        ))
        .unwrap_err();
        assert_eq!(err.line, 2);
    }

    #[test]
    fn unknown_option_is_an_error() {
        let err = AllowedSigners::parse(&format!("alice@example.com no-touch-required {KEY}"))
            .unwrap_err();
        assert!(err.why.contains("no-touch-required"), "{err}");
    }

    #[test]
    fn impossible_date_is_an_error() {
        assert!(parse_time("20261340Z").is_err());
        assert!(parse_time("2026").is_err());
    }

    #[test]
    fn pattern_list_supports_wildcards_and_negation() {
        assert!(match_pattern_list("alice@example.com", "*@example.com"));
        assert!(match_pattern_list(
            "alice@example.com",
            "bob@x,alice@example.co?"
        ));
        assert!(!match_pattern_list(
            "mallory@example.com",
            "*@example.com,!mallory@*"
        ));
        assert!(!match_pattern_list("alice@example.org", "*@example.com"));
        assert!(match_pattern_list("anything", "*"));
    }
}
