//! Which namespaces gitwarden protects.
//!
//! By default every namespace is protected except the three that Kubernetes
//! itself writes to all the time. Cluster-scoped objects are always in scope:
//! they are not in any namespace a policy could leave out.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::identity::glob;

/// A namespace name or a `*` pattern over namespace names (`team-*`, `*`).
///
/// Only lower-case letters, digits, `-` and `*` are accepted: that is every
/// character a namespace name can hold, so anything else is a typo that would
/// silently match nothing.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NamespacePattern(String);

/// Why a namespace pattern was refused when the policy was loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NamespacePatternError {
    /// An empty pattern would match nothing and hide a mistake.
    #[error("a namespace pattern must not be empty")]
    Empty,
    /// A character no namespace name can contain.
    #[error(
        "namespace pattern {pattern:?} contains {character:?}; namespace names hold only a-z, 0-9 and '-' (and patterns '*')"
    )]
    InvalidCharacter {
        /// The pattern as written.
        pattern: String,
        /// The first offending character.
        character: char,
    },
}

impl NamespacePattern {
    /// Validate a pattern (see the type's docs).
    pub fn new(pattern: impl Into<String>) -> Result<Self, NamespacePatternError> {
        let pattern = pattern.into();
        if pattern.is_empty() {
            return Err(NamespacePatternError::Empty);
        }
        if let Some(character) = pattern
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '*'))
        {
            return Err(NamespacePatternError::InvalidCharacter { pattern, character });
        }
        Ok(Self(pattern))
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `namespace` is matched by this pattern.
    pub fn matches(&self, namespace: &str) -> bool {
        glob::matches(&self.0, namespace)
    }
}

impl TryFrom<String> for NamespacePattern {
    type Error = NamespacePatternError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<NamespacePattern> for String {
    fn from(value: NamespacePattern) -> Self {
        value.0
    }
}

impl fmt::Display for NamespacePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The namespaces in which changes must come from git.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct NamespaceScope {
    /// Namespaces that are protected (default: `*`, all of them).
    pub protected: Vec<NamespacePattern>,
    /// Namespaces left out even when `protected` matches them (default: the
    /// Kubernetes system namespaces, which its own components manage).
    pub exempt: Vec<NamespacePattern>,
}

impl Default for NamespaceScope {
    fn default() -> Self {
        let patterns = |names: &[&str]| {
            names
                .iter()
                .map(|name| NamespacePattern((*name).to_owned()))
                .collect()
        };
        Self {
            protected: patterns(&["*"]),
            exempt: patterns(&["kube-system", "kube-public", "kube-node-lease"]),
        }
    }
}

impl NamespaceScope {
    /// Whether objects in `namespace` are protected: matched by `protected`
    /// and not by `exempt`. Callers treat cluster-scoped objects (no
    /// namespace) as protected without asking.
    pub fn protects(&self, namespace: &str) -> bool {
        self.protected.iter().any(|p| p.matches(namespace))
            && !self.exempt.iter().any(|p| p.matches(namespace))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn scope(protected: &[&str], exempt: &[&str]) -> NamespaceScope {
        let patterns = |names: &[&str]| {
            names
                .iter()
                .map(|n| NamespacePattern::new(*n).unwrap())
                .collect()
        };
        NamespaceScope {
            protected: patterns(protected),
            exempt: patterns(exempt),
        }
    }

    #[test]
    fn default_scope_protects_every_namespace_but_the_kubernetes_ones() {
        let s = NamespaceScope::default();
        assert!(s.protects("default"));
        assert!(s.protects("gitwarden-system"));
        assert!(!s.protects("kube-system"));
        assert!(!s.protects("kube-public"));
        assert!(!s.protects("kube-node-lease"));
    }

    #[test]
    fn only_namespaces_matched_by_protected_are_protected() {
        let s = scope(&["team-*"], &[]);
        assert!(s.protects("team-a"));
        assert!(!s.protects("sandbox"));
    }

    #[test]
    fn exempt_wins_over_protected() {
        let s = scope(&["*"], &["sandbox-*"]);
        assert!(!s.protects("sandbox-alice"));
        assert!(s.protects("shop"));
    }

    #[test]
    fn patterns_with_impossible_characters_are_refused() {
        assert!(matches!(
            NamespacePattern::new("Kube-System"),
            Err(NamespacePatternError::InvalidCharacter { character: 'K', .. })
        ));
        assert!(NamespacePattern::new("a b").is_err());
        assert_eq!(NamespacePattern::new(""), Err(NamespacePatternError::Empty));
    }
}
