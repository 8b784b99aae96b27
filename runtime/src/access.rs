//! Who may read gitwarden's own HTTP endpoints (the webhook's `GET /audit`,
//! the agent's `GET /status`), decided the way kube-rbac-proxy and
//! controller-runtime's metrics filter decide it: the caller presents its own
//! Kubernetes bearer token, a **TokenReview** says who holds it, and a
//! **SubjectAccessReview** asks RBAC whether that identity may `get` the
//! non-resource URL (`nonResourceURLs: ["/audit"]`, `verbs: ["get"]`).
//!
//! Results are cached briefly (10 s by default, a bounded number of entries),
//! failed authentications too, so a burst of requests costs the API server
//! one review per token; tokens not seen before are reviewed at a bounded
//! rate (a token bucket), so a stream of garbage tokens cannot turn into an
//! unbounded stream of TokenReviews. Tokens are kept only as SHA-256 digests.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, UserInfo};
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::Api;
use kube::api::PostParams;
use sha2::{Digest, Sha256};

/// The header that carries the caller's bearer token through the API
/// server's service proxy, which strips `Authorization` once it has
/// authenticated the request itself. Read only when `Authorization` is absent;
/// the token it carries is reviewed exactly like one in `Authorization`.
pub const FORWARDED_AUTHORIZATION: &str = "x-gitwarden-authorization";

/// The caller's credential headers exactly as received (`Authorization` and
/// [`FORWARDED_AUTHORIZATION`], every value), for a request made on the
/// caller's behalf to another replica, which reviews them itself: passing
/// them on never widens who may read.
pub fn credential_headers(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for name in [
        axum::http::header::AUTHORIZATION,
        axum::http::HeaderName::from_static(FORWARDED_AUTHORIZATION),
    ] {
        for value in headers.get_all(&name) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// Longest token worth a TokenReview (service-account JWTs are ~1 KiB, OIDC
/// ID tokens a few); anything longer is refused without asking.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Whether the caller sent header `name` with `value` (case and surrounding
/// spaces ignored): how a replica is asked to answer for itself only (the
/// agent's `/status` and the webhook's `/audit` scope headers), which stops
/// it asking its peers in turn.
pub fn asks_replica_only(headers: &HeaderMap, name: &str, value: &str) -> bool {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(value))
}

/// The caller's bearer token: `Authorization: Bearer …`, else
/// [`FORWARDED_AUTHORIZATION`]`: Bearer …`.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    crate::bearer::from_headers(headers).or_else(|| {
        headers
            .get(FORWARDED_AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
    })
}

/// Why a caller was not let in; each maps to one HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No bearer token at all.
    #[error(
        "GET {path} needs a bearer token (Authorization: Bearer …): your own Kubernetes token, which must be allowed to get the non-resource URL {path}"
    )]
    NoToken {
        /// The endpoint.
        path: String,
    },
    /// The TokenReview did not authenticate the token.
    #[error("the bearer token is not valid: {0}")]
    Unauthenticated(String),
    /// Authenticated, but RBAC does not allow it.
    #[error(
        "{user:?} may not {verb} {path}{reason}: bind a ClusterRole with nonResourceURLs [\"{path}\"] and verbs [\"{verb}\"] (deploy/base ships gitwarden-{role}-reader)"
    )]
    Forbidden {
        /// Who the token belongs to.
        user: String,
        /// The verb asked for.
        verb: String,
        /// The endpoint.
        path: String,
        /// The authorizer's reason, `: …`, or empty.
        reason: String,
        /// `audit` or `status`, naming the shipped ClusterRole.
        role: String,
    },
    /// Too many tokens not seen before, too fast.
    #[error("too many new bearer tokens to review; retry in a few seconds")]
    Throttled,
    /// The API server could not be asked.
    #[error("checking the caller with the API server: {0}")]
    Unavailable(String),
}

impl Refusal {
    /// The HTTP status that says it.
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::NoToken { .. } | Refusal::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Refusal::Forbidden { .. } => StatusCode::FORBIDDEN,
            Refusal::Throttled => StatusCode::TOO_MANY_REQUESTS,
            Refusal::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Whether the answer may be cached: a definite "no", not a failure to ask.
    fn cacheable(&self) -> bool {
        matches!(
            self,
            Refusal::Unauthenticated(_) | Refusal::Forbidden { .. }
        )
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut response = (self.status(), self.to_string()).into_response();
        if self.status() == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// How long answers are kept, how many, and how fast new tokens are reviewed.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How long a review's answer (yes or no) is reused.
    pub ttl: Duration,
    /// Entries per cache at most; when full, expired ones go, then all.
    pub max_entries: usize,
    /// TokenReviews of tokens not in the cache, per second, sustained.
    pub reviews_per_second: f64,
    /// … and in a burst.
    pub burst: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            ttl: Duration::from_secs(10),
            max_entries: 4096,
            reviews_per_second: 20.0,
            burst: 40.0,
        }
    }
}

