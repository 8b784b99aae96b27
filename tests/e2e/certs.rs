//! `gitwarden-certs` against the real API server: it writes the webhook's
//! Secrets, injects the CA bundle into every webhook entry, rotates without
//! breaking trust, and never fights the agent's server-side apply.
//!
//! Each test has its own namespace (the Secrets live there) and its own pair
//! of webhook configurations named after it. Their entries match nothing
//! other tests do: a fail-closed probe entry for labelled ConfigMaps in the
//! test's namespace only, and entries for a resource that does not exist.
//! The probe entry is how the tests ask the API server itself whether it
//! trusts the installed certificate through the injected bundle: a tiny TLS
//! server serving the certificate from the Secret answers every review with
//! a denial that names the probe; a TLS failure gives a different error.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use axum::{Json, Router, routing::post};
use gitwarden_certs::inspect::CertInfo;
use gitwarden_certs::verify::serves_for;
use gitwarden_tests::admission_review::response;
use gitwarden_tests::cluster::repo_root;
use gitwarden_tests::{Identity, TestCluster, TestNamespace, wait_for};
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use serde_json::{Value, json};

const PROBE_MESSAGE: &str = "the certs probe answered";
const PROBE_LABEL: &str = "gitwarden.io/certs-probe";
const TLS_SECRET: &str = "gitwarden-webhook-tls";
const CA_SECRET: &str = "gitwarden-webhook-ca";

/// One run of the real `gitwarden-certs` binary.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    #[track_caller]
    fn expect_code(&self, code: i32) -> &str {
        assert_eq!(
            self.code, code,
            "gitwarden-certs exited {} (expected {code}):\nstdout: {}\nstderr: {}",
            self.code, self.stdout, self.stderr
        );
        &self.stdout
    }
}

/// A test namespace, a pair of webhook configurations named after it, and
/// the flags that point `gitwarden-certs` at them.
struct Setup {
    cluster: &'static TestCluster,
    ns: TestNamespace,
    name: String,
    admin: Client,
}

impl Setup {
    async fn new(prefix: &str) -> Setup {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let cluster = TestCluster::shared();
        let ns = cluster.namespace(prefix).await.unwrap();
        let name = format!("certs-{}", ns.name());
        let admin = cluster.client(Identity::Admin).await.unwrap();
        let setup = Setup {
            cluster,
            ns,
            name,
            admin,
        };
        // Port 1: nothing listens until a test points the probe entry at a probe.
        setup.apply_as_agent(1, 5).await;
        setup
    }

    fn ns(&self) -> &str {
        self.ns.name()
    }

