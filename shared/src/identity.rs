//! Who is asking: the requester of an admission request, and the patterns the
//! policy uses to name identities (the agent, exempt system components).
//!
//! Identity is the first thing the webhook decides on, so the matching rules
//! are deliberately small and literal: users by exact name or a `*` pattern
//! (`*` never crosses a `:`), groups by exact name only.

pub(crate) mod glob;

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::authentication::v1::UserInfo;
use serde::{Deserialize, Serialize};

use crate::names::SERVICE_ACCOUNT_USER_PREFIX;

/// Prefix of the groups Kubernetes gives every service account
/// (`system:serviceaccounts` and `system:serviceaccounts:<namespace>`).
const SERVICE_ACCOUNTS_GROUP: &str = "system:serviceaccounts";

/// The identity behind an admission request, copied out of the API server's
/// `UserInfo` so that the decision code deals in plain strings rather than in
/// optional Kubernetes fields.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Requester {
    /// The username; empty when the API server sent none.
    pub username: String,
    /// The user's uid, when the authenticator provides one (service accounts,
    /// some identity providers); recorded in the audit log.
    pub uid: Option<String>,
    /// The groups the user belongs to.
    pub groups: Vec<String>,
    /// Extra authenticator attributes (for bound service-account tokens: pod
    /// name, node name, credential id), kept for the audit log.
    pub extra: BTreeMap<String, Vec<String>>,
}

impl Requester {
    /// Copy the requester out of an admission request's `userInfo`.
    ///
    /// Missing fields become empty values: an identity without a username
    /// matches no user pattern, which is the safe outcome.
    pub fn from_user_info(info: &UserInfo) -> Self {
        Self {
            username: info.username.clone().unwrap_or_default(),
            uid: info.uid.clone(),
            groups: info.groups.clone().unwrap_or_default(),
            extra: info.extra.clone().unwrap_or_default(),
        }
    }

    /// The requester's service account as `(namespace, name)`, when the
    /// username has the form `system:serviceaccount:<namespace>:<name>`.
    pub fn service_account(&self) -> Option<(&str, &str)> {
        parse_service_account_user(&self.username)
    }

    /// Whether the requester belongs to `group` (exact name).
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}

/// Split a service account's username `system:serviceaccount:<ns>:<name>`
/// into `(ns, name)`; `None` for any other username.
///
/// Both parts must be non-empty and free of `:`, as the API server guarantees
/// for real service accounts, so a crafted username cannot pose as one.
pub fn parse_service_account_user(username: &str) -> Option<(&str, &str)> {
    let rest = username.strip_prefix(SERVICE_ACCOUNT_USER_PREFIX)?;
    let (namespace, name) = rest.split_once(':')?;
    if namespace.is_empty() || name.is_empty() || name.contains(':') {
        return None;
    }
    Some((namespace, name))
}

/// The username Kubernetes gives the service account `name` in `namespace`.
pub fn service_account_user(namespace: &str, name: &str) -> String {
    format!("{SERVICE_ACCOUNT_USER_PREFIX}{namespace}:{name}")
}

/// Why a user pattern was refused when the policy was loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// An empty pattern would be ambiguous ("nobody" or "everybody"?), so it
    /// is refused rather than guessed at.
    #[error("a user pattern must not be empty")]
    Empty,
    /// Leading or trailing whitespace is almost always a YAML slip and would
    /// silently match nobody.
    #[error("user pattern {0:?} has leading or trailing whitespace")]
    Whitespace(String),
    /// A pattern made only of wildcards (like `*:*`) matches almost anyone
    /// without naming anyone; only the explicit `*` may mean "everyone".
    #[error(
        "user pattern {0:?} is made only of wildcards; write \"*\" if you really mean every user, or name the users"
    )]
    OnlyWildcards(String),
}

/// A user name or a `*` pattern naming users, as written in the policy.
///
/// `*` matches any run of characters within one `:`-separated segment
/// (`system:serviceaccount:cert-manager:*`). The pattern `*` on its own is
/// the only way to match every user, and it has to be written out: an empty
/// pattern or one made only of wildcards is refused.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IdentityPattern(String);

impl IdentityPattern {
    /// Validate a pattern (see the type's docs for what is refused and why).
    pub fn new(pattern: impl Into<String>) -> Result<Self, PatternError> {
        let pattern = pattern.into();
        if pattern.trim().is_empty() {
            return Err(PatternError::Empty);
        }
        if pattern.trim() != pattern {
            return Err(PatternError::Whitespace(pattern));
        }
        if pattern != "*" && glob::is_only_wildcards(&pattern) {
            return Err(PatternError::OnlyWildcards(pattern));
        }
        Ok(Self(pattern))
    }

    /// A pattern spelled in this crate's source (the policy's defaults),
    /// taken as is; a test checks that every default passes [`Self::new`].
    pub(crate) fn builtin(pattern: &'static str) -> Self {
        Self(pattern.to_owned())
    }

