//! The real gitwarden webhook, running as its own process against the test
//! cluster and registered with the shipped (URL-based) webhook configuration.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, bail};
use base64::Engine as _;

use crate::cluster::{Identity, TestCluster, repo_root};
use crate::kubectl::run_kubectl_stdin;
use crate::loopback::{LoopbackWebhook, PolicySource};

/// Only one gitwarden webhook may be registered at a time: its configurations
/// are cluster-wide objects named `gitwarden`. Tests that install one hold this.
pub static EXCLUSIVE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The loopback webhook registered with the shipped (URL-based) webhook
/// configuration, so the API server really calls it, plus the identities the
/// tests need around it. Everything about the process itself (restart,
/// certificate rotation, the audit log, metrics) is the
/// [`LoopbackWebhook`]'s, reached through `Deref`.
pub struct WebhookFixture {
    cluster: &'static TestCluster,
    webhook: LoopbackWebhook,
    agent_kubeconfig: PathBuf,
}

impl std::ops::Deref for WebhookFixture {
    type Target = LoopbackWebhook;

    fn deref(&self) -> &LoopbackWebhook {
        &self.webhook
    }
}

/// Renders a manifest template: `${NAME}` → value.
pub fn render(template: &str, vars: &[(&str, &str)]) -> String {
    vars.iter().fold(template.to_string(), |text, (k, v)| {
        text.replace(&format!("${{{k}}}"), v)
    })
}

impl WebhookFixture {
    /// Installs gitwarden's webhook into the cluster: namespace, RBAC, policy,
    /// the agent's service account (bound to cluster-admin, as the agent's
    /// ClusterRole will be), the loopback process, and the webhook
    /// configurations; returns once humans are really being refused.
    pub async fn install(cluster: &'static TestCluster) -> Result<WebhookFixture> {
        let root = repo_root();
        let admin = cluster.kubeconfig(Identity::Admin);
        // Remove any configuration a crashed earlier test left behind.
        remove_configurations(&admin);
        apply(
            &admin,
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: gitwarden-system\n",
        )?;
        apply(
            &admin,
            &std::fs::read_to_string(root.join("deploy/base/rbac-webhook.yaml"))?,
        )?;
        apply(
            &admin,
            &std::fs::read_to_string(root.join("deploy/base/policy.yaml"))?,
        )?;
        apply(
            &admin,
            &crate::testdata::read("agent-as-cluster-admin.yaml")?,
        )?;
        let (_, agent_kubeconfig) = cluster
            .mint_service_account_token("gitwarden-system", "gitwarden-agent")
            .await?;
        let (_, webhook_kubeconfig) = cluster
            .mint_service_account_token("gitwarden-system", "gitwarden-webhook")
            .await?;
        let webhook = LoopbackWebhook::launch(PolicySource::ConfigMap {
            kubeconfig: &webhook_kubeconfig,
            name: "gitwarden-system/gitwarden-policy",
        })
        .args(["--reload-interval", "500ms"])
        .start()
        .await?;
        let fixture = WebhookFixture {
            cluster,
            webhook,
            agent_kubeconfig,
        };

        let template =
            std::fs::read_to_string(root.join("deploy/local/webhook-configuration.yaml"))?;
        let ca_bundle = base64::engine::general_purpose::STANDARD.encode(fixture.ca_pem());
        apply(
            &admin,
            &render(
                &template,
                &[("WEBHOOK_URL", &fixture.url), ("CA_BUNDLE", &ca_bundle)],
            ),
        )?;
        fixture.wait_until_enforcing().await?;
        Ok(fixture)
    }

    /// A kubeconfig authenticating as the agent's service account (real token).
    pub fn agent_kubeconfig(&self) -> &Path {
        &self.agent_kubeconfig
    }

    /// A kube client acting as the agent.
    pub async fn agent_client(&self) -> Result<kube::Client> {
        self.cluster
            .client_for_kubeconfig(&self.agent_kubeconfig)
            .await
    }

    async fn wait_until_enforcing(&self) -> Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let out = self.cluster.kubectl(
                Identity::Alice,
                &[
                    "-n",
                    "gitwarden-system",
                    "create",
                    "configmap",
                    "enforcement-probe",
                    "--dry-run=server",
                ],
            );
            // dry-run is allowed by design; a real create must be refused.
            let real = self.cluster.kubectl(
                Identity::Alice,
                &[
                    "-n",
                    "gitwarden-system",
                    "create",
                    "configmap",
                    "enforcement-probe",
                ],
            );
            if out.success && !real.success && real.stderr.contains("gitwarden") {
                return Ok(());
            }
            if real.success {
                self.cluster.kubectl(
                    Identity::Admin,
                    &[
                        "-n",
                        "gitwarden-system",
                        "delete",
                        "configmap",
                        "enforcement-probe",
                        "--ignore-not-found",
                    ],
                );
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "the API server did not start calling the webhook within 30s: {}",
                    real.stderr
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Replaces the policy ConfigMap's `policy.yaml` (as the agent would).
    pub fn set_policy(&self, yaml: &str) -> Result<()> {
        let indented: String = yaml.lines().map(|l| format!("    {l}\n")).collect();
        let manifest = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: gitwarden-policy\n  namespace: gitwarden-system\ndata:\n  policy.yaml: |\n{indented}"
        );
        apply(&self.agent_kubeconfig, &manifest)
    }
}

impl Drop for WebhookFixture {
    fn drop(&mut self) {
        // Unregistered first, so that the cluster never calls a dead webhook;
        // the process goes (and prints its log on a panic) when `webhook` drops.
        remove_configurations(&self.cluster.kubeconfig(Identity::Admin));
    }
}

fn remove_configurations(admin: &Path) {
    // Webhooks never see changes to webhook configurations, so admin can always do this.
    let _ = crate::kubectl::run_kubectl(
        admin,
        &[
            "delete",
            "validatingwebhookconfiguration,mutatingwebhookconfiguration",
            "gitwarden",
            "--ignore-not-found",
        ],
    );
}

/// `kubectl apply -f -` with a manifest.
pub fn apply(kubeconfig: &Path, manifest: &str) -> Result<()> {
    let out = run_kubectl_stdin(kubeconfig, &["apply", "-f", "-"], manifest);
    if !out.success {
        bail!("kubectl apply failed: {}", out.stderr);
    }
    Ok(())
}
