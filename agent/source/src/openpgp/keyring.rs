//! The armored OpenPGP keyring: the public keys whose signatures make a commit applicable.

use std::path::Path;

use pgp::composed::{Deserializable, SignedPublicKey};

use crate::SourceError;

/// The line that opens an armored public key block.
const BEGIN: &str = "-----BEGIN PGP PUBLIC KEY BLOCK-----";

/// Public keys (certificates) read from an armored keyring file, such as
/// `gpg --armor --export-options export-minimal --export FPR…` writes.
///
/// A file may hold several armor blocks (exports of different people concatenated with `cat`)
/// and each block several keys. rpgp reads only the first block of a text, so the blocks are
/// split here and parsed one by one.
#[derive(Debug, Clone, Default)]
pub struct OpenPgpKeyring {
    certificates: Vec<SignedPublicKey>,
}

impl OpenPgpKeyring {
    /// Read and parse the file at `path`. Re-read at every verification, like the
    /// allowed-signers file, so an added or revoked key applies to the next fetch.
    pub fn read(path: &Path) -> Result<Self, SourceError> {
        let error = |why: String| SourceError::OpenPgpKeyring {
            path: path.to_path_buf(),
            why,
        };
        let text = std::fs::read_to_string(path).map_err(|err| error(err.to_string()))?;
        Self::parse(&text).map_err(error)
    }

    /// Parse armored public key blocks. Any block that fails to parse fails the whole file, as
    /// for allowed signers: silently dropping a key would turn a typo into refused commits
    /// without saying why, and a file with no key at all is surely a mistake.
    pub fn parse(text: &str) -> Result<Self, String> {
        let starts: Vec<usize> = text.match_indices(BEGIN).map(|(at, _)| at).collect();
        if starts.is_empty() {
            return Err(format!(
                "no armored public key block ({BEGIN}); export keys with gpg --armor --export"
            ));
        }
        let mut certificates = Vec::new();
        for (index, &start) in starts.iter().enumerate() {
            let end = starts.get(index + 1).copied().unwrap_or(text.len());
            let block_error =
                |err: pgp::errors::Error| format!("public key block {}: {err}", index + 1);
            let (keys, _headers) =
                SignedPublicKey::from_string_many(&text[start..end]).map_err(block_error)?;
            for key in keys {
                certificates.push(key.map_err(block_error)?);
            }
        }
        if certificates.is_empty() {
            return Err("the keyring holds no public key".into());
        }
        Ok(OpenPgpKeyring { certificates })
    }

    /// The keys, in file order.
    pub fn certificates(&self) -> &[SignedPublicKey] {
        &self.certificates
    }

    /// How many keys the file holds.
    pub fn len(&self) -> usize {
        self.certificates.len()
    }

    /// Whether the keyring holds no key (only the [`Default`] one: parsing refuses that).
    pub fn is_empty(&self) -> bool {
        self.certificates.is_empty()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn text_without_a_key_block_is_refused_with_a_hint() {
        let err = OpenPgpKeyring::parse("ssh-ed25519 AAAA alice\n").unwrap_err();
        assert!(err.contains("gpg --armor --export"), "{err}");
    }

    #[test]
    fn a_broken_block_is_refused_naming_it() {
        let text = format!("{BEGIN}\n\n!!!!\n-----END PGP PUBLIC KEY BLOCK-----\n");
        let err = OpenPgpKeyring::parse(&text).unwrap_err();
        assert!(err.starts_with("public key block 1:"), "{err}");
    }
}
