//! SOPS-encrypted files of a revision, decrypted in memory into documents.
//!
//! A file that holds SOPS ciphertexts and a `sops` block is decrypted with
//! the agent's age keys (`gitwarden-sops` checks the MAC); one that cannot be
//! decrypted fails the revision with an error naming the file. The
//! plain-text values live only in the returned documents.

use gitwarden_sops::{AgeKeys, Format};

use crate::documents::split_documents;
use crate::error::LoadError;
use crate::location::Location;
use crate::raw::ParsedDocument;

/// Decrypts `text` (the file `path`) into `out`, or records why it cannot.
pub(crate) fn parse(
    path: &str,
    text: &str,
    is_json: bool,
    keys: Option<&AgeKeys>,
    out: &mut Vec<ParsedDocument>,
    errors: &mut Vec<LoadError>,
) {
    let file = Location::new(path, 1);
    let Some(keys) = keys else {
        errors.push(LoadError::new(
            file,
            "the file is SOPS-encrypted, but the agent has no age key to decrypt it \
             (--sops-age-key-file)",
        ));
        return;
    };
    let format = if is_json { Format::Json } else { Format::Yaml };
    let documents = match gitwarden_sops::decrypt(text, format, keys) {
        Ok(documents) => documents,
        Err(error) => {
            errors.push(LoadError::new(file, format!("SOPS: {error}")));
            return;
        }
    };
    // Each document keeps the line it starts on in the encrypted file, when
    // the documents can be matched one to one.
    let lines: Vec<usize> = if is_json {
        vec![1]
    } else {
        split_documents(text)
            .iter()
            .map(|doc| doc.content_line)
            .collect()
    };
    let lines_known = lines.len() == documents.len();
    for (index, value) in documents.into_iter().enumerate() {
        let line = if lines_known { lines[index] } else { 1 };
        out.push(ParsedDocument {
            location: Location::new(path, line),
            value,
            item_lines: Vec::new(),
            encrypted: true,
        });
    }
}
