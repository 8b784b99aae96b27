//! A real `gitwarden-webhook` process on loopback, with a CA and serving
//! certificate made for it: what every test that needs the webhook running
//! outside the cluster starts from, so the start-up is written once.
//!
//! It is registered nowhere by itself (so it refuses nothing until a test
//! registers it); it reads its policy from a ConfigMap or a file, and is
//! ready once that policy is loaded.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::binaries::binary;
use crate::wait::wait_for;

/// Where the webhook reads its policy.
pub enum PolicySource<'a> {
    /// A ConfigMap (`NAMESPACE/NAME`), read with `kubeconfig`.
    ConfigMap {
        /// The webhook's credentials.
        kubeconfig: &'a Path,
        /// `NAMESPACE/NAME`.
        name: &'a str,
    },
    /// A file (for a webhook that must run before any cluster exists).
    File(&'a Path),
}

/// A running webhook on `127.0.0.1`, killed when dropped.
pub struct LoopbackWebhook {
    child: Child,
    dir: tempfile::TempDir,
    ca: gitwarden_certs::CertificateAuthority,
    /// `https://127.0.0.1:PORT`, without a path.
    pub url: String,
}

impl LoopbackWebhook {
    /// Starts the webhook with its policy from `policy_configmap`
    /// (`NAMESPACE/NAME`), talking to the API server as `kubeconfig`, and
    /// returns once the policy is loaded.
    pub async fn start(kubeconfig: &Path, policy_configmap: &str) -> Result<LoopbackWebhook> {
        Self::start_with(PolicySource::ConfigMap {
            kubeconfig,
            name: policy_configmap,
        })
        .await
    }

    /// Starts the webhook with its policy from `policy`; returns once the
    /// policy is loaded.
    pub async fn start_with(policy: PolicySource<'_>) -> Result<LoopbackWebhook> {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let dir = tempfile::Builder::new()
            .prefix("gitwarden-loopback-webhook-")
            .tempdir()?;
        let ca = gitwarden_certs::CertificateAuthority::generate(
            "gitwarden-loopback-test-ca",
            Duration::from_secs(3600),
        )?;
        let serving = ca.issue_serving_cert(
            &["localhost"],
            &["127.0.0.1".parse()?],
            Duration::from_secs(3600),
        )?;
        std::fs::write(dir.path().join("ca.crt"), ca.cert_pem())?;
        std::fs::write(dir.path().join("tls.crt"), &serving.cert_pem)?;
        std::fs::write(dir.path().join("tls.key"), &serving.key_pem)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut command = Command::new(binary("gitwarden-webhook")?);
        command
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--tls-cert")
            .arg(dir.path().join("tls.crt"))
            .arg("--tls-key")
            .arg(dir.path().join("tls.key"))
            .arg("--audit-dir")
            .arg(dir.path().join("audit"));
        match policy {
            PolicySource::ConfigMap { kubeconfig, name } => command
                .args(["--policy-configmap", name])
                .arg("--kubeconfig")
                .arg(kubeconfig),
            PolicySource::File(path) => command.arg("--policy-file").arg(path),
        };
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("webhook.log"))?)
            .spawn()
            .context("starting gitwarden-webhook")?;
        let webhook = LoopbackWebhook {
            child,
            dir,
            ca,
            url: format!("https://127.0.0.1:{port}"),
        };
        let http = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(
                webhook.ca.cert_pem().as_bytes(),
            )?)
            .build()?;
        let ready = wait_for(Duration::from_secs(30), || async {
            let body: Value = http
                .get(format!("{}/readyz", webhook.url))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (body["policy"]["generation"].as_u64().unwrap_or(0) > 0).then_some(())
        })
        .await;
        if ready.is_none() {
            bail!("the webhook never became ready:\n{}", webhook.log());
        }
        Ok(webhook)
    }

    /// The PEM file of the CA that signed the serving certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// The CA's certificate as PEM (for a `caBundle`).
    pub fn ca_pem(&self) -> &str {
        self.ca.cert_pem()
    }

    /// Every record of the audit log, oldest first.
    pub fn audit_records(&self) -> Vec<Value> {
        let Ok(entries) = std::fs::read_dir(self.dir.path().join("audit")) else {
            return Vec::new();
        };
        let mut files: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
        files.sort();
        files
            .iter()
            .filter(|f| f.extension().is_some_and(|e| e == "jsonl"))
            .flat_map(|f| {
                std::fs::read_to_string(f)
                    .unwrap_or_default()
                    .lines()
                    .filter_map(|l| serde_json::from_str(l).ok())
                    .collect::<Vec<Value>>()
            })
            .collect()
    }

    /// The audit record ids of `user`'s requests, read over `GET /audit`.
    pub async fn audit_ids(&self, user: &str) -> Result<Vec<String>> {
        let http = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(
                self.ca.cert_pem().as_bytes(),
            )?)
            .timeout(Duration::from_secs(10))
            .build()?;
        let records: Vec<Value> = http
            .get(format!("{}/audit?user={user}&limit=1000", self.url))
            .send()
            .await?
            .json()
            .await?;
        Ok(records
            .iter()
            .filter_map(|r| r["id"].as_str().map(str::to_string))
            .collect())
    }

    /// SIGKILL: the webhook stops answering at once.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The webhook's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("webhook.log")).unwrap_or_default()
    }
}

impl Drop for LoopbackWebhook {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- webhook log ---\n{}", self.log());
        }
    }
}
