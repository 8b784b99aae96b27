//! The live policy: loaded from a file or a ConfigMap, reloaded when it changes.
//!
//! The policy is configuration that lives in git (the agent applies the
//! ConfigMap), so changing who is exempt is itself a reviewed commit. An invalid
//! new policy never replaces a valid one: the webhook keeps the last good policy
//! and says why in its log, its metrics and its readiness detail.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use gitwarden_shared::names::POLICY_KEY;
use gitwarden_shared::policy::Policy;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};

use crate::metrics::{ReloadLabels, WebhookMetrics};

/// Where the policy comes from.
#[derive(Debug, Clone)]
pub enum PolicySource {
    /// The built-in defaults (docs/design.md §4), never reloaded.
    Defaults,
    /// A YAML file, polled for changes.
    File {
        /// The file's path.
        path: PathBuf,
        /// How often to look at it.
        poll: Duration,
    },
    /// A ConfigMap (key `policy.yaml`), watched through the API server.
    ConfigMap {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
}

impl std::fmt::Display for PolicySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PolicySource::Defaults => write!(f, "built-in defaults"),
            PolicySource::File { path, .. } => write!(f, "file {}", path.display()),
            PolicySource::ConfigMap { namespace, name } => {
                write!(f, "ConfigMap {namespace}/{name} key {POLICY_KEY}")
            }
        }
    }
}

/// What readiness reports about the policy.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyStatus {
    /// Where the policy comes from.
    pub source: String,
    /// How many policies have been accepted since start (1 = the first).
    pub generation: u64,
    /// When the policy in force was accepted (RFC 3339).
    pub loaded_at: Option<String>,
    /// Why the newest policy was refused, while the previous one stays in force.
    pub last_error: Option<String>,
}

/// The policy in force, shared by every request handler.
#[derive(Debug)]
pub struct PolicyStore {
    current: RwLock<Arc<Policy>>,
    status: RwLock<PolicyStatus>,
    metrics: Arc<WebhookMetrics>,
}

impl PolicyStore {
    /// A store that starts with the built-in defaults until its source delivers.
    pub fn new(source: &PolicySource, metrics: Arc<WebhookMetrics>) -> Arc<Self> {
        metrics.policy_valid.set(1);
        Arc::new(Self {
            current: RwLock::new(Arc::new(Policy::default())),
            status: RwLock::new(PolicyStatus {
                source: source.to_string(),
                ..Default::default()
            }),
            metrics,
        })
    }

