//! Which values of a file SOPS encrypted: all of them, or those its one
//! rule (`encrypted_regex`, `unencrypted_suffix`, …) selects by path.

use regex::Regex;

/// The file's encryption rule.
pub(crate) enum Rule {
    /// Values whose path has a key ending in this suffix stay plain (the
    /// default, `_unencrypted`).
    UnencryptedSuffix(String),
    /// Only values whose path has a key ending in this suffix are encrypted.
    EncryptedSuffix(String),
    /// Values whose path has a key matching this stay plain.
    UnencryptedRegex(Regex),
    /// Only values whose path has a key matching this are encrypted (Flux's
    /// `^(data|stringData)$`).
    EncryptedRegex(Regex),
}

impl Rule {
    /// Whether the value at `path` (map keys from the root) is encrypted.
    pub(crate) fn encrypts(&self, path: &[String]) -> bool {
        match self {
            Rule::UnencryptedSuffix(s) => !path.iter().any(|k| k.ends_with(s.as_str())),
            Rule::EncryptedSuffix(s) => path.iter().any(|k| k.ends_with(s.as_str())),
            Rule::UnencryptedRegex(r) => !path.iter().any(|k| r.is_match(k)),
            Rule::EncryptedRegex(r) => path.iter().any(|k| r.is_match(k)),
        }
    }
}
