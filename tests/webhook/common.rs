//! What every webhook test starts from.

use gitwarden_shared::audit::AuditRecord;
use gitwarden_tests::testdata;
pub use gitwarden_tests::wait_for;
use gitwarden_tests::webhook::{EXCLUSIVE, WebhookFixture, apply};
use gitwarden_tests::{Identity, KubectlOutput, TestCluster, TestNamespace};

/// A cluster with gitwarden's webhook enforcing, and a namespace for the test.
pub struct Setup {
    pub cluster: &'static TestCluster,
    pub gitwarden: WebhookFixture,
    pub ns: TestNamespace,
    _exclusive: tokio::sync::MutexGuard<'static, ()>,
}

impl Setup {
    pub async fn new(prefix: &str) -> Setup {
        let exclusive = EXCLUSIVE.lock().await;
        let cluster = TestCluster::shared();
        let gitwarden = WebhookFixture::install(cluster).await.unwrap();
        // Only the agent may create namespaces now.
        let ns = cluster
            .namespace_as(prefix, gitwarden.agent_kubeconfig())
            .await
            .unwrap();
        Setup {
            cluster,
            gitwarden,
            ns,
            _exclusive: exclusive,
        }
    }

    pub fn ns(&self) -> &str {
        self.ns.name()
    }

    /// kubectl as a human in the test namespace.
    pub fn kubectl(&self, who: Identity, args: &[&str]) -> KubectlOutput {
        let mut full = vec!["-n", self.ns()];
        full.extend_from_slice(args);
        self.cluster.kubectl(who, &full)
    }

    /// kubectl as the agent in the test namespace.
    pub fn agent(&self, args: &[&str]) -> KubectlOutput {
        let mut full = vec!["-n", self.ns()];
        full.extend_from_slice(args);
        self.cluster
            .kubectl_with(self.gitwarden.agent_kubeconfig(), &full)
    }

    /// Applies a manifest as the agent (the only identity allowed to write).
    pub fn agent_apply(&self, manifest: &str) {
        apply(self.gitwarden.agent_kubeconfig(), manifest).unwrap();
    }

    /// A ConfigMap the agent manages, in the test namespace.
    pub fn managed_configmap(&self, name: &str) {
        self.agent_apply(&self.configmap(name, "from-git"));
    }

    /// A Deployment the agent manages, in the test namespace.
    pub fn managed_deployment(&self, name: &str) {
        self.agent_apply(&self.fixture("webhook/managed-deployment.yaml", &[("NAME", name)]));
    }

    /// The managed ConfigMap `name` in the test namespace with `k: value`.
    pub fn configmap(&self, name: &str, value: &str) -> String {
        self.fixture(
            "webhook/managed-configmap.yaml",
            &[("NAME", name), ("VALUE", value)],
        )
    }

    /// The fixture `name` rendered with `vars` and the test's `${NAMESPACE}`.
    pub fn fixture(&self, name: &str, vars: &[(&str, &str)]) -> String {
        let mut all = vec![("NAMESPACE", self.ns())];
        all.extend_from_slice(vars);
        testdata::rendered(name, &all).unwrap()
    }

    /// The audit records of this test's namespace, newest first.
    pub async fn audit(&self, extra: &str) -> Vec<AuditRecord> {
        self.gitwarden
            .audit(&format!("namespace={}&limit=10000{extra}", self.ns()))
            .await
            .unwrap()
    }

    /// A field of a ConfigMap in the test namespace, read as admin.
    pub fn configmap_field(&self, name: &str, jsonpath: &str) -> String {
        self.kubectl(
            Identity::Admin,
            &[
                "get",
                "configmap",
                name,
                "-o",
                &format!("jsonpath={jsonpath}"),
            ],
        )
        .expect_success()
        .to_string()
    }
}

/// The audit record id a denial message names.
pub fn audit_id(message: &str) -> Option<String> {
    let start = message.find("audit record ")? + "audit record ".len();
    Some(
        message[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect(),
    )
}