    /// The policy to decide this request with. Cheap: one read lock, one Arc clone.
    pub fn get(&self) -> Arc<Policy> {
        match self.current.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The readiness detail.
    pub fn status(&self) -> PolicyStatus {
        match self.status.read() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set_status(&self, update: impl FnOnce(&mut PolicyStatus)) {
        let mut guard = match self.status.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        update(&mut guard);
    }

    /// Accepts a new policy text, or keeps the current one and records why not.
    pub fn apply_yaml(&self, yaml: &str) -> Result<(), String> {
        match Policy::from_yaml(yaml) {
            Ok(policy) => {
                {
                    let mut guard = match self.current.write() {
                        Ok(g) => g,
                        Err(poisoned) => poisoned.into_inner(),
                    };
                    *guard = Arc::new(policy);
                }
                self.set_status(|s| {
                    s.generation += 1;
                    s.loaded_at = Some(jiff::Timestamp::now().to_string());
                    s.last_error = None;
                });
                self.metrics
                    .policy_reloads
                    .get_or_create(&ReloadLabels { result: "ok" })
                    .inc();
                self.metrics.policy_valid.set(1);
                tracing::info!(generation = self.status().generation, "policy loaded");
                Ok(())
            }
            Err(e) => self.reject(gitwarden_runtime::errors::chain(&e)),
        }
    }

    fn reject(&self, why: String) -> Result<(), String> {
        tracing::error!(error = %why, "policy refused; keeping the last good policy");
        self.metrics
            .policy_reloads
            .get_or_create(&ReloadLabels { result: "error" })
            .inc();
        self.metrics.policy_valid.set(0);
        self.set_status(|s| s.last_error = Some(why.clone()));
        Err(why)
    }

    /// Loads the source once (so start-up fails on a broken file) and keeps
    /// following it in the background.
    pub async fn follow(
        self: &Arc<Self>,
        source: PolicySource,
        client: Option<kube::Client>,
    ) -> anyhow::Result<()> {
        match source {
            PolicySource::Defaults => {
                self.set_status(|s| {
                    s.generation = 1;
                    s.loaded_at = Some(jiff::Timestamp::now().to_string());
                });
                Ok(())
            }
            PolicySource::File { path, poll } => {
                let text = tokio::fs::read_to_string(&path)
                    .await
                    .map_err(|e| anyhow::anyhow!("reading policy file {}: {e}", path.display()))?;
                self.apply_yaml(&text)
                    .map_err(|e| anyhow::anyhow!("policy file {}: {e}", path.display()))?;
                let store = self.clone();
                tokio::spawn(async move {
                    let mut last = text;
                    loop {
                        tokio::time::sleep(poll).await;
                        match tokio::fs::read_to_string(&path).await {
                            Ok(text) if text != last => {
                                let _ = store.apply_yaml(&text);
                                last = text;
                            }
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!(error = %e, path = %path.display(), "policy file not readable; keeping the last good policy")
                            }
                        }
                    }
                });
                Ok(())
            }
            PolicySource::ConfigMap { namespace, name } => {
                let client = client.ok_or_else(|| {
                    anyhow::anyhow!("a policy ConfigMap needs a Kubernetes client")
                })?;
                let api: Api<ConfigMap> = Api::namespaced(client, &namespace);
                let store = self.clone();
                let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
                tokio::spawn(async move {
                    let mut events = watcher(api, config).default_backoff().boxed();
                    while let Some(event) = events.next().await {
                        match event {
                            Ok(watcher::Event::Apply(cm) | watcher::Event::InitApply(cm)) => {
                                store.apply_configmap(&cm)
                            }
                            Ok(watcher::Event::Delete(_)) => {
                                let _ = store
                                    .reject(format!("ConfigMap {namespace}/{name} was deleted"));
                            }
                            Ok(watcher::Event::Init | watcher::Event::InitDone) => {}
                            Err(e) => {
                                tracing::warn!(error = %e, "watching the policy ConfigMap; retrying")
                            }
                        }
                    }
                });
                Ok(())
            }
        }
    }

    fn apply_configmap(&self, cm: &ConfigMap) {
        match cm.data.as_ref().and_then(|d| d.get(POLICY_KEY)) {
            Some(text) => {
                let _ = self.apply_yaml(text);
            }
            None => {
                let _ = self.reject(format!("the policy ConfigMap has no key {POLICY_KEY}"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn store() -> Arc<PolicyStore> {
        let mut registry = prometheus_client::registry::Registry::default();
        PolicyStore::new(
            &PolicySource::Defaults,
            Arc::new(WebhookMetrics::new(&mut registry)),
        )
    }

    async fn wait_until(mut done: impl FnMut() -> bool) {
        for _ in 0..100 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("condition not reached within 2s");
    }

    #[tokio::test]
    async fn a_changed_policy_file_is_loaded_without_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.yaml");
        std::fs::write(&path, "breakGlass:\n  maxTtl: 2h\n").unwrap();
        let store = store();
        let source = PolicySource::File {
            path: path.clone(),
            poll: Duration::from_millis(20),
        };
        store.follow(source, None).await.unwrap();
        assert_eq!(store.get().break_glass.max_ttl.to_string(), "2h");
        std::fs::write(&path, "breakGlass:\n  maxTtl: 3h\n").unwrap();
        wait_until(|| store.get().break_glass.max_ttl.to_string() == "3h").await;
        assert_eq!(store.status().generation, 2);
    }

    #[tokio::test]
    async fn an_invalid_policy_file_keeps_the_last_good_policy_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.yaml");
        std::fs::write(&path, "breakGlass:\n  maxTtl: 2h\n").unwrap();
        let store = store();
        store
            .follow(
                PolicySource::File {
                    path: path.clone(),
                    poll: Duration::from_millis(20),
                },
                None,
            )
            .await
            .unwrap();
        std::fs::write(&path, "exempt:\n  groups: [\"system:masters\"]\n").unwrap();
        wait_until(|| store.status().last_error.is_some()).await;
        assert!(
            store
                .status()
                .last_error
                .unwrap()
                .contains("system:masters")
        );
        assert_eq!(store.get().break_glass.max_ttl.to_string(), "2h");
    }

    #[tokio::test]
    async fn a_broken_policy_file_at_start_up_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.yaml");
        std::fs::write(&path, "no_such_key: 1\n").unwrap();
        let err = store()
            .follow(
                PolicySource::File {
                    path: path.clone(),
                    poll: Duration::from_millis(20),
                },
                None,
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("policy.yaml"), "{err}");
    }
}
