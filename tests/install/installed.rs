//! The node cluster of this test binary with gitwarden installed once, shared
//! by the tests that need a working install.

use gitwarden_tests::install::{
    INSTALL_LIMIT, InstallTarget, SYSTEM_NAMESPACE, jsonpath, wait_blocking,
};
use gitwarden_tests::node::NodeCluster;
use std::sync::OnceLock;

/// A node cluster with gitwarden installed, enforcing and synced.
pub struct Installed {
    pub node: &'static NodeCluster,
    pub target: InstallTarget<'static>,
    /// The first install's output, as the user saw it.
    pub apply_output: String,
    /// Seconds from `kubectl apply -k` to enforcing and synced.
    pub ready_seconds: f64,
}

static INSTALLED: OnceLock<Result<Installed, String>> = OnceLock::new();

/// The shared install, made on first use; panics with the step that did not
/// happen (and doctor's report) when the install never becomes ready.
pub fn installed() -> &'static Installed {
    match INSTALLED.get_or_init(|| install().map_err(|e| format!("{e:#}"))) {
        Ok(i) => i,
        Err(e) => panic!("gitwarden could not be installed on the node: {e}"),
    }
}

fn install() -> anyhow::Result<Installed> {
    let node = NodeCluster::shared();
    let target = InstallTarget::prepare(node)?;
    let started = std::time::Instant::now();
    let out = target.install("install");
    if !out.success {
        anyhow::bail!("kubectl apply -k failed: {}", out.stderr);
    }
    let head = target.head()?;
    wait_until_enforcing_and_synced(node, &head)?;
    Ok(Installed {
        node,
        target,
        apply_output: out.stdout,
        ready_seconds: started.elapsed().as_secs_f64(),
    })
}

/// A condition of the install, checked against the cluster.
type Step<'a> = Box<dyn Fn() -> bool + 'a>;

/// Waits until the webhook configurations are registered and the leading
/// agent has applied `commit`; names the step that never came.
pub fn wait_until_enforcing_and_synced(node: &NodeCluster, commit: &str) -> anyhow::Result<()> {
    let steps: [(&str, Step<'_>); 3] = [
        (
            "the webhook registered its ValidatingWebhookConfiguration",
            Box::new(|| {
                !jsonpath(
                    node,
                    &["validatingwebhookconfiguration", "gitwarden"],
                    "{.webhooks[0].clientConfig.caBundle}",
                )
                .is_empty()
            }),
        ),
        (
            "an agent pod holds the leader Lease",
            Box::new(|| {
                jsonpath(
                    node,
                    &["lease", "gitwarden-agent", "-n", SYSTEM_NAMESPACE],
                    "{.spec.holderIdentity}",
                )
                .starts_with("gitwarden-agent-")
            }),
        ),
        (
            "the agent recorded the repository's commit in its inventory",
            Box::new(|| synced_revision(node).contains(commit)),
        ),
    ];
    for (what, done) in steps {
        if wait_blocking(INSTALL_LIMIT, || done().then_some(())).is_none() {
            let pods = node.kubectl(
                gitwarden_tests::Identity::Admin,
                &["get", "pods", "-A", "-o", "wide"],
            );
            let doctor = gitwarden_tests::doctor::doctor_text(
                &node.kubeconfig(gitwarden_tests::Identity::Admin),
                &[],
            )
            .map(|r| r.stdout)
            .unwrap_or_else(|e| format!("{e:#}"));
            anyhow::bail!(
                "timed out after {INSTALL_LIMIT:?} waiting until {what}\npods:\n{}\ndoctor:\n{doctor}",
                pods.stdout
            );
        }
    }
    Ok(())
}

/// The revisions of the agent's inventory shards (the commits it applied).
pub fn synced_revision(node: &NodeCluster) -> String {
    jsonpath(
        node,
        &[
            "configmaps",
            "-n",
            SYSTEM_NAMESPACE,
            "-l",
            gitwarden_shared::source::INVENTORY_LABEL,
        ],
        "{.items[*].data.revision}",
    )
}
