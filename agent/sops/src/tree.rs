//! The document tree SOPS works on: maps keep their order, because the MAC
//! is computed over values in file order (serde_json's map would sort them).

use crate::error::SopsError;

/// A YAML or JSON value, maps in file order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tree {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Tree>),
    Map(Vec<(String, Tree)>),
}

impl Tree {
    /// From a parsed YAML (or JSON, a subset) value; keys must be strings, as in SOPS.
    pub(crate) fn from_yaml(value: serde_yaml_ng::Value) -> Result<Tree, SopsError> {
        use serde_yaml_ng::Value as Y;
        Ok(match value {
            Y::Null => Tree::Null,
            Y::Bool(b) => Tree::Bool(b),
            Y::Number(n) => match n.as_i64() {
                Some(i) => Tree::Int(i),
                None => Tree::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            Y::String(s) => Tree::Str(s),
            Y::Sequence(items) => Tree::Seq(
                items
                    .into_iter()
                    .map(Tree::from_yaml)
                    .collect::<Result<_, _>>()?,
            ),
            Y::Mapping(map) => Tree::Map(
                map.into_iter()
                    .map(|(k, v)| match k {
                        Y::String(k) => Ok((k, Tree::from_yaml(v)?)),
                        _ => Err(SopsError::Unsupported(
                            "a map key that is not a string".into(),
                        )),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Y::Tagged(tagged) => Tree::from_yaml(tagged.value)?,
        })
    }

    /// The value as JSON, for the manifest loader.
    pub(crate) fn into_json(self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Tree::Null => J::Null,
            Tree::Bool(b) => J::Bool(b),
            Tree::Int(i) => J::from(i),
            Tree::Float(f) => serde_json::Number::from_f64(f).map_or(J::Null, J::Number),
            Tree::Str(s) => J::String(s),
            Tree::Seq(items) => J::Array(items.into_iter().map(Tree::into_json).collect()),
            Tree::Map(map) => J::Object(map.into_iter().map(|(k, v)| (k, v.into_json())).collect()),
        }
    }

    /// The bytes SOPS hashes for a scalar (Go's formatting: `True`, `+Inf`).
    pub(crate) fn mac_bytes(&self) -> Vec<u8> {
        match self {
            Tree::Str(s) => s.as_bytes().to_vec(),
            Tree::Int(i) => i.to_string().into_bytes(),
            Tree::Bool(true) => b"True".to_vec(),
            Tree::Bool(false) => b"False".to_vec(),
            Tree::Float(f) if f.is_nan() => b"NaN".to_vec(),
            Tree::Float(f) if f.is_infinite() && *f > 0.0 => b"+Inf".to_vec(),
            Tree::Float(f) if f.is_infinite() => b"-Inf".to_vec(),
            Tree::Float(f) => format!("{f}").into_bytes(),
            Tree::Null | Tree::Seq(_) | Tree::Map(_) => Vec::new(),
        }
    }

    /// Removes and returns the entry `key` of a map.
    pub(crate) fn take(&mut self, key: &str) -> Option<Tree> {
        let Tree::Map(map) = self else { return None };
        let index = map.iter().position(|(k, _)| k == key)?;
        Some(map.remove(index).1)
    }

    /// The entry `key` of a map.
    pub(crate) fn get(&self, key: &str) -> Option<&Tree> {
        let Tree::Map(map) = self else { return None };
        map.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The string entry `key` of a map, when present and not empty.
    pub(crate) fn str(&self, key: &str) -> Option<&str> {
        match self.get(key) {
            Some(Tree::Str(s)) if !s.is_empty() => Some(s),
            _ => None,
        }
    }
}