type Digest32 = [u8; 32];

struct Cache<T> {
    entries: HashMap<Digest32, (Instant, T)>,
}

impl<T: Clone> Cache<T> {
    fn get(&self, key: &Digest32, now: Instant) -> Option<T> {
        self.entries
            .get(key)
            .filter(|(expires, _)| *expires > now)
            .map(|(_, v)| v.clone())
    }

    fn put(&mut self, key: Digest32, value: T, limits: &Limits, now: Instant) {
        if self.entries.len() >= limits.max_entries {
            self.entries.retain(|_, (expires, _)| *expires > now);
            if self.entries.len() >= limits.max_entries {
                self.entries.clear();
            }
        }
        self.entries.insert(key, (now + limits.ttl, value));
    }
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

struct Inner {
    client: kube::Client,
    limits: Limits,
    authn: Mutex<Cache<Result<UserInfo, Refusal>>>,
    authz: Mutex<Cache<Result<(), Refusal>>>,
    bucket: Mutex<Bucket>,
}

/// TokenReview and SubjectAccessReview against the API server, cached.
#[derive(Clone)]
pub struct Reviewer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Reviewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reviewer")
            .field("limits", &self.inner.limits)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Reviewer {
    /// A reviewer asking through `client` (whose identity needs `create` on
    /// `tokenreviews` and `subjectaccessreviews`), with the default limits.
    pub fn new(client: kube::Client) -> Self {
        Self::with_limits(client, Limits::default())
    }

    /// A reviewer with explicit limits.
    pub fn with_limits(client: kube::Client, limits: Limits) -> Self {
        Reviewer {
            inner: Arc::new(Inner {
                client,
                limits,
                authn: Mutex::new(Cache {
                    entries: HashMap::new(),
                }),
                authz: Mutex::new(Cache {
                    entries: HashMap::new(),
                }),
                bucket: Mutex::new(Bucket {
                    tokens: limits.burst,
                    last: Instant::now(),
                }),
            }),
        }
    }

    fn take_review_permit(&self) -> bool {
        let limits = &self.inner.limits;
        let mut bucket = lock(&self.inner.bucket);
        let now = Instant::now();
        let refill = now.duration_since(bucket.last).as_secs_f64() * limits.reviews_per_second;
        bucket.tokens = (bucket.tokens + refill).min(limits.burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Who holds `token`, by a TokenReview (cached, rate-limited for tokens
    /// not seen within the cache's time).
    pub async fn authenticate(&self, token: &str) -> Result<UserInfo, Refusal> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Refusal::Unauthenticated("the token is too long".to_owned()));
        }
        let key: Digest32 = Sha256::digest(token.as_bytes()).into();
        if let Some(answer) = lock(&self.inner.authn).get(&key, Instant::now()) {
            return answer;
        }
        if !self.take_review_permit() {
            tracing::warn!("too many new bearer tokens: TokenReview throttled");
            return Err(Refusal::Throttled);
        }
        let answer = token_review(self.inner.client.clone(), token).await;
        if answer.as_ref().err().is_none_or(Refusal::cacheable) {
            lock(&self.inner.authn).put(key, answer.clone(), &self.inner.limits, Instant::now());
        }
        answer
    }

    /// Whether `user` may `verb` the non-resource URL `path`, by a
    /// SubjectAccessReview (cached). `role` names the shipped ClusterRole in
    /// the refusal (`audit`, `status`).
    pub async fn authorize(
        &self,
        user: &UserInfo,
        verb: &str,
        path: &str,
        role: &str,
    ) -> Result<(), Refusal> {
        let mut hasher = Sha256::new();
        hasher.update(serde_json::to_vec(user).unwrap_or_default());
        hasher.update([0]);
        hasher.update(verb.as_bytes());
        hasher.update([0]);
        hasher.update(path.as_bytes());
        let key: Digest32 = hasher.finalize().into();
        if let Some(answer) = lock(&self.inner.authz).get(&key, Instant::now()) {
            return answer;
        }
        let answer = subject_access_review(self.inner.client.clone(), user, verb, path, role).await;
        if answer.as_ref().err().is_none_or(Refusal::cacheable) {
            lock(&self.inner.authz).put(key, answer.clone(), &self.inner.limits, Instant::now());
        }
        answer
    }

    /// Authenticates the request's bearer token and authorizes its holder to
    /// `verb` `path`; the holder's user name when allowed.
    pub async fn check(
        &self,
        headers: &HeaderMap,
        verb: &str,
        path: &str,
        role: &str,
    ) -> Result<String, Refusal> {
        let token = bearer(headers).ok_or_else(|| Refusal::NoToken {
            path: path.to_owned(),
        })?;
        let user = self.authenticate(token).await?;
        self.authorize(&user, verb, path, role).await?;
        Ok(user.username.unwrap_or_default())
    }
}

/// One TokenReview, uncached: the helper every token check goes through.
pub async fn token_review(client: kube::Client, token: &str) -> Result<UserInfo, Refusal> {
    let review = TokenReview {
        spec: TokenReviewSpec {
            token: token.to_owned(),
            audiences: None,
        },
        ..TokenReview::default()
    };
    let reviewed = Api::<TokenReview>::all(client)
        .create(&PostParams::default(), &review)
        .await
        .map_err(|e| Refusal::Unavailable(format!("TokenReview: {}", crate::errors::chain(&e))))?;
    let status = reviewed.status.unwrap_or_default();
    if status.authenticated != Some(true) {
        return Err(Refusal::Unauthenticated(
            status
                .error
                .filter(|e| !e.is_empty())
                .unwrap_or_else(|| "not authenticated".to_owned()),
        ));
    }
    Ok(status.user.unwrap_or_default())
}

async fn subject_access_review(
    client: kube::Client,
    user: &UserInfo,
    verb: &str,
    path: &str,
    role: &str,
) -> Result<(), Refusal> {
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: user.username.clone(),
            groups: user.groups.clone(),
            uid: user.uid.clone(),
            extra: user
                .extra
                .clone()
                .map(|extra| extra.into_iter().collect::<BTreeMap<_, _>>()),
            non_resource_attributes: Some(NonResourceAttributes {
                path: Some(path.to_owned()),
                verb: Some(verb.to_owned()),
            }),
            resource_attributes: None,
        },
        ..SubjectAccessReview::default()
    };
    let reviewed = Api::<SubjectAccessReview>::all(client)
        .create(&PostParams::default(), &review)
        .await
        .map_err(|e| {
            Refusal::Unavailable(format!("SubjectAccessReview: {}", crate::errors::chain(&e)))
        })?;
    let status = reviewed.status.unwrap_or_default();
    if status.allowed && status.denied != Some(true) {
        return Ok(());
    }
    let reason = status
        .reason
        .filter(|r| !r.is_empty())
        .map(|r| format!(" ({r})"))
        .unwrap_or_default();
    Err(Refusal::Forbidden {
        user: user.username.clone().unwrap_or_default(),
        verb: verb.to_owned(),
        path: path.to_owned(),
        reason,
        role: role.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn only_the_credential_headers_are_passed_on_every_value_as_received() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "Bearer a".parse().expect("header value"));
        headers.append(
            FORWARDED_AUTHORIZATION,
            "Bearer b".parse().expect("header value"),
        );
        headers.append(
            FORWARDED_AUTHORIZATION,
            "Bearer c".parse().expect("header value"),
        );
        headers.insert("cookie", "session=x".parse().expect("header value"));
        let out = credential_headers(&headers);
        assert_eq!(out.len(), 3);
        assert_eq!(out["authorization"], "Bearer a");
        let forwarded: Vec<_> = out.get_all(FORWARDED_AUTHORIZATION).iter().collect();
        assert_eq!(forwarded, ["Bearer b", "Bearer c"]);
        assert!(out.get("cookie").is_none());
    }

    #[test]
    fn the_forwarded_header_is_read_only_without_authorization() {
        let mut h = HeaderMap::new();
        h.insert(
            FORWARDED_AUTHORIZATION,
            HeaderValue::from_static("Bearer fwd"),
        );
        assert_eq!(bearer(&h), Some("fwd"));
        h.insert(
            axum::http::header::AUTHORIZATION,
            HeaderValue::from_static("Bearer direct"),
        );
        assert_eq!(bearer(&h), Some("direct"));
        assert_eq!(bearer(&HeaderMap::new()), None);
    }

    #[test]
    fn refusals_map_to_statuses_and_say_what_to_grant() {
        let forbidden = Refusal::Forbidden {
            user: "bob".into(),
            verb: "get".into(),
            path: "/audit".into(),
            reason: String::new(),
            role: "audit".into(),
        };
        assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
        let text = forbidden.to_string();
        assert!(text.contains(r#"nonResourceURLs ["/audit"]"#), "{text}");
        assert!(text.contains("gitwarden-audit-reader"), "{text}");
        assert_eq!(
            Refusal::NoToken { path: "/x".into() }.status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(Refusal::Throttled.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(!Refusal::Throttled.cacheable());
        assert!(!Refusal::Unavailable("x".into()).cacheable());
        assert!(Refusal::Unauthenticated("x".into()).cacheable());
    }

    #[test]
    fn the_cache_is_bounded_and_expires() {
        let limits = Limits {
            ttl: Duration::from_secs(10),
            max_entries: 3,
            ..Limits::default()
        };
        let mut cache: Cache<u32> = Cache {
            entries: HashMap::new(),
        };
        let now = Instant::now();
        for i in 0..10u8 {
            cache.put([i; 32], u32::from(i), &limits, now);
            assert!(cache.entries.len() <= 3);
        }
        assert_eq!(cache.get(&[9; 32], now), Some(9));
        assert_eq!(cache.get(&[9; 32], now + Duration::from_secs(11)), None);
    }
}
