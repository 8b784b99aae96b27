//! A namespace per test, so tests never see each other's objects.

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};

use crate::cluster::{Identity, TestCluster};
use crate::kubectl::run_kubectl;

/// A namespace that exists for one test and is deleted when this value drops,
/// including during a panic's unwinding.
#[derive(Debug)]
pub struct TestNamespace {
    name: String,
    kubeconfig: std::path::PathBuf,
}

impl TestNamespace {
    pub(crate) async fn create(cluster: &TestCluster, prefix: &str) -> Result<TestNamespace> {
        Self::create_as(cluster, prefix, &cluster.kubeconfig(Identity::Admin)).await
    }

    /// Creates the namespace with another identity's kubeconfig, which also
    /// deletes it: with gitwarden's webhook installed only the agent may.
    pub async fn create_as(
        cluster: &TestCluster,
        prefix: &str,
        kubeconfig: &std::path::Path,
    ) -> Result<TestNamespace> {
        let suffix: u32 = rand::random::<u32>() % 1_000_000;
        let prefix: String = prefix
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .take(40)
            .collect();
        let name = format!("{prefix}-{suffix:06}");
        let client = cluster.client_for_kubeconfig(kubeconfig).await?;
        let api: Api<Namespace> = Api::all(client);
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": { "name": name, "labels": { "gitwarden.io/test": "true" } }
        }))?;
        api.create(&PostParams::default(), &ns)
            .await
            .with_context(|| format!("creating namespace {name}"))?;
        Ok(TestNamespace {
            name,
            kubeconfig: cluster.kubeconfig(Identity::Admin),
        })
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        // Synchronous on purpose: Drop cannot await, and the runtime may be gone.
        let out = run_kubectl(
            &self.kubeconfig,
            &[
                "delete",
                "namespace",
                &self.name,
                "--wait=false",
                "--ignore-not-found",
            ],
        );
        if !out.success {
            eprintln!(
                "warning: could not delete test namespace {}: {}",
                self.name, out.stderr
            );
        }
    }
}