    /// Server-side applies both configurations as the agent does (field
    /// manager `gitwarden`, force), with no `caBundle`, as they are in git.
    async fn apply_as_agent(&self, probe_port: u16, timeout_seconds: i32) {
        let selector = json!({ "matchLabels": { "kubernetes.io/metadata.name": self.ns() } });
        let service = json!({ "name": "gitwarden-webhook", "namespace": self.ns(), "path": "/validate", "port": 443 });
        let nothing = json!([{
            "apiGroups": ["certs.test.gitwarden.io"], "apiVersions": ["v1"],
            "operations": ["CREATE"], "resources": ["nothings"], "scope": "*"
        }]);
        let validating = json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": { "name": self.name },
            "webhooks": [
                {
                    "name": "probe.certs.gitwarden.io",
                    "admissionReviewVersions": ["v1"],
                    "sideEffects": "None",
                    "failurePolicy": "Fail",
                    "timeoutSeconds": timeout_seconds,
                    "clientConfig": { "url": format!("https://127.0.0.1:{probe_port}/validate") },
                    "rules": [{
                        "apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                        "resources": ["configmaps"], "scope": "Namespaced"
                    }],
                    "namespaceSelector": selector,
                    "objectSelector": { "matchLabels": { PROBE_LABEL: "true" } },
                },
                {
                    "name": "service.certs.gitwarden.io",
                    "admissionReviewVersions": ["v1"],
                    "sideEffects": "None",
                    "failurePolicy": "Ignore",
                    "timeoutSeconds": timeout_seconds,
                    "clientConfig": { "service": service },
                    "rules": nothing,
                    "namespaceSelector": selector,
                }
            ]
        });
        let mutating_entries: Vec<Value> = ["one", "two"]
            .iter()
            .map(|n| {
                json!({
                    "name": format!("{n}.certs.gitwarden.io"),
                    "admissionReviewVersions": ["v1"],
                    "sideEffects": "None",
                    "failurePolicy": "Ignore",
                    "reinvocationPolicy": "Never",
                    "timeoutSeconds": timeout_seconds,
                    "clientConfig": { "service": service },
                    "rules": nothing,
                    "namespaceSelector": selector,
                })
            })
            .collect();
        let mutating = json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": { "name": self.name },
            "webhooks": mutating_entries,
        });
        let params = PatchParams::apply("gitwarden").force();
        let vapi: Api<ValidatingWebhookConfiguration> = Api::all(self.admin.clone());
        vapi.patch(&self.name, &params, &Patch::Apply(&validating))
            .await
            .unwrap();
        let mapi: Api<MutatingWebhookConfiguration> = Api::all(self.admin.clone());
        mapi.patch(&self.name, &params, &Patch::Apply(&mutating))
            .await
            .unwrap();
    }

    /// Runs `gitwarden-certs SUBCOMMAND` against this setup's namespace and
    /// configurations, with `kubeconfig` (admin when `None`) and extra flags.
    fn run(&self, subcommand: &str, kubeconfig: Option<&Path>, extra: &[&str]) -> Run {
        let bin = gitwarden_tests::binaries::binary("gitwarden-certs").unwrap();
        let admin = self.cluster.kubeconfig(Identity::Admin);
        let kubeconfig = kubeconfig.unwrap_or(&admin);
        let out = Command::new(bin)
            .arg(subcommand)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["--namespace", self.ns()])
            .args(["--validating-webhook", &self.name])
            .args(["--mutating-webhook", &self.name])
            .args(["--dns", "localhost", "--ip", "127.0.0.1"])
            .args(extra)
            .env_remove("KUBECONFIG")
            .output()
            .unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    async fn secret(&self, name: &str) -> Secret {
        let api: Api<Secret> = Api::namespaced(self.admin.clone(), self.ns());
        api.get(name).await.unwrap()
    }

    /// `(entry name, caBundle PEM text)` of every entry of both configurations.
    async fn bundles(&self) -> Vec<(String, String)> {
        let text = |b: Option<k8s_openapi::ByteString>| {
            b.map(|b| String::from_utf8(b.0).unwrap())
                .unwrap_or_default()
        };
        let vapi: Api<ValidatingWebhookConfiguration> = Api::all(self.admin.clone());
        let mapi: Api<MutatingWebhookConfiguration> = Api::all(self.admin.clone());
        let v = vapi.get(&self.name).await.unwrap();
        let m = mapi.get(&self.name).await.unwrap();
        let mut out: Vec<(String, String)> = v
            .webhooks
            .unwrap_or_default()
            .into_iter()
            .map(|w| (w.name, text(w.client_config.ca_bundle)))
            .collect();
        out.extend(
            m.webhooks
                .unwrap_or_default()
                .into_iter()
                .map(|w| (w.name, text(w.client_config.ca_bundle))),
        );
        out
    }

    /// Resource versions of both Secrets and both configurations: any write changes one.
    async fn versions(&self) -> Vec<String> {
        let vapi: Api<ValidatingWebhookConfiguration> = Api::all(self.admin.clone());
        let mapi: Api<MutatingWebhookConfiguration> = Api::all(self.admin.clone());
        vec![
            self.secret(TLS_SECRET).await.resource_version().unwrap(),
            self.secret(CA_SECRET).await.resource_version().unwrap(),
            vapi.get(&self.name)
                .await
                .unwrap()
                .resource_version()
                .unwrap(),
            mapi.get(&self.name)
                .await
                .unwrap()
                .resource_version()
                .unwrap(),
        ]
    }

    /// Whether the API server, calling the probe entry through the injected
    /// caBundle, gets the probe's answer; `Err` carries the last error seen
    /// (e.g. the x509 failure) after 30 s.
    async fn api_server_trusts_probe(&self) -> Result<(), String> {
        static N: AtomicU32 = AtomicU32::new(0);
        let api: Api<ConfigMap> = Api::namespaced(self.admin.clone(), self.ns());
        let last = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let answered = wait_for(Duration::from_secs(30), || {
            let cm: ConfigMap = serde_json::from_value(json!({
                "metadata": {
                    "name": format!("probe-{}", N.fetch_add(1, Ordering::Relaxed)),
                    "labels": { PROBE_LABEL: "true" }
                }
            }))
            .unwrap();
            let api = api.clone();
            let last = last.clone();
            async move {
                match api.create(&PostParams::default(), &cm).await {
                    Err(kube::Error::Api(status)) if status.message.contains(PROBE_MESSAGE) => {
                        Some(())
                    }
                    Err(e) => {
                        *last.lock().unwrap() = e.to_string();
                        None
                    }
                    Ok(_) => {
                        *last.lock().unwrap() = "created: the probe entry was not called".into();
                        None
                    }
                }
            }
        })
        .await;
        answered.ok_or_else(|| last.lock().unwrap().clone())
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        for kind in [
            "validatingwebhookconfiguration",
            "mutatingwebhookconfiguration",
        ] {
            let out = self.cluster.kubectl(
                Identity::Admin,
                &["delete", kind, &self.name, "--ignore-not-found"],
            );
            if !out.success {
                eprintln!(
                    "warning: could not delete {kind} {}: {}",
                    self.name, out.stderr
                );
            }
        }
    }
}

