//! A real `gitwarden-webhook` process on loopback, with a CA and serving
//! certificate made for it: what every test and benchmark that needs the
//! webhook running outside the cluster starts from, so the start-up, the
//! restart, the certificate rotation and the audit readers are written once.
//!
//! It is registered nowhere by itself (so it refuses nothing until a test
//! registers it, see [`crate::webhook::WebhookFixture`]); it reads its policy
//! from a ConfigMap, a file or its built-in default, and is ready once that
//! policy is loaded.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use gitwarden_shared::audit::AuditRecord;
use serde_json::Value;

use crate::binaries::binary;

/// How long the serving certificate and its CA are valid: longer than any test.
const VALIDITY: Duration = Duration::from_secs(24 * 3600);

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
    /// No policy flag: the webhook's built-in default policy, no cluster.
    BuiltIn,
}

/// How to start a [`LoopbackWebhook`]: its policy, plus what a test or a
/// benchmark changes (extra flags, another binary, the log level).
pub struct Launch<'a> {
    policy: PolicySource<'a>,
    extra: Vec<OsString>,
    binary: Option<PathBuf>,
    log_level: &'a str,
    no_policy_wait: bool,
}

impl<'a> Launch<'a> {
    /// Adds flags after the ones the kit sets (timeouts, reload interval…).
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.extra.extend(args.into_iter().map(Into::into));
        self
    }

    /// Runs this binary instead of the workspace's debug build (benchmarks
    /// run the release build).
    pub fn binary(mut self, path: &Path) -> Self {
        self.binary = Some(path.to_path_buf());
        self
    }

    /// Returns as soon as the process serves, without waiting for its
    /// policy (for tests of what an unready webhook does).
    pub fn without_waiting_for_policy(mut self) -> Self {
        self.no_policy_wait = true;
        self
    }

    /// `RUST_LOG` for the process (default `info`).
    pub fn log_level(mut self, level: &'a str) -> Self {
        self.log_level = level;
        self
    }

    /// Makes the CA and serving certificate, starts the process and returns
    /// once its policy is loaded.
    pub async fn start(self) -> Result<LoopbackWebhook> {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let dir = tempfile::Builder::new()
            .prefix("gitwarden-loopback-webhook-")
            .tempdir()?;
        let ca = gitwarden_certs::CertificateAuthority::generate(
            "gitwarden-loopback-test-ca",
            VALIDITY,
        )?;
        std::fs::write(dir.path().join("ca.crt"), ca.cert_pem())?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut args: Vec<OsString> = vec!["serve".into(), "--listen".into()];
        args.push(format!("127.0.0.1:{port}").into());
        for (flag, file) in [
            ("--tls-cert", "tls.crt"),
            ("--tls-key", "tls.key"),
            ("--audit-dir", "audit"),
        ] {
            args.push(flag.into());
            args.push(dir.path().join(file).into());
        }
        let waits_for_policy = match self.policy {
            PolicySource::ConfigMap { kubeconfig, name } => {
                args.extend(["--policy-configmap".into(), name.into()]);
                args.extend(["--kubeconfig".into(), kubeconfig.into()]);
                true
            }
            PolicySource::File(path) => {
                args.extend(["--policy-file".into(), path.into()]);
                true
            }
            PolicySource::BuiltIn => false,
        };
        // GET /audit is never open: the kit reads it with a static token
        // (the path scripts use); tests of Kubernetes tokens send their own.
        let audit_token: String = {
            use rand::Rng as _;
            let bytes: [u8; 24] = rand::rng().random();
            bytes.iter().map(|b| format!("{b:02x}")).collect()
        };
        std::fs::write(dir.path().join("audit-token"), &audit_token)?;
        args.push("--audit-token-file".into());
        args.push(dir.path().join("audit-token").into());
        args.extend(self.extra);
        let http = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(ca.cert_pem().as_bytes())?)
            .timeout(Duration::from_secs(10))
            .build()?;
        let webhook = LoopbackWebhook {
            binary: match self.binary {
                Some(path) => path,
                None => binary("gitwarden-webhook")?,
            },
            args,
            log_level: self.log_level.to_string(),
            waits_for_policy: waits_for_policy && !self.no_policy_wait,
            child: Mutex::new(None),
            url: format!("https://127.0.0.1:{port}"),
            port,
            http,
            ca,
            dir,
            audit_token,
        };
        webhook.write_serving_certificate()?;
        webhook.restart().await?;
        Ok(webhook)
    }
}

/// A running webhook on `127.0.0.1`, killed when dropped.
pub struct LoopbackWebhook {
    binary: PathBuf,
    args: Vec<OsString>,
    log_level: String,
    waits_for_policy: bool,
    child: Mutex<Option<Child>>,
    http: reqwest::Client,
    ca: gitwarden_certs::CertificateAuthority,
    dir: tempfile::TempDir,
    port: u16,
    audit_token: String,
    /// `https://127.0.0.1:PORT`, without a path.
    pub url: String,
}

impl LoopbackWebhook {
    /// How to start one reading `policy`; see [`Launch`].
    pub fn launch(policy: PolicySource<'_>) -> Launch<'_> {
        Launch {
            policy,
            extra: Vec::new(),
            binary: None,
            log_level: "info",
            no_policy_wait: false,
        }
    }

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
        Self::launch(policy).start().await
    }

