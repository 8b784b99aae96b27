//! The agent's age identities, read from a key file (age-keygen's format,
//! the same a Flux user keeps in the `sops-age` Secret).

use std::path::Path;
use std::str::FromStr;

/// The X25519 identities that may unwrap a file's data key.
pub struct AgeKeys {
    identities: Vec<age::x25519::Identity>,
}

impl std::fmt::Debug for AgeKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        write!(f, "AgeKeys({} identities)", self.identities.len())
    }
}

impl AgeKeys {
    /// Parses a key file: one `AGE-SECRET-KEY-1…` per line, `#` comments and
    /// blank lines skipped (age-keygen writes `# created:` and `# public key:`).
    pub fn parse(text: &str) -> Result<AgeKeys, String> {
        let mut identities = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let identity = age::x25519::Identity::from_str(line)
                .map_err(|_| format!("line {}: not an age X25519 secret key", index + 1))?;
            identities.push(identity);
        }
        if identities.is_empty() {
            return Err("no age secret key in it".to_string());
        }
        Ok(AgeKeys { identities })
    }

    /// Reads and parses a key file (re-read at every sync, so a rotated key
    /// in a mounted Secret takes effect without a restart).
    pub fn read(path: &Path) -> Result<AgeKeys, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read age key file {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("age key file {}: {e}", path.display()))
    }

    /// The public recipients (`age1…`), for messages.
    pub fn recipients(&self) -> Vec<String> {
        self.identities
            .iter()
            .map(|i| i.to_public().to_string())
            .collect()
    }

    pub(crate) fn identities(&self) -> impl Iterator<Item = &dyn age::Identity> {
        self.identities.iter().map(|i| i as &dyn age::Identity)
    }
}
