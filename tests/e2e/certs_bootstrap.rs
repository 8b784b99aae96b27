//! The certificate bootstrap of `kubectl apply -k deploy/base`, against a real
//! API server: the shipped `deploy/base/certs.yaml` as an administrator
//! applies it (two empty Secrets, the service account, its RBAC, the Job and
//! the CronJob), then what the bootstrap Job runs — its command and flags,
//! read from the manifest — as its real service account with a minted token.
//!
//! The test control plane runs no pod from deploy/base (its image is not
//! there), so the test is the Job's pod. It takes a control plane of its
//! own: it needs the real names — namespace `gitwarden-system`, ClusterRole
//! `gitwarden-certs`, webhook configurations `gitwarden` — which other tests
//! of the shared cluster use too.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use gitwarden_certs::inspect::CertInfo;
use gitwarden_certs::verify::{key_matches, serves_for};
use gitwarden_tests::cluster::repo_root;
use gitwarden_tests::{Identity, TestCluster};
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

const NAMESPACE: &str = "gitwarden-system";
const CA_SECRET: &str = "gitwarden-webhook-ca";
const TLS_SECRET: &str = "gitwarden-webhook-tls";
const JOB: &str = "gitwarden-certs-bootstrap";

/// One run of the real `gitwarden-certs` binary.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    #[track_caller]
    fn expect_code(&self, code: i32) -> &Run {
        assert_eq!(
            self.code, code,
            "gitwarden-certs exited {} (expected {code}):\nstdout: {}\nstderr: {}",
            self.code, self.stdout, self.stderr
        );
        self
    }
}

/// A private control plane after `kubectl apply` of the shipped namespace
/// and certs manifests, with a token of the real `gitwarden-certs` service
/// account.
struct Installed {
    cluster: TestCluster,
    admin: Client,
    /// The kubeconfig of the Job's service account.
    job_identity: PathBuf,
    /// The Job's arguments, as shipped.
    job_args: Vec<String>,
}

fn manifest(name: &str) -> PathBuf {
    repo_root().join("deploy/base").join(name)
}

/// The documents of a shipped manifest file.
fn documents(name: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(manifest(name)).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| serde::Deserialize::deserialize(doc).unwrap())
        .collect()
}

impl Installed {
    async fn new() -> Installed {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let cluster = TestCluster::start_private().unwrap();
        let admin = cluster.client(Identity::Admin).await.unwrap();
        let out = apply(&cluster, &[]);
        assert!(
            out.contains("secret/gitwarden-webhook-tls created"),
            "{out}"
        );
        assert!(
            out.contains("job.batch/gitwarden-certs-bootstrap created"),
            "{out}"
        );
        let (_, job_identity) = cluster
            .mint_service_account_token(NAMESPACE, "gitwarden-certs")
            .await
            .unwrap();
        let job = documents("certs.yaml")
            .into_iter()
            .find(|d| d["kind"] == "Job" && d["metadata"]["name"] == JOB)
            .unwrap();
        let container = &job["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(
            container["command"],
            json!(["/usr/local/bin/gitwarden-certs"])
        );
        let job_args = container["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect();
        Installed {
            cluster,
            admin,
            job_identity,
            job_args,
        }
    }

    /// Applies the shipped manifests again as the administrator.
    #[track_caller]
    fn reapply(&self, extra: &[&str]) -> String {
        apply(&self.cluster, extra)
    }

    /// Runs `gitwarden-certs` with `args` as the Job's service account.
    fn run(&self, args: &[String]) -> Run {
        run_certs(&self.job_identity, args)
    }

    /// Runs exactly what the Job runs, as the Job's service account.
    fn run_job(&self) -> Run {
        self.run(&self.job_args)
    }

    async fn secret(&self, name: &str) -> Secret {
        let api: Api<Secret> = Api::namespaced(self.admin.clone(), NAMESPACE);
        api.get(name).await.unwrap()
    }

    /// The data of both Secrets, base64-decoded, as text.
    async fn data(&self) -> BTreeMap<String, BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        for name in [CA_SECRET, TLS_SECRET] {
            let data = self
                .secret(name)
                .await
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, String::from_utf8(v.0).unwrap()))
                .collect();
            out.insert(name.to_string(), data);
        }
        out
    }

    async fn versions(&self) -> Vec<String> {
        let mut out = Vec::new();
        for name in [CA_SECRET, TLS_SECRET] {
            out.push(self.secret(name).await.resource_version().unwrap());
        }
        out
    }
}

/// `kubectl apply EXTRA -f namespace.yaml -f certs.yaml` as the
/// administrator; kubectl's output.
#[track_caller]
fn apply(cluster: &TestCluster, extra: &[&str]) -> String {
    let (namespace, certs) = (manifest("namespace.yaml"), manifest("certs.yaml"));
    let mut args = vec!["apply"];
    args.extend_from_slice(extra);
    args.extend([
        "-f",
        namespace.to_str().unwrap(),
        "-f",
        certs.to_str().unwrap(),
    ]);
    cluster
        .kubectl(Identity::Admin, &args)
        .expect_success()
        .to_string()
}