    /// Like [`Self::builtin`], for a default built from parts.
    pub(crate) fn builtin_owned(pattern: String) -> Self {
        Self(pattern)
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the pattern contains a `*` (as opposed to naming one user).
    pub fn is_glob(&self) -> bool {
        glob::is_glob(&self.0)
    }

    /// Whether `username` is matched by this pattern.
    pub fn matches(&self, username: &str) -> bool {
        self.0 == "*" || glob::matches(&self.0, username)
    }
}

impl TryFrom<String> for IdentityPattern {
    type Error = PatternError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl TryFrom<&str> for IdentityPattern {
    type Error = PatternError;

    fn try_from(value: &str) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<IdentityPattern> for String {
    fn from(value: IdentityPattern) -> Self {
        value.0
    }
}

impl fmt::Display for IdentityPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which rule of an [`IdentitySet`] matched a requester, so that a decision
/// can say why it allowed something.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MatchedBy {
    /// The username matched this user pattern.
    User(IdentityPattern),
    /// The requester belongs to this group.
    Group(String),
}

impl fmt::Display for MatchedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MatchedBy::User(pattern) if pattern.is_glob() => {
                write!(f, "user pattern {:?}", pattern.as_str())
            }
            MatchedBy::User(pattern) => write!(f, "user {:?}", pattern.as_str()),
            MatchedBy::Group(group) => write!(f, "group {group:?}"),
        }
    }
}

/// A set of identities named by the policy: users (exact or `*` patterns)
/// and groups (exact names).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct IdentitySet {
    /// Users, by exact name or `*` pattern.
    pub users: Vec<IdentityPattern>,
    /// Groups, by exact name. Group wildcards are not offered: group names
    /// are few, and a wildcard over them is too easy to get wrong.
    pub groups: Vec<String>,
}

impl IdentitySet {
    /// The first rule (users first, then groups) that matches `requester`.
    pub fn matches(&self, requester: &Requester) -> Option<MatchedBy> {
        first_match(&self.users, &self.groups, requester)
    }

    /// Whether the service account `namespace`/`name` belongs to this set,
    /// either by its username or by the groups Kubernetes gives every
    /// service account (`system:serviceaccounts[:<namespace>]`).
    ///
    /// The webhook uses this to recognise the agent's own service account,
    /// whose token must not be minted by anyone else.
    pub fn covers_service_account(&self, namespace: &str, name: &str) -> bool {
        covers_service_account(&self.users, &self.groups, namespace, name)
    }

    /// Whether the set names nobody at all.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.groups.is_empty()
    }
}

/// Whether `users` or `groups` name the service account `namespace`/`name`
/// (see [`IdentitySet::covers_service_account`]); shared with sets built from
/// several lists.
pub(crate) fn covers_service_account<'a>(
    users: impl IntoIterator<Item = &'a IdentityPattern>,
    groups: impl IntoIterator<Item = &'a String>,
    namespace: &str,
    name: &str,
) -> bool {
    let username = service_account_user(namespace, name);
    let namespace_group = format!("{SERVICE_ACCOUNTS_GROUP}:{namespace}");
    users.into_iter().any(|pattern| pattern.matches(&username))
        || groups
            .into_iter()
            .any(|group| group == SERVICE_ACCOUNTS_GROUP || *group == namespace_group)
}

