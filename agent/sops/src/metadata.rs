//! The `sops` block: the wrapped data keys, the rule, the MAC.

use std::io::Read as _;

use zeroize::Zeroizing;

use crate::error::SopsError;
use crate::keys::AgeKeys;
use crate::rules::Rule;
use crate::tree::Tree;

/// What the `sops` block says.
pub(crate) struct Metadata {
    /// Armored age files, each wrapping the data key for one recipient.
    age: Vec<(String, String)>,
    pub rule: Rule,
    pub mac_only_encrypted: bool,
    pub mac: String,
    pub last_modified: String,
}

/// Backends gitwarden does not decrypt with; a file using only these gets a clear error.
const OTHER_BACKENDS: &[&str] = &["pgp", "kms", "gcp_kms", "azure_kv", "hc_vault", "hckms"];

impl Metadata {
    pub(crate) fn parse(block: &Tree) -> Result<Metadata, SopsError> {
        let Tree::Map(_) = block else {
            return Err(SopsError::NoMetadata);
        };
        if block.get("key_groups").is_some() || block.get("shamir_threshold").is_some() {
            return Err(SopsError::Unsupported(
                "key groups (Shamir secret sharing); encrypt for age recipients directly".into(),
            ));
        }
        for comment_rule in ["encrypted_comment_regex", "unencrypted_comment_regex"] {
            if block.str(comment_rule).is_some() {
                return Err(SopsError::Unsupported(format!("the {comment_rule} rule")));
            }
        }
        let regex = |name: &str, text: &str| {
            regex::Regex::new(text).map_err(|e| SopsError::Metadata(format!("{name}: {e}")))
        };
        let mut rules = Vec::new();
        if let Some(s) = block.str("unencrypted_suffix") {
            rules.push(Rule::UnencryptedSuffix(s.to_string()));
        }
        if let Some(s) = block.str("encrypted_suffix") {
            rules.push(Rule::EncryptedSuffix(s.to_string()));
        }
        if let Some(s) = block.str("unencrypted_regex") {
            rules.push(Rule::UnencryptedRegex(regex("unencrypted_regex", s)?));
        }
        if let Some(s) = block.str("encrypted_regex") {
            rules.push(Rule::EncryptedRegex(regex("encrypted_regex", s)?));
        }
        if rules.len() > 1 {
            return Err(SopsError::Metadata("more than one encryption rule".into()));
        }
        let rule = rules
            .pop()
            .unwrap_or_else(|| Rule::UnencryptedSuffix("_unencrypted".to_string()));
        let mut age = Vec::new();
        if let Some(Tree::Seq(entries)) = block.get("age") {
            for entry in entries {
                if let (Some(recipient), Some(enc)) = (entry.str("recipient"), entry.str("enc")) {
                    age.push((recipient.to_string(), enc.to_string()));
                }
            }
        }
        if age.is_empty() {
            let others: Vec<&str> = OTHER_BACKENDS
                .iter()
                .copied()
                .filter(|b| matches!(block.get(b), Some(Tree::Seq(s)) if !s.is_empty()))
                .collect();
            return Err(SopsError::Unsupported(if others.is_empty() {
                "no age recipient".to_string()
            } else {
                format!(
                    "encrypted for {} only; gitwarden decrypts age recipients",
                    others.join(", ")
                )
            }));
        }
        let required = |name: &str| {
            block
                .str(name)
                .map(str::to_string)
                .ok_or_else(|| SopsError::Metadata(format!("no {name}")))
        };
        Ok(Metadata {
            age,
            rule,
            mac_only_encrypted: matches!(block.get("mac_only_encrypted"), Some(Tree::Bool(true))),
            mac: required("mac")?,
            last_modified: required("lastmodified")?,
        })
    }

    /// Unwraps the 32-byte data key with the first of `keys` that is a recipient.
    pub(crate) fn data_key(&self, keys: &AgeKeys) -> Result<Zeroizing<Vec<u8>>, SopsError> {
        for (_, armored) in &self.age {
            let Ok(decryptor) =
                age::Decryptor::new(age::armor::ArmoredReader::new(armored.as_bytes()))
            else {
                continue;
            };
            let Ok(mut reader) = decryptor.decrypt(keys.identities()) else {
                continue;
            };
            let mut key = Zeroizing::new(Vec::new());
            if reader.read_to_end(&mut key).is_ok() && key.len() == 32 {
                return Ok(key);
            }
        }
        Err(SopsError::NoMatchingKey {
            recipients: self
                .age
                .iter()
                .map(|(r, _)| r.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// SOPS authenticates the MAC with `lastmodified` in RFC 3339 with
    /// whole seconds and `Z` for UTC, as Go formats it.
    pub(crate) fn mac_aad(&self) -> String {
        let text = self.last_modified.as_str();
        let (main, offset) = match text.find(['Z', 'z']) {
            Some(i) => (&text[..i], "Z"),
            None => match text.rfind(['+', '-']).filter(|i| *i > 10) {
                Some(i) => (&text[..i], &text[i..]),
                None => (text, ""),
            },
        };
        let main = main.split('.').next().unwrap_or(main);
        let offset = if offset == "+00:00" || offset == "-00:00" {
            "Z"
        } else {
            offset
        };
        format!("{main}{offset}")
    }
}