fn run_certs(kubeconfig: &Path, args: &[String]) -> Run {
    let bin = gitwarden_tests::binaries::binary("gitwarden-certs").unwrap();
    let out = Command::new(bin)
        .args(args)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .env_remove("KUBECONFIG")
        .env_remove("GITWARDEN_NAMESPACE")
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The field managers that own any key of a Secret's `data`.
fn data_managers(secret: &Secret) -> Vec<String> {
    secret
        .managed_fields()
        .iter()
        .filter(|m| {
            m.fields_v1
                .as_ref()
                .is_some_and(|f| f.0.get("f:data").is_some())
        })
        .filter_map(|m| m.manager.clone())
        .collect()
}

/// The Secrets hold a CA (certificate, its key, a bundle of it) and a
/// serving certificate for the Service's DNS names that verifies against the
/// bundle the webhook mounts.
fn assert_issued(data: &BTreeMap<String, BTreeMap<String, String>>) {
    let ca = &data[CA_SECRET];
    let tls = &data[TLS_SECRET];
    let ca_cert = CertInfo::from_pem(&ca["tls.crt"]).unwrap();
    assert!(ca_cert.is_ca, "{}", ca_cert.subject);
    assert!(key_matches(&ca_cert, &ca["tls.key"]), "the CA key matches");
    let bundle = CertInfo::all_from_pem(&tls["ca.crt"]).unwrap();
    assert_eq!(bundle, [ca_cert], "the mounted bundle is the CA");
    assert_eq!(ca["ca.crt"], tls["ca.crt"]);
    let serving = CertInfo::from_pem(&tls["tls.crt"]).unwrap();
    assert!(
        key_matches(&serving, &tls["tls.key"]),
        "the serving key matches"
    );
    let names = [
        format!("gitwarden-webhook.{NAMESPACE}.svc"),
        format!("gitwarden-webhook.{NAMESPACE}.svc.cluster.local"),
    ];
    serves_for(&serving, &bundle, &names, &[], SystemTime::now()).unwrap();
    assert_eq!(serving.dns_names, names);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bootstrap_job_fills_the_shipped_empty_secrets_and_no_reapply_wipes_them() {
    let installed = Installed::new().await;
    for name in [CA_SECRET, TLS_SECRET] {
        let secret = installed.secret(name).await;
        assert_eq!(secret.type_.as_deref(), Some("Opaque"), "{name}");
        assert!(
            secret.data.unwrap_or_default().is_empty(),
            "{name} ships empty"
        );
    }

    // What the Job runs, as the Job's identity: no configurations are
    // registered yet (the webhook does that once it has this certificate).
    let run = installed.run_job();
    run.expect_code(0);
    for line in [
        "Secret gitwarden-system/gitwarden-webhook-ca: empty, not issued yet",
        "Secret gitwarden-system/gitwarden-webhook-tls: empty, not issued yet",
        "CA: created (no CA stored)",
        "serving certificate: created (no serving certificate stored)",
        "note: ValidatingWebhookConfiguration/gitwarden not registered yet",
        "note: MutatingWebhookConfiguration/gitwarden not registered yet",
        "wrote: update Secret gitwarden-system/gitwarden-webhook-ca (ca.crt, tls.crt, tls.key)",
        "wrote: update Secret gitwarden-system/gitwarden-webhook-tls (ca.crt, tls.crt, tls.key)",
    ] {
        assert!(
            run.stdout.contains(line),
            "{line:?} missing:\n{}",
            run.stdout
        );
    }
    let issued = installed.data().await;
    assert_issued(&issued);
    for name in [CA_SECRET, TLS_SECRET] {
        let secret = installed.secret(name).await;
        assert_eq!(secret.type_.as_deref(), Some("Opaque"), "{name}");
        assert_eq!(data_managers(&secret), ["gitwarden-certs"], "{name}");
    }

    // The administrator applies again, client-side: nothing changes.
    let out = installed.reapply(&[]);
    for object in [
        "secret/gitwarden-webhook-ca unchanged",
        "secret/gitwarden-webhook-tls unchanged",
        "job.batch/gitwarden-certs-bootstrap unchanged",
    ] {
        assert!(out.contains(object), "{object} missing:\n{out}");
    }
    assert_eq!(installed.data().await, issued, "kept by kubectl apply");

    // Server-side, without forcing: the manifests claim no field
    // gitwarden-certs owns, so there is no conflict.
    installed.reapply(&["--server-side"]);
    assert_eq!(
        installed.data().await,
        issued,
        "kept by kubectl apply --server-side"
    );

    // As the agent applies from git: server-side, its own manager, forced.
    installed.reapply(&[
        "--server-side",
        "--force-conflicts",
        "--field-manager=gitwarden",
    ]);
    assert_eq!(installed.data().await, issued, "kept by the agent's apply");

    // And client-side once more, after the server-side applies.
    installed.reapply(&[]);
    assert_eq!(
        installed.data().await,
        issued,
        "kept by a later kubectl apply"
    );
    for name in [CA_SECRET, TLS_SECRET] {
        let secret = installed.secret(name).await;
        assert_eq!(data_managers(&secret), ["gitwarden-certs"], "{name}");
    }

    // The Job was never replaced: the same object, its template as created.
    let jobs: Api<Job> = Api::namespaced(installed.admin.clone(), NAMESPACE);
    assert_eq!(jobs.get(JOB).await.unwrap().metadata.generation, Some(1));

    // A second run (the Job retried, or the CronJob) has nothing to do.
    let before = installed.versions().await;
    let run = installed.run_job();
    run.expect_code(0);
    assert!(
        run.stdout.contains("nothing to do: no writes sent"),
        "{}",
        run.stdout
    );
    assert!(
        !run.stdout.contains("empty, not issued yet"),
        "{}",
        run.stdout
    );
    assert_eq!(installed.versions().await, before);
    assert_eq!(installed.data().await, issued);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_injects_registered_configurations_and_never_replaces_an_unusable_ca() {
    let installed = Installed::new().await;
    installed.run_job().expect_code(0);
    let issued = installed.data().await;

    // Once the webhook has registered a configuration, rotate injects the
    // bundle into it. This one matches nothing, so it cannot lock the
    // control plane; the mutating one stays unregistered.
    let validating = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": { "name": "gitwarden" },
        "webhooks": [{
            "name": "validate.gitwarden.io",
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "failurePolicy": "Ignore",
            "clientConfig": { "service": { "name": "gitwarden-webhook", "namespace": NAMESPACE, "path": "/validate" } },
            "rules": [{
                "apiGroups": ["bootstrap.test.gitwarden.io"], "apiVersions": ["v1"],
                "operations": ["CREATE"], "resources": ["nothings"]
            }],
        }]
    });
    let configs: Api<ValidatingWebhookConfiguration> = Api::all(installed.admin.clone());
    configs
        .patch(
            "gitwarden",
            &PatchParams::apply("gitwarden-webhook"),
            &Patch::Apply(&validating),
        )
        .await
        .unwrap();
    let run = installed.run_job();
    run.expect_code(0);
    assert!(
        run.stdout
            .contains("wrote: patch ValidatingWebhookConfiguration gitwarden: caBundle of validate.gitwarden.io"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("note: MutatingWebhookConfiguration/gitwarden not registered yet"),
        "{}",
        run.stdout
    );
    let live = configs.get("gitwarden").await.unwrap();
    let injected = live.webhooks.unwrap()[0]
        .client_config
        .ca_bundle
        .clone()
        .unwrap();
    assert_eq!(
        String::from_utf8(injected.0).unwrap(),
        issued[CA_SECRET]["ca.crt"]
    );

    // Without the flag, a configuration that does not exist is exit 1.
    let strict: Vec<String> = installed
        .job_args
        .iter()
        .filter(|a| *a != "--configurations-optional")
        .cloned()
        .collect();
    let run = installed.run(&strict);
    run.expect_code(1);
    assert!(
        run.stdout
            .contains("warning: MutatingWebhookConfiguration/gitwarden not found"),
        "{}",
        run.stdout
    );

    // An absent Secret: rotate creates none (exit 3), and applying the
    // manifests again brings it back empty; the next run issues a serving
    // certificate under the CA that was kept.
    installed
        .cluster
        .kubectl(
            Identity::Admin,
            &["-n", NAMESPACE, "delete", "secret", TLS_SECRET],
        )
        .expect_success();
    let run = installed.run_job();
    run.expect_code(3);
    assert!(run.stderr.contains("apply deploy/base"), "{}", run.stderr);
    let ca_version = installed.secret(CA_SECRET).await.resource_version();
    installed.reapply(&[]);
    let run = installed.run_job();
    run.expect_code(0);
    assert!(run.stdout.contains("CA: kept"), "{}", run.stdout);
    let reissued = installed.data().await;
    assert_issued(&reissued);
    assert_eq!(reissued[CA_SECRET], issued[CA_SECRET]);
    assert_ne!(
        reissued[TLS_SECRET]["tls.crt"],
        issued[TLS_SECRET]["tls.crt"]
    );
    assert_eq!(
        installed.secret(CA_SECRET).await.resource_version(),
        ca_version
    );

    // A CA key that does not belong to the CA: an error, nothing written.
    let stranger = gitwarden_certs::CertificateAuthority::generate(
        "stranger",
        std::time::Duration::from_secs(3600),
    )
    .unwrap();
    let secrets: Api<Secret> = Api::namespaced(installed.admin.clone(), NAMESPACE);
    let corrupt = json!({ "stringData": { "tls.key": stranger.key_pem() } });
    secrets
        .patch(CA_SECRET, &PatchParams::default(), &Patch::Merge(&corrupt))
        .await
        .unwrap();
    let before = installed.versions().await;
    let run = installed.run_job();
    run.expect_code(2);
    assert!(
        run.stderr
            .contains("refusing to replace the CA in Secret gitwarden-system/gitwarden-webhook-ca")
            && run.stderr.contains("does not belong"),
        "{}",
        run.stderr
    );
    assert_eq!(installed.versions().await, before, "nothing written");
    assert_eq!(
        installed.data().await[CA_SECRET]["tls.key"],
        stranger.key_pem()
    );
}