    /// Starts the process again (after [`kill`](Self::kill)) on the same
    /// port, certificate and audit log; returns once it is ready.
    pub async fn restart(&self) -> Result<()> {
        self.kill();
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join("webhook.log"))?;
        let child = Command::new(&self.binary)
            .args(&self.args)
            .env("RUST_LOG", &self.log_level)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        *self.child.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
        self.wait_ready().await
    }

    async fn wait_ready(&self) -> Result<()> {
        // Not the pooled client: an idle keep-alive connection would hold
        // one of the webhook's connection permits, which tests count.
        let probe = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(
                self.ca.cert_pem().as_bytes(),
            )?)
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(10))
            .build()?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            match probe.get(format!("{}/readyz", self.url)).send().await {
                // Serving is enough when the policy may come later.
                Ok(_) if !self.waits_for_policy => return Ok(()),
                Ok(resp) if resp.status().is_success() => {
                    let body: Value = resp.json().await.unwrap_or_default();
                    if body["policy"]["generation"].as_u64().unwrap_or(0) > 0 {
                        return Ok(());
                    }
                }
                _ => {}
            }
            if let Some(status) = self
                .child
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!(
                    "gitwarden-webhook exited ({status}) during start-up:\n{}",
                    self.log_tail(30)
                );
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "gitwarden-webhook not ready within 30s:\n{}",
                    self.log_tail(30)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The PEM file of the CA that signed the serving certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// The CA's certificate as PEM (for a `caBundle`).
    pub fn ca_pem(&self) -> &str {
        self.ca.cert_pem()
    }

    /// The HTTPS client that trusts the webhook's CA (for raw requests).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// An HTTPS client that opens a new TLS connection for every request and
    /// reports the peer certificate, to observe certificate rotation.
    pub fn fresh_connection_client(&self) -> Result<reqwest::Client> {
        Ok(reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(
                self.ca.cert_pem().as_bytes(),
            )?)
            .pool_max_idle_per_host(0)
            .tls_info(true)
            .timeout(Duration::from_secs(10))
            .build()?)
    }

    /// Writes a new serving certificate from the same CA the way a Secret
    /// volume update does (new files renamed into place). Returns its PEM.
    pub fn rotate_certificate(&self) -> Result<String> {
        self.write_serving_certificate()
    }

    fn write_serving_certificate(&self) -> Result<String> {
        let serving =
            self.ca
                .issue_serving_cert(&["localhost"], &["127.0.0.1".parse()?], VALIDITY)?;
        let dir = self.dir.path();
        std::fs::write(dir.join("tls.key.new"), &serving.key_pem)?;
        std::fs::write(dir.join("tls.crt.new"), &serving.cert_pem)?;
        std::fs::rename(dir.join("tls.key.new"), dir.join("tls.key"))?;
        std::fs::rename(dir.join("tls.crt.new"), dir.join("tls.crt"))?;
        Ok(serving.cert_pem)
    }

    /// The audit log directory.
    pub fn audit_dir(&self) -> PathBuf {
        self.dir.path().join("audit")
    }

    /// Every record of the audit log, oldest first, read from its files.
    pub fn audit_records(&self) -> Vec<AuditRecord> {
        let Ok(entries) = std::fs::read_dir(self.audit_dir()) else {
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
                    .collect::<Vec<AuditRecord>>()
            })
            .collect()
    }

    /// The static token of `--audit-token-file` the kit starts the webhook
    /// with (GET /audit answers nobody without a credential).
    pub fn audit_token(&self) -> &str {
        &self.audit_token
    }

    /// `GET /audit` with a query string (e.g. `user=alice&limit=10`),
    /// newest first.
    pub async fn audit(&self, query: &str) -> Result<Vec<AuditRecord>> {
        let resp = self
            .http
            .get(format!("{}/audit?{query}", self.url))
            .bearer_auth(&self.audit_token)
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!(
                "GET /audit?{query}: {}: {}",
                resp.status(),
                resp.text().await.unwrap_or_default()
            );
        }
        Ok(resp.json().await?)
    }

    /// The audit record ids of `user`'s requests, read over `GET /audit`.
    pub async fn audit_ids(&self, user: &str) -> Result<Vec<String>> {
        Ok(self
            .audit(&format!("user={user}&limit=1000"))
            .await?
            .into_iter()
            .map(|r| r.id)
            .collect())
    }

    /// `GET /metrics` as text.
    pub async fn metrics(&self) -> Result<String> {
        Ok(self
            .http
            .get(format!("{}/metrics", self.url))
            .send()
            .await?
            .text()
            .await?)
    }

    /// Runs `gitwarden-webhook verify` on the audit log: (intact, report).
    pub fn verify(&self) -> Result<(bool, String)> {
        let out = Command::new(&self.binary)
            .arg("verify")
            .arg("--audit-dir")
            .arg(self.audit_dir())
            .output()?;
        Ok((
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        ))
    }

    /// The process id, while it runs (for memory and CPU readings).
    pub fn pid(&self) -> Option<u32> {
        self.child
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(Child::id)
    }

    /// The process runs (it was started and has not exited).
    pub fn is_running(&self) -> bool {
        self.child
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGKILL: the webhook stops answering at once, with no graceful
    /// shutdown and no flush beyond what was already durable.
    pub fn kill(&self) {
        if let Some(mut child) = self.child.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The webhook's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("webhook.log")).unwrap_or_default()
    }

    /// The last lines of the webhook's log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = self.log();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for LoopbackWebhook {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- webhook log (last 40 lines) ---\n{}", self.log_tail(40));
        }
    }
}

/// The DER bytes of a PEM certificate (for a rustls root store, or to compare
/// with the certificate a TLS peer presented).
pub fn pem_to_der(pem: &str) -> Vec<u8> {
    use base64::Engine as _;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap_or_default()
}
