//! Objects a renderer (kustomize) produced, handed to the loader beside the
//! plain files: they are validated like every other object, and a
//! SOPS-encrypted one is decrypted once its source file's MAC checks out.

use gitwarden_sops::AgeKeys;
use serde_json::Value;

use crate::error::LoadError;
use crate::location::Location;
use crate::raw::ParsedDocument;

/// One rendered object with where it came from. Serialisable, so a render
/// of a commit can be kept and reused (it is a function of the commit).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Rendered {
    /// Its resource file and line, and the kustomization that built it.
    pub location: Location,
    /// The object as rendered (build annotations already removed).
    pub value: Value,
    /// The text of its resource file as committed, when the object carries
    /// SOPS metadata: the file's MAC is checked on it, since the renderer
    /// may have changed the object's plain fields.
    pub source: Option<String>,
}

/// Turns `rendered` into documents for validation, decrypting SOPS objects.
pub(crate) fn documents(
    rendered: Vec<Rendered>,
    keys: Option<&AgeKeys>,
    out: &mut Vec<ParsedDocument>,
    errors: &mut Vec<LoadError>,
) {
    for object in rendered {
        if object.value.get("sops").is_none() {
            out.push(ParsedDocument {
                location: object.location,
                value: object.value,
                item_lines: Vec::new(),
                encrypted: false,
            });
            continue;
        }
        match decrypt(&object, keys) {
            Ok(value) => out.push(ParsedDocument {
                location: object.location,
                value,
                item_lines: Vec::new(),
                encrypted: true,
            }),
            Err(message) => errors.push(LoadError::new(object.location, message)),
        }
    }
}

fn decrypt(object: &Rendered, keys: Option<&AgeKeys>) -> Result<Value, String> {
    let keys = keys.ok_or(
        "the object is SOPS-encrypted, but the agent has no age key to decrypt it \
         (--sops-age-key-file)",
    )?;
    let source = object
        .source
        .as_deref()
        .ok_or("the object carries SOPS metadata but does not come from a SOPS-encrypted file")?;
    let format = if object.location.file.to_ascii_lowercase().ends_with(".json") {
        gitwarden_sops::Format::Json
    } else {
        gitwarden_sops::Format::Yaml
    };
    gitwarden_sops::decrypt(source, format, keys).map_err(|e| format!("SOPS: {e}"))?;
    gitwarden_sops::decrypt_rendered(object.value.clone(), keys).map_err(|e| format!("SOPS: {e}"))
}
