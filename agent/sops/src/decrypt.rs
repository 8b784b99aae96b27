//! A whole file: every document decrypted, the MAC checked over all of them.

use serde::Deserialize as _;
use sha2::{Digest, Sha512};

use crate::cipher::{self, ValueType};
use crate::error::SopsError;
use crate::keys::AgeKeys;
use crate::metadata::Metadata;
use crate::tree::Tree;

/// How the file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// YAML, one or more documents.
    Yaml,
    /// JSON, one document.
    Json,
}

/// What SOPS hashes first when only encrypted values are in the MAC
/// (`mac_only_encrypted`): SHA-256 of "sops".
const MAC_ONLY_ENCRYPTED_PREFIX: [u8; 32] = [
    0x8a, 0x3f, 0xd2, 0xad, 0x54, 0xce, 0x66, 0x52, 0x7b, 0x10, 0x34, 0xf3, 0xd1, 0x47, 0xbe, 0x0b,
    0x0b, 0x97, 0x5b, 0x3b, 0xf4, 0x4f, 0x72, 0xc6, 0xfd, 0xad, 0xec, 0x81, 0x76, 0xf2, 0x7d, 0x69,
];

/// Whether `text` is a SOPS-encrypted file: it holds a ciphertext and a
/// top-level `sops` entry. Cheap, so every file of a revision can be asked.
pub fn is_encrypted(text: &str) -> bool {
    text.contains("ENC[AES256_GCM,")
        && (text.lines().any(|l| l.starts_with("sops:")) || text.contains("\"sops\""))
}

/// Decrypts a SOPS file with `keys` and verifies its MAC; the documents,
/// in order, as JSON values (empty documents left out).
pub fn decrypt(
    text: &str,
    format: Format,
    keys: &AgeKeys,
) -> Result<Vec<serde_json::Value>, SopsError> {
    let mut documents = parse(text, format)?;
    // SOPS reads the metadata from the first document and strips the
    // `sops` entry from every one (it writes the same block into each).
    let mut block = None;
    for document in &mut documents {
        let taken = document.take("sops");
        if block.is_none() {
            block = taken;
        }
    }
    let metadata = Metadata::parse(&block.ok_or(SopsError::NoMetadata)?)?;
    let key = metadata.data_key(keys)?;
    let mut mac = Sha512::new();
    if metadata.mac_only_encrypted {
        mac.update(MAC_ONLY_ENCRYPTED_PREFIX);
    }
    let mut path = Vec::new();
    for document in &mut documents {
        walk(document, &mut path, &key, &metadata, Some(&mut mac))?;
    }
    let computed = hex::encode_upper(mac.finalize());
    let stored = cipher::decrypt(&metadata.mac, &key, &metadata.mac_aad()).map_err(|problem| {
        SopsError::Value {
            path: "sops:mac".to_string(),
            problem,
        }
    })?;
    if stored.text.as_str() != computed {
        return Err(SopsError::MacMismatch);
    }
    Ok(documents.into_iter().map(Tree::into_json).collect())
}

fn parse(text: &str, format: Format) -> Result<Vec<Tree>, SopsError> {
    let syntax = |e: serde_yaml_ng::Error| SopsError::Syntax {
        format: match format {
            Format::Yaml => "YAML",
            Format::Json => "JSON",
        },
        message: e.to_string(),
    };
    let mut documents = Vec::new();
    // JSON is read with the YAML parser too: it keeps keys in file order,
    // which the MAC depends on.
    for (index, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let value = serde_yaml_ng::Value::deserialize(document).map_err(syntax)?;
        match Tree::from_yaml(value)? {
            Tree::Null => {}
            tree @ Tree::Map(_) => documents.push(tree),
            _ => return Err(SopsError::NotAMapping(index + 1)),
        }
    }
    if format == Format::Json && documents.len() > 1 {
        return Err(SopsError::Unsupported("more than one JSON document".into()));
    }
    Ok(documents)
}

