//! The webhook registers its own configurations, from the template in git,
//! only once it can answer — so an install that cannot serve never locks
//! the cluster — and keeps them as the template says. A real webhook process
//! with the webhook's real RBAC from `deploy/base`, against the real API
//! server; the template is `deploy/local`'s (URL-based) rendering of the one
//! in `deploy/base`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use gitwarden_tests::cluster::repo_root;
use gitwarden_tests::loopback::{LoopbackWebhook, PolicySource};
use gitwarden_tests::webhook::{EXCLUSIVE, apply, render};
use gitwarden_tests::{Identity, TestCluster, testdata, wait_for};
use serde_json::Value;

const KINDS: &str = "validatingwebhookconfiguration,mutatingwebhookconfiguration";

/// gitwarden-system with the webhook's RBAC and the agent's identity, but no
/// policy ConfigMap yet and no webhook configuration.
struct Installed {
    cluster: &'static TestCluster,
    admin: PathBuf,
    webhook_kubeconfig: PathBuf,
    dir: tempfile::TempDir,
}

impl Installed {
    async fn new() -> Installed {
        let cluster = TestCluster::shared();
        let admin = cluster.kubeconfig(Identity::Admin);
        remove_configurations(&admin);
        let root = repo_root();
        apply(
            &admin,
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: gitwarden-system\n",
        )
        .unwrap();
        let _ = gitwarden_tests::kubectl::run_kubectl(
            &admin,
            &[
                "-n",
                "gitwarden-system",
                "delete",
                "configmap",
                "gitwarden-policy",
                "--ignore-not-found",
            ],
        );
        apply(
            &admin,
            &std::fs::read_to_string(root.join("deploy/base/rbac-webhook.yaml")).unwrap(),
        )
        .unwrap();
        apply(
            &admin,
            &testdata::read("agent-as-cluster-admin.yaml").unwrap(),
        )
        .unwrap();
        let (_, webhook_kubeconfig) = cluster
            .mint_service_account_token("gitwarden-system", "gitwarden-webhook")
            .await
            .unwrap();
        Installed {
            cluster,
            admin,
            webhook_kubeconfig,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn template_path(&self) -> PathBuf {
        self.dir.path().join("webhook-configuration.yaml")
    }

    /// A webhook registering from the template file, as the webhook's own
    /// service account; it has no policy until [`Installed::publish_policy`].
    async fn webhook(&self) -> LoopbackWebhook {
        self.webhook_registering_every("300ms").await
    }

    /// [`Installed::webhook`] with `--register-interval INTERVAL`.
    async fn webhook_registering_every(&self, interval: &str) -> LoopbackWebhook {
        LoopbackWebhook::launch(PolicySource::ConfigMap {
            kubeconfig: &self.webhook_kubeconfig,
            name: "gitwarden-system/gitwarden-policy",
        })
        .args([
            "--reload-interval".into(),
            "300ms".into(),
            "--register-interval".into(),
            interval.into(),
            "--register-configurations".into(),
            self.template_path().into_os_string(),
        ])
        .without_waiting_for_policy()
        .start()
        .await
        .unwrap()
    }

    /// The shipped configurations, calling `webhook`, without a CA bundle:
    /// registering it is the webhook's job.
    fn write_template(&self, webhook: &LoopbackWebhook) {
        let shipped =
            std::fs::read_to_string(repo_root().join("deploy/local/webhook-configuration.yaml"))
                .unwrap();
        let template = render(&shipped, &[("WEBHOOK_URL", &webhook.url)])
            .lines()
            .filter(|line| !line.contains("${CA_BUNDLE}"))
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(self.template_path(), template).unwrap();
    }

    fn publish_policy(&self) {
        apply(
            &self.admin,
            &std::fs::read_to_string(repo_root().join("deploy/base/policy.yaml")).unwrap(),
        )
        .unwrap();
    }

    /// The live configuration `kind/gitwarden`, if any.
    fn live(&self, kind: &str) -> Option<Value> {
        let out = self.cluster.kubectl(
            Identity::Admin,
            &[
                "get",
                kind,
                "gitwarden",
                "-o",
                "json",
                "--show-managed-fields",
            ],
        );
        out.success
            .then(|| serde_json::from_str(&out.stdout).unwrap())
    }

    /// Waits until `kind/gitwarden` satisfies `check`.
    async fn wait_live(&self, kind: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        wait_for(Duration::from_secs(20), || async {
            self.live(kind).filter(|live| check(live))
        })
        .await
        .unwrap_or_else(|| panic!("{kind}/gitwarden: {what} within 20s: {:?}", self.live(kind)))
    }

    /// Whether alice (cluster-admin) can create a ConfigMap in a namespace
    /// gitwarden protects.
    fn alice_can_write(&self, name: &str) -> bool {
        let out = self.cluster.kubectl(
            Identity::Alice,
            &["-n", "default", "create", "configmap", name],
        );
        if out.success {
            let _ = gitwarden_tests::kubectl::run_kubectl(
                &self.admin,
                &[
                    "-n",
                    "default",
                    "delete",
                    "configmap",
                    name,
                    "--ignore-not-found",
                ],
            );
        }
        out.success
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        remove_configurations(&self.admin);
    }
}

fn remove_configurations(admin: &Path) {
    let _ = gitwarden_tests::kubectl::run_kubectl(
        admin,
        &["delete", KINDS, "gitwarden", "--ignore-not-found"],
    );
}

fn bundles(live: &Value) -> Vec<String> {
    live["webhooks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|w| {
            w["clientConfig"]["caBundle"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect()
}

fn webhook_names(live: &Value) -> Vec<String> {
    live["webhooks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|w| w["name"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unready_webhook_registers_nothing_and_the_cluster_stays_writable() {
    let _exclusive = EXCLUSIVE.lock().await;
    let installed = Installed::new().await;
    let webhook = installed.webhook().await;
    installed.write_template(&webhook);

    // No policy: the webhook cannot decide, so it must not be asked to.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let ready = webhook
        .http()
        .get(format!("{}/readyz", webhook.url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status().as_u16(), 503);
    assert!(installed.live("validatingwebhookconfiguration").is_none());
    assert!(installed.live("mutatingwebhookconfiguration").is_none());
    assert!(installed.alice_can_write("written-while-unready"));
    assert!(
        webhook
            .log_tail(50)
            .contains("not registered until this replica can answer"),
        "{}",
        webhook.log_tail(50)
    );

    // Ready: registered, with the CA it serves with, and enforcing.
    installed.publish_policy();
    let expected = base64::engine::general_purpose::STANDARD.encode(webhook.ca_pem());
    for kind in [
        "validatingwebhookconfiguration",
        "mutatingwebhookconfiguration",
    ] {
        let live = installed
            .wait_live(kind, "registered", |live| !bundles(live).is_empty())
            .await;
        assert!(
            bundles(&live).iter().all(|b| *b == expected),
            "every entry carries the webhook's CA: {live}"
        );
        let managers: Vec<&str> = live["metadata"]["managedFields"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["manager"].as_str())
            .collect();
        assert_eq!(managers, ["gitwarden-webhook"], "{live}");
    }
    let refused = wait_for(Duration::from_secs(20), || async {
        (!installed.alice_can_write("written-while-enforcing")).then_some(())
    })
    .await;
    assert!(refused.is_some(), "alice is refused once registered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_or_extended_configuration_is_put_back_as_the_template_says() {
    let _exclusive = EXCLUSIVE.lock().await;
    let installed = Installed::new().await;
    let webhook = installed.webhook().await;
    installed.write_template(&webhook);
    installed.publish_policy();
    let registered = installed
        .wait_live("validatingwebhookconfiguration", "registered", |l| {
            !bundles(l).is_empty()
        })
        .await;
    let names = webhook_names(&registered);

    // Deleted by a cluster-admin (no webhook sees that): registered again.
    let deleted = installed.cluster.kubectl(
        Identity::Admin,
        &["delete", "validatingwebhookconfiguration", "gitwarden"],
    );
    assert!(deleted.success, "{}", deleted.stderr);
    let back = installed
        .wait_live("validatingwebhookconfiguration", "registered again", |l| {
            l["metadata"]["uid"] != registered["metadata"]["uid"]
        })
        .await;
    assert_eq!(webhook_names(&back), names);

    // Extended with an entry that would answer for gitwarden: removed again.
    let mut extended = back.clone();
    let mut extra = extended["webhooks"][0].clone();
    extra["name"] = "extra.example.com".into();
    extra["failurePolicy"] = "Ignore".into();
    extended["webhooks"].as_array_mut().unwrap().push(extra);
    extended["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("managedFields");
    let replaced = gitwarden_tests::kubectl::run_kubectl_stdin(
        &installed.admin,
        &["replace", "-f", "-"],
        &extended.to_string(),
    );
    assert!(replaced.success, "{}", replaced.stderr);
    let restored = installed
        .wait_live("validatingwebhookconfiguration", "restored", |l| {
            webhook_names(l) == names && l["metadata"]["uid"] == back["metadata"]["uid"]
        })
        .await;
    assert!(!bundles(&restored).is_empty());
    let metrics = webhook.metrics().await.unwrap();
    for outcome in ["Registered", "Restored"] {
        assert!(
            metrics.contains(&format!(
                "gitwarden_webhook_registration_outcomes_total{{outcome=\"{outcome}\"}}"
            )),
            "{metrics}"
        );
    }
}

/// Deleting a configuration is the one change no webhook can refuse, and
/// nothing enforces until it is back: the webhook watches its configurations
/// and registers a deleted one again at once, not at its next interval (an
/// hour here), and it registers them first as soon as it is ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_configuration_is_registered_again_at_once_not_an_interval_later() {
    let _exclusive = EXCLUSIVE.lock().await;
    let installed = Installed::new().await;
    let webhook = installed.webhook_registering_every("1h").await;
    installed.write_template(&webhook);
    installed.publish_policy();
    for kind in [
        "validatingwebhookconfiguration",
        "mutatingwebhookconfiguration",
    ] {
        let live = installed
            .wait_live(kind, "registered", |l| !bundles(l).is_empty())
            .await;
        let deleted = installed
            .cluster
            .kubectl(Identity::Admin, &["delete", kind, "gitwarden"]);
        assert!(deleted.success, "{}", deleted.stderr);
        let back = installed
            .wait_live(kind, "registered again", |l| {
                l["metadata"]["uid"] != live["metadata"]["uid"]
            })
            .await;
        assert!(!bundles(&back).is_empty(), "{back}");
    }
    assert!(!installed.alice_can_write("after-the-deletions"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_that_cannot_verify_the_webhook_is_replaced_and_a_superset_is_kept() {
    let _exclusive = EXCLUSIVE.lock().await;
    let installed = Installed::new().await;
    let webhook = installed.webhook().await;
    installed.write_template(&webhook);
    installed.publish_policy();
    let own = base64::engine::general_purpose::STANDARD.encode(webhook.ca_pem());
    installed
        .wait_live("mutatingwebhookconfiguration", "registered", |l| {
            bundles(l).iter().all(|b| *b == own) && !bundles(l).is_empty()
        })
        .await;

    // A renewed CA added beside the current one (what gitwarden-certs does
    // before it switches the serving certificate): kept.
    let other =
        gitwarden_certs::CertificateAuthority::generate("renewed-ca", Duration::from_secs(86_400))
            .unwrap();
    let superset = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}{}",
        webhook.ca_pem(),
        other.cert_pem()
    ));
    let set_bundle = |bundle: &str| {
        let patch = format!(
            "[{{\"op\":\"replace\",\"path\":\"/webhooks/0/clientConfig/caBundle\",\"value\":\"{bundle}\"}}]"
        );
        let out = installed.cluster.kubectl(
            Identity::Admin,
            &[
                "patch",
                "mutatingwebhookconfiguration",
                "gitwarden",
                "--type=json",
                "-p",
                &patch,
            ],
        );
        assert!(out.success, "{}", out.stderr);
    };
    set_bundle(&superset);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let live = installed.live("mutatingwebhookconfiguration").unwrap();
    assert_eq!(bundles(&live)[0], superset, "a superset is kept");

    // Only a foreign CA: the API server could not verify the webhook; replaced.
    set_bundle(&base64::engine::general_purpose::STANDARD.encode(other.cert_pem()));
    installed
        .wait_live("mutatingwebhookconfiguration", "bundle replaced", |l| {
            bundles(l)[0] == own
        })
        .await;
}