/// A TLS server answering admission reviews with a denial naming the probe.
struct Probe {
    port: u16,
    handle: axum_server::Handle<SocketAddr>,
}

impl Probe {
    async fn start(cert_pem: &str, key_pem: &str) -> Probe {
        async fn review(Json(review): Json<Value>) -> Json<Value> {
            let uid = review["request"]["uid"].as_str().unwrap_or_default();
            Json(response(uid, Some(PROBE_MESSAGE)))
        }
        let tls = axum_server::tls_rustls::RustlsConfig::from_pem(
            cert_pem.as_bytes().to_vec(),
            key_pem.as_bytes().to_vec(),
        )
        .await
        .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let handle = axum_server::Handle::new();
        let server = axum_server::from_tcp_rustls(listener, tls)
            .unwrap()
            .handle(handle.clone())
            .serve(
                Router::new()
                    .route("/validate", post(review))
                    .into_make_service(),
            );
        tokio::spawn(server);
        Probe { port, handle }
    }

    /// Serves the certificate currently in the TLS Secret.
    async fn from_secret(secret: &Secret) -> Probe {
        Probe::start(&data(secret, "tls.crt"), &data(secret, "tls.key")).await
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

fn data(secret: &Secret, key: &str) -> String {
    let bytes = &secret.data.as_ref().unwrap()[key];
    String::from_utf8(bytes.0.clone()).unwrap()
}

fn certs(pem: &str) -> Vec<CertInfo> {
    CertInfo::all_from_pem(pem).unwrap()
}

fn ders(pem: &str) -> Vec<Vec<u8>> {
    certs(pem).into_iter().map(|c| c.der).collect()
}

/// The names the serving certificate must carry in this setup.
fn names(ns: &str) -> Vec<String> {
    vec![
        format!("gitwarden-webhook.{ns}.svc"),
        format!("gitwarden-webhook.{ns}.svc.cluster.local"),
        "localhost".into(),
    ]
}

fn managers_of_ca_bundle<K: Resource>(object: &K) -> Vec<String> {
    object
        .meta()
        .managed_fields
        .iter()
        .flatten()
        .filter(|m| {
            m.fields_v1
                .as_ref()
                .is_some_and(|f| f.0.to_string().contains("f:caBundle"))
        })
        .filter_map(|m| m.manager.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_writes_both_secrets_and_the_ca_bundle_into_every_webhook_entry() {
    let setup = Setup::new("certs-install").await;
    let out = setup.run("install", None, &[]).expect_code(0).to_string();
    assert!(out.contains("created"), "{out}");

    let tls = setup.secret(TLS_SECRET).await;
    let ca = setup.secret(CA_SECRET).await;
    assert_eq!(tls.type_.as_deref(), Some("kubernetes.io/tls"));
    assert_eq!(ca.type_.as_deref(), Some("kubernetes.io/tls"));
    let bundle = data(&ca, "ca.crt");
    assert_eq!(
        ders(&bundle),
        ders(&data(&ca, "tls.crt")),
        "one CA in the bundle"
    );
    assert_eq!(ders(&data(&tls, "ca.crt")), ders(&bundle));
    assert!(data(&tls, "tls.key").contains("PRIVATE KEY"));
    assert!(data(&ca, "tls.key").contains("PRIVATE KEY"));
    let serving = CertInfo::from_pem(&data(&tls, "tls.crt")).unwrap();
    serves_for(
        &serving,
        &certs(&bundle),
        &names(setup.ns()),
        &["127.0.0.1".parse().unwrap()],
        SystemTime::now(),
    )
    .unwrap();

    let entries = setup.bundles().await;
    assert_eq!(entries.len(), 4, "{entries:?}");
    for (entry, pem) in &entries {
        assert_eq!(ders(pem), ders(&bundle), "caBundle of {entry}");
    }
    let vapi: Api<ValidatingWebhookConfiguration> = Api::all(setup.admin.clone());
    let config = vapi.get(&setup.name).await.unwrap();
    assert_eq!(managers_of_ca_bundle(&config), ["gitwarden-certs"]);

    // The API server itself accepts the installed certificate through the bundle.
    let probe = Probe::from_secret(&tls).await;
    setup.apply_as_agent(probe.port, 5).await;
    setup.api_server_trusts_probe().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_install_sends_no_writes() {
    let setup = Setup::new("certs-idempotent").await;
    setup.run("install", None, &[]).expect_code(0);
    let before = setup.versions().await;
    let out = setup.run("install", None, &[]).expect_code(0).to_string();
    assert!(out.contains("nothing to do: no writes sent"), "{out}");
    assert!(!out.contains("wrote"), "{out}");
    assert_eq!(setup.versions().await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_within_the_window_renews_the_serving_certificate_under_the_same_ca() {
    let setup = Setup::new("certs-rotate").await;
    setup
        .run(
            "install",
            None,
            &["--validity", "2h", "--renew-before", "1h"],
        )
        .expect_code(0);
    let old_tls = setup.secret(TLS_SECRET).await;
    let old_ca = setup.secret(CA_SECRET).await;
    let old_entries = setup.bundles().await;

    // A window shorter than the 2h left: nothing is due.
    let out = setup
        .run("rotate", None, &["--renew-before", "30m"])
        .expect_code(0)
        .to_string();
    assert!(out.contains("nothing to do"), "{out}");

    // `check` reports the renewal as due (exit 1) and writes nothing.
    let before = setup.versions().await;
    let out = setup
        .run("check", None, &["--renew-before", "3h"])
        .expect_code(1)
        .to_string();
    assert!(out.contains("would write: update Secret"), "{out}");
    assert_eq!(setup.versions().await, before);

    let out = setup
        .run("rotate", None, &["--renew-before", "3h"])
        .expect_code(0)
        .to_string();
    assert!(out.contains("serving certificate: renewed"), "{out}");
    assert!(out.contains("CA: kept"), "{out}");

    let new_tls = setup.secret(TLS_SECRET).await;
    let new_ca = setup.secret(CA_SECRET).await;
    assert_ne!(data(&new_tls, "tls.crt"), data(&old_tls, "tls.crt"));
    assert_ne!(data(&new_tls, "tls.key"), data(&old_tls, "tls.key"));
    assert_eq!(
        new_ca.resource_version(),
        old_ca.resource_version(),
        "the CA Secret is not written"
    );
    assert_eq!(
        setup.bundles().await,
        old_entries,
        "the caBundles are unchanged"
    );
    let serving = CertInfo::from_pem(&data(&new_tls, "tls.crt")).unwrap();
    let ca_only = certs(&data(&old_ca, "tls.crt"));
    serves_for(
        &serving,
        &ca_only,
        &names(setup.ns()),
        &[],
        SystemTime::now(),
    )
    .unwrap();
    let left = serving
        .validity
        .not_after
        .duration_since(SystemTime::now())
        .unwrap();
    assert!(left > Duration::from_secs(80 * 24 * 3600), "{left:?}");

    // The API server accepts the renewed certificate with the unchanged bundle.
    let probe = Probe::from_secret(&new_tls).await;
    setup.apply_as_agent(probe.port, 5).await;
    setup.api_server_trusts_probe().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ca_bundle_survives_a_server_side_apply_by_the_agent_without_it() {
    let setup = Setup::new("certs-ssa").await;
    setup.run("install", None, &[]).expect_code(0);
    let installed = setup.bundles().await;
    // The agent re-applies the configurations from git (no caBundle) with a
    // real change, forcing conflicts as it always does.
    setup.apply_as_agent(1, 7).await;
    let vapi: Api<ValidatingWebhookConfiguration> = Api::all(setup.admin.clone());
    let config = vapi.get(&setup.name).await.unwrap();
    assert_eq!(
        config.webhooks.as_ref().unwrap()[0].timeout_seconds,
        Some(7),
        "the agent's apply took effect"
    );
    let after = setup.bundles().await;
    assert_eq!(after, installed);
    for (entry, pem) in &after {
        assert!(!pem.is_empty(), "caBundle of {entry} removed");
    }
    // And gitwarden-certs sees nothing to repair.
    let out = setup.run("rotate", None, &[]).expect_code(0).to_string();
    assert!(out.contains("nothing to do"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_rotation_keeps_the_old_ca_in_the_bundle_and_both_certificates_stay_trusted() {
    let setup = Setup::new("certs-ca-rotation").await;
    setup.run("install", None, &[]).expect_code(0);
    let old_tls = setup.secret(TLS_SECRET).await;
    let old_ca_pem = data(&setup.secret(CA_SECRET).await, "tls.crt");

    // A CA window longer than the CA's remaining life renews the CA.
    let out = setup
        .run(
            "rotate",
            None,
            &["--ca-validity", "3000days", "--ca-renew-before", "2000days"],
        )
        .expect_code(0)
        .to_string();
    assert!(out.contains("CA: renewed"), "{out}");

    let ca = setup.secret(CA_SECRET).await;
    let new_ca_pem = data(&ca, "tls.crt");
    assert_ne!(ders(&new_ca_pem), ders(&old_ca_pem));
    let bundle = data(&ca, "ca.crt");
    let expected: Vec<Vec<u8>> = [ders(&new_ca_pem), ders(&old_ca_pem)].concat();
    assert_eq!(ders(&bundle), expected, "new CA first, old CA kept");
    for (entry, pem) in setup.bundles().await {
        assert_eq!(ders(&pem), expected, "caBundle of {entry}");
    }
    let tls = setup.secret(TLS_SECRET).await;
    assert_eq!(ders(&data(&tls, "ca.crt")), expected);
    let serving = CertInfo::from_pem(&data(&tls, "tls.crt")).unwrap();
    serves_for(
        &serving,
        &certs(&new_ca_pem),
        &names(setup.ns()),
        &[],
        SystemTime::now(),
    )
    .unwrap();

    // A pod still serving the old certificate (before the kubelet refreshes
    // its volume) is trusted, and so is one serving the new certificate.
    let old_probe = Probe::from_secret(&old_tls).await;
    setup.apply_as_agent(old_probe.port, 5).await;
    setup.api_server_trusts_probe().await.unwrap();
    let new_probe = Probe::from_secret(&tls).await;
    setup.apply_as_agent(new_probe.port, 5).await;
    setup.api_server_trusts_probe().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_without_installed_secrets_exits_3_and_creates_nothing() {
    let setup = Setup::new("certs-not-installed").await;
    let run = setup.run("rotate", None, &[]);
    run.expect_code(3);
    assert!(
        run.stderr.contains("gitwarden-certs install"),
        "{}",
        run.stderr
    );
    let api: Api<Secret> = Api::namespaced(setup.admin.clone(), setup.ns());
    assert!(api.get_opt(TLS_SECRET).await.unwrap().is_none());
    assert!(api.get_opt(CA_SECRET).await.unwrap().is_none());
    assert!(setup.bundles().await.iter().all(|(_, pem)| pem.is_empty()));

    // A dry-run install says what it would write, and writes none of it.
    let out = setup
        .run("install", None, &["--dry-run"])
        .expect_code(0)
        .to_string();
    assert!(out.contains("would write: create Secret"), "{out}");
    assert!(out.contains("dry run: 4 write(s) not sent"), "{out}");
    assert!(api.get_opt(TLS_SECRET).await.unwrap().is_none());
    assert!(setup.bundles().await.iter().all(|(_, pem)| pem.is_empty()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_reports_a_missing_webhook_configuration_with_exit_1() {
    let setup = Setup::new("certs-missing-config").await;
    let run = setup.run(
        "install",
        None,
        &["--validating-webhook", "certs-test-does-not-exist"],
    );
    let out = run.expect_code(1);
    assert!(
        out.contains("warning: ValidatingWebhookConfiguration/certs-test-does-not-exist not found"),
        "{out}"
    );
    // Everything else was still done.
    for (entry, pem) in setup.bundles().await {
        assert!(!pem.is_empty(), "caBundle of {entry}");
    }
}

/// The shipped Role and ClusterRole of `deploy/base/certs.yaml`, with the
/// ClusterRole's resourceNames pointed at this test's configurations.
fn shipped_rbac(setup: &Setup) -> Vec<Value> {
    let text = std::fs::read_to_string(repo_root().join("deploy/base/certs.yaml")).unwrap();
    let docs: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    let sa =
        json!([{ "kind": "ServiceAccount", "name": "gitwarden-certs", "namespace": setup.ns() }]);
    let mut out = Vec::new();
    for mut doc in docs {
        match doc["kind"].as_str().unwrap() {
            "Role" | "RoleBinding" => {
                doc["metadata"]["namespace"] = json!(setup.ns());
            }
            "ClusterRole" => {
                doc["metadata"]["name"] = json!(setup.name);
                doc["rules"][0]["resourceNames"] = json!([setup.name]);
            }
            "ClusterRoleBinding" => {
                doc["metadata"]["name"] = json!(setup.name);
                doc["roleRef"]["name"] = json!(setup.name);
            }
            _ => continue,
        }
        if doc.get("subjects").is_some() {
            doc["subjects"] = sa.clone();
        }
        out.push(doc);
    }
    assert_eq!(
        out.len(),
        4,
        "Role, RoleBinding, ClusterRole, ClusterRoleBinding"
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cronjob_rbac_suffices_for_rotate_but_not_for_a_first_install() {
    let setup = Setup::new("certs-rbac").await;
    let rbac = shipped_rbac(&setup);
    let manifest = json!({ "apiVersion": "v1", "kind": "List", "items": rbac }).to_string();
    let admin = setup.cluster.kubeconfig(Identity::Admin);
    setup
        .cluster
        .kubectl_full(&admin, &["apply", "-f", "-"], &manifest, &[])
        .expect_success();
    let (_, kubeconfig) = setup
        .cluster
        .mint_service_account_token(setup.ns(), "gitwarden-certs")
        .await
        .unwrap();
    let cleanup = ClusterRbac(setup.cluster, setup.name.clone());

    // Without Secrets, the CronJob's identity cannot install: it may not create.
    let run = setup.run("install", Some(&kubeconfig), &[]);
    run.expect_code(2);
    assert!(run.stderr.contains("forbidden"), "{}", run.stderr);

    setup.run("install", None, &[]).expect_code(0);
    let before = data(&setup.secret(TLS_SECRET).await, "tls.crt");
    // Renewing the CA (and so the serving certificate) needs only get/update and patch.
    let out = setup
        .run(
            "rotate",
            Some(&kubeconfig),
            &["--ca-validity", "3000days", "--ca-renew-before", "2000days"],
        )
        .expect_code(0)
        .to_string();
    assert!(out.contains("CA: renewed"), "{out}");
    assert_ne!(data(&setup.secret(TLS_SECRET).await, "tls.crt"), before);
    drop(cleanup);
}

/// Deletes the test's ClusterRole and ClusterRoleBinding (cluster-scoped,
/// so the namespace's deletion does not remove them).
struct ClusterRbac(&'static TestCluster, String);

impl Drop for ClusterRbac {
    fn drop(&mut self) {
        for kind in ["clusterrolebinding", "clusterrole"] {
            let _ = self.0.kubectl(
                Identity::Admin,
                &["delete", kind, &self.1, "--ignore-not-found"],
            );
        }
    }
}

/// The container arguments of the `kind` named `name` in rendered manifests
/// (a Job's pod, or a CronJob's job's pod), after the subcommand, without
/// `--namespace` (the test's namespace replaces gitwarden-system).
fn rendered_rotate_args(rendered: &[Value], kind: &str, name: &str) -> Vec<String> {
    let doc = rendered
        .iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} rendered"));
    let pod = match kind {
        "CronJob" => &doc["spec"]["jobTemplate"]["spec"]["template"]["spec"],
        _ => &doc["spec"]["template"]["spec"],
    };
    let args: Vec<String> = pod["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(args[0], "rotate", "{args:?}");
    args.into_iter()
        .skip(1)
        .filter(|a| !a.starts_with("--namespace"))
        .collect()
}

/// `kubectl kustomize` of a test overlay of `tests/testdata/e2e`, as documents.
fn rendered(overlay: &str) -> Vec<Value> {
    let text = gitwarden_tests::kubectl::kustomize(
        &gitwarden_tests::testdata::dir().join("e2e").join(overlay),
    )
    .unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| serde::Deserialize::deserialize(doc).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_static_admission_component_keeps_the_clusterip_in_the_certificate_the_cronjob_renews()
{
    const ADDRESS: &str = "10.96.0.250";
    let install = rendered("static-admission-install");
    let service = install
        .iter()
        .find(|d| d["kind"] == "Service" && d["metadata"]["name"] == "gitwarden-webhook")
        .unwrap();
    assert_eq!(service["spec"]["clusterIP"], ADDRESS);
    let job = rendered_rotate_args(&install, "Job", "gitwarden-certs-bootstrap");
    let cronjob = rendered_rotate_args(&install, "CronJob", "gitwarden-certs");
    let with_address = format!("--ip={ADDRESS}");
    assert!(job.contains(&with_address), "{job:?}");
    assert!(cronjob.contains(&with_address), "{cronjob:?}");

    // Issued as the bootstrap Job issues it, into the empty Secrets
    // deploy/base ships; renewed as the CronJob renews it.
    let setup = Setup::new("certs-static").await;
    for secret in [CA_SECRET, TLS_SECRET] {
        setup
            .cluster
            .kubectl(
                Identity::Admin,
                &["create", "secret", "generic", secret, "-n", setup.ns()],
            )
            .expect_success();
    }
    let job: Vec<&str> = job.iter().map(String::as_str).collect();
    setup.run("rotate", None, &job).expect_code(0);
    let issued = data(&setup.secret(TLS_SECRET).await, "tls.crt");
    let address: std::net::IpAddr = ADDRESS.parse().unwrap();
    assert!(certs(&issued)[0].ips.contains(&address));
    let cronjob: Vec<&str> = cronjob.iter().map(String::as_str).collect();
    setup.run("rotate", None, &cronjob).expect_code(0);
    assert_eq!(
        data(&setup.secret(TLS_SECRET).await, "tls.crt"),
        issued,
        "the CronJob's rotate renewed a valid certificate"
    );

    // What the Component prevents: deploy/base's CronJob alone renews the
    // certificate without the address kube-apiserver dials.
    let base = rendered_rotate_args(&rendered("base-install"), "CronJob", "gitwarden-certs");
    let base: Vec<&str> = base.iter().map(String::as_str).collect();
    setup.run("rotate", None, &base).expect_code(0);
    let renewed = data(&setup.secret(TLS_SECRET).await, "tls.crt");
    assert!(!certs(&renewed)[0].ips.contains(&address));
}