/// Decrypts the values of one object a renderer (kustomize) produced from a
/// SOPS-encrypted resource file, with `keys`, without checking the MAC: a
/// renderer may have changed plain fields (a namespace, a name prefix), so
/// the MAC no longer matches them. Call it only for an object whose source
/// file [`decrypt`] verified; every value is still authenticated by its
/// AES-GCM tag and path.
pub fn decrypt_rendered(
    object: serde_json::Value,
    keys: &AgeKeys,
) -> Result<serde_json::Value, SopsError> {
    let text = serde_json::to_string(&object).map_err(|e| SopsError::Syntax {
        format: "JSON",
        message: e.to_string(),
    })?;
    let mut documents = parse(&text, Format::Json)?;
    let Some(mut document) = documents.pop() else {
        return Err(SopsError::NoMetadata);
    };
    let metadata = Metadata::parse(&document.take("sops").ok_or(SopsError::NoMetadata)?)?;
    let key = metadata.data_key(keys)?;
    walk(&mut document, &mut Vec::new(), &key, &metadata, None)?;
    Ok(document.into_json())
}

/// Decrypts the values under `tree` in place and feeds the MAC, depth first
/// in file order as SOPS does. `path` holds the map keys down to `tree`
/// (list positions are not part of a path in SOPS).
fn walk(
    tree: &mut Tree,
    path: &mut Vec<String>,
    key: &[u8],
    metadata: &Metadata,
    mut mac: Option<&mut Sha512>,
) -> Result<(), SopsError> {
    match tree {
        Tree::Null => Ok(()),
        Tree::Map(entries) => {
            for (name, value) in entries.iter_mut() {
                path.push(name.clone());
                walk(value, path, key, metadata, mac.as_deref_mut())?;
                path.pop();
            }
            Ok(())
        }
        Tree::Seq(items) => {
            for item in items.iter_mut() {
                walk(item, path, key, metadata, mac.as_deref_mut())?;
            }
            Ok(())
        }
        leaf => {
            let encrypted = metadata.rule.encrypts(path);
            if encrypted {
                decrypt_leaf(leaf, path, key)?;
            }
            if let Some(mac) = mac
                && (encrypted || !metadata.mac_only_encrypted)
            {
                mac.update(leaf.mac_bytes());
            }
            Ok(())
        }
    }
}

fn decrypt_leaf(leaf: &mut Tree, path: &[String], key: &[u8]) -> Result<(), SopsError> {
    let value_error = |problem: String| SopsError::Value {
        path: path.join(":"),
        problem,
    };
    let Tree::Str(ciphertext) = leaf else {
        return Err(value_error(
            "is not encrypted although the file's rule says it must be".into(),
        ));
    };
    if ciphertext.is_empty() {
        // SOPS leaves empty strings as they are.
        return Ok(());
    }
    let aad = format!("{}:", path.join(":"));
    let plain = cipher::decrypt(ciphertext, key, &aad).map_err(value_error)?;
    let text = plain.text.as_str();
    let bad = |what: &str| value_error(format!("decrypts to a {what} SOPS cannot have written"));
    *leaf = match plain.kind {
        ValueType::Str | ValueType::Time | ValueType::Bytes => Tree::Str(text.to_string()),
        ValueType::Int => Tree::Int(text.parse().map_err(|_| bad("int"))?),
        ValueType::Float => Tree::Float(text.parse().map_err(|_| bad("float"))?),
        ValueType::Bool => Tree::Bool(match text {
            "True" | "true" | "TRUE" | "t" | "T" | "1" => true,
            "False" | "false" | "FALSE" | "f" | "F" | "0" => false,
            _ => return Err(bad("bool")),
        }),
    };
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_manifest_is_not_taken_for_an_encrypted_one() {
        assert!(!is_encrypted(
            "apiVersion: v1\nkind: Secret\nstringData:\n  sops: x\n"
        ));
        assert!(is_encrypted(
            "a: ENC[AES256_GCM,data:x,iv:y,tag:z,type:str]\nsops:\n  mac: m\n"
        ));
    }

    #[test]
    fn a_file_without_metadata_is_refused_before_any_key_is_tried() {
        use age::secrecy::ExposeSecret as _;
        let identity = age::x25519::Identity::generate().to_string();
        let keys = AgeKeys::parse(identity.expose_secret()).unwrap();
        let error = decrypt(
            "a: ENC[AES256_GCM,data:x,iv:y,tag:z,type:str]\n",
            Format::Yaml,
            &keys,
        )
        .unwrap_err();
        assert_eq!(error, SopsError::NoMetadata);
    }
}