/// The first of `users` (patterns), then of `groups` (exact names), that
/// matches `requester`: the matching rule of every identity list in the
/// policy, shared so that sets built from several lists (built-in defaults
/// plus what the policy names) match exactly like an [`IdentitySet`].
pub(crate) fn first_match<'a>(
    users: impl IntoIterator<Item = &'a IdentityPattern>,
    groups: impl IntoIterator<Item = &'a String>,
    requester: &Requester,
) -> Option<MatchedBy> {
    users
        .into_iter()
        .find(|pattern| pattern.matches(&requester.username))
        .map(|pattern| MatchedBy::User(pattern.clone()))
        .or_else(|| {
            groups
                .into_iter()
                .find(|group| requester.in_group(group))
                .map(|group| MatchedBy::Group(group.clone()))
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn requester(username: &str, groups: &[&str]) -> Requester {
        Requester {
            username: username.to_owned(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            ..Requester::default()
        }
    }

    fn set(users: &[&str], groups: &[&str]) -> IdentitySet {
        IdentitySet {
            users: users
                .iter()
                .map(|u| IdentityPattern::new(*u).unwrap())
                .collect(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        }
    }

    #[test]
    fn requester_is_copied_from_user_info() {
        let info: UserInfo = serde_json::from_value(serde_json::json!({
            "username": "alice",
            "uid": "u-1",
            "groups": ["devs", "system:authenticated"],
            "extra": {"scopes": ["a", "b"]}
        }))
        .unwrap();
        let r = Requester::from_user_info(&info);
        assert_eq!(r.username, "alice");
        assert_eq!(r.uid.as_deref(), Some("u-1"));
        assert_eq!(r.groups, ["devs", "system:authenticated"]);
        assert_eq!(r.extra["scopes"], ["a", "b"]);
    }

    #[test]
    fn requester_from_empty_user_info_has_empty_fields() {
        let r = Requester::from_user_info(&UserInfo::default());
        assert_eq!(r, Requester::default());
    }

    #[test]
    fn service_account_is_parsed_from_the_username() {
        let r = requester(
            "system:serviceaccount:gitwarden-system:gitwarden-agent",
            &[],
        );
        assert_eq!(
            r.service_account(),
            Some(("gitwarden-system", "gitwarden-agent"))
        );
    }

    #[test]
    fn other_usernames_are_not_service_accounts() {
        for name in [
            "alice",
            "system:serviceaccount:",
            "system:serviceaccount:ns",
            "system:serviceaccount::name",
            "system:serviceaccount:ns:",
            "system:serviceaccount:ns:a:b",
            "system:serviceaccounts:ns",
        ] {
            assert_eq!(parse_service_account_user(name), None, "{name}");
        }
    }

    #[test]
    fn exact_user_pattern_matches_only_that_user() {
        let p = IdentityPattern::new("system:kube-scheduler").unwrap();
        assert!(p.matches("system:kube-scheduler"));
        assert!(!p.matches("system:kube-scheduler-2"));
        assert!(!p.is_glob());
    }

    #[test]
    fn namespace_glob_matches_every_service_account_of_that_namespace_only() {
        let p = IdentityPattern::new("system:serviceaccount:kube-system:*").unwrap();
        assert!(p.matches("system:serviceaccount:kube-system:replicaset-controller"));
        assert!(!p.matches("system:serviceaccount:kube-system-2:x"));
        assert!(!p.matches("system:serviceaccount:default:kube-system"));
        assert!(!p.matches("system:serviceaccount:kube-system:x:y"));
    }

    #[test]
    fn explicit_star_matches_every_user() {
        let p = IdentityPattern::new("*").unwrap();
        assert!(p.matches("alice"));
        assert!(p.matches("system:serviceaccount:a:b"));
        assert!(p.matches(""));
    }

    #[test]
    fn empty_pattern_is_refused() {
        assert_eq!(IdentityPattern::new(""), Err(PatternError::Empty));
        assert_eq!(IdentityPattern::new("  "), Err(PatternError::Empty));
    }

    #[test]
    fn pattern_with_surrounding_whitespace_is_refused() {
        assert!(matches!(
            IdentityPattern::new(" alice"),
            Err(PatternError::Whitespace(_))
        ));
    }

    #[test]
    fn wildcard_only_pattern_other_than_star_is_refused() {
        for p in ["**", "*:*", "*:*:*:*"] {
            assert!(
                matches!(IdentityPattern::new(p), Err(PatternError::OnlyWildcards(_))),
                "{p}"
            );
        }
    }

    #[test]
    fn pattern_deserialises_from_a_string_and_validates() {
        let p: IdentityPattern = serde_json::from_str("\"system:serviceaccount:a:*\"").unwrap();
        assert_eq!(p.as_str(), "system:serviceaccount:a:*");
        assert!(serde_json::from_str::<IdentityPattern>("\"\"").is_err());
    }

    #[test]
    fn set_reports_the_matching_user_pattern() {
        let s = set(&["system:serviceaccount:kube-system:*"], &["system:nodes"]);
        let m = s.matches(&requester("system:serviceaccount:kube-system:x", &[]));
        assert_eq!(
            m.map(|m| m.to_string()).as_deref(),
            Some("user pattern \"system:serviceaccount:kube-system:*\"")
        );
    }

    #[test]
    fn set_reports_the_matching_group() {
        let s = set(&["system:kube-scheduler"], &["system:nodes"]);
        let m = s.matches(&requester("system:node:n1", &["system:nodes"]));
        assert_eq!(m, Some(MatchedBy::Group("system:nodes".into())));
        assert_eq!(
            m.map(|m| m.to_string()).as_deref(),
            Some("group \"system:nodes\"")
        );
    }

    #[test]
    fn set_does_not_match_strangers() {
        let s = set(&["system:kube-scheduler"], &["system:nodes"]);
        assert_eq!(s.matches(&requester("alice", &["system:masters"])), None);
    }

    #[test]
    fn groups_match_exactly_not_by_prefix() {
        let s = set(&[], &["system:nodes"]);
        assert_eq!(s.matches(&requester("x", &["system:nodes-fake"])), None);
    }

    #[test]
    fn set_covers_its_service_account_by_username() {
        let s = set(
            &["system:serviceaccount:gitwarden-system:gitwarden-agent"],
            &[],
        );
        assert!(s.covers_service_account("gitwarden-system", "gitwarden-agent"));
        assert!(!s.covers_service_account("gitwarden-system", "gitwarden-webhook"));
    }

    #[test]
    fn set_covers_service_accounts_named_by_their_namespace_group() {
        let s = set(&[], &["system:serviceaccounts:gitwarden-system"]);
        assert!(s.covers_service_account("gitwarden-system", "anything"));
        assert!(!s.covers_service_account("default", "anything"));
    }

    #[test]
    fn set_rejects_unknown_fields() {
        let r = serde_json::from_value::<IdentitySet>(serde_json::json!({"user": ["a"]}));
        assert!(r.is_err());
    }
}
