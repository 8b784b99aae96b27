//! The node cluster of this test binary with gitwarden installed once, shared
//! by the tests that need a working install.

use gitwarden_tests::install::{
    INSTALL_LIMIT, InstallTarget, SYSTEM_NAMESPACE, jsonpath, synced_revision,
};
use gitwarden_tests::node::NodeCluster;
use gitwarden_tests::wait::wait_blocking;
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

/// Tests that stop or restart gitwarden's pods hold this for writing; the
/// others hold it for reading, so they never run while gitwarden is down.
pub static DISRUPTION: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Holds the install steady for the rest of a test.
pub fn steady() -> std::sync::RwLockReadGuard<'static, ()> {
    DISRUPTION.read().unwrap_or_else(|e| e.into_inner())
}

/// Holds the install for a test that disrupts it.
pub fn disrupting() -> std::sync::RwLockWriteGuard<'static, ()> {
    DISRUPTION.write().unwrap_or_else(|e| e.into_inner())
}

/// The leading agent's pod (the Lease's holder is `<pod>_<random>`).
pub fn leader_pod(node: &NodeCluster) -> String {
    let holder = jsonpath(
        node,
        &["lease", "gitwarden-agent", "-n", SYSTEM_NAMESPACE],
        "{.spec.holderIdentity}",
    );
    holder.split('_').next().unwrap_or_default().to_string()
}

/// The Running pods of one of gitwarden's components (`agent`, `webhook`:
/// the `app.kubernetes.io/component` label), by name.
pub fn running_pods(node: &NodeCluster, component: &str) -> Vec<String> {
    jsonpath(
        node,
        &[
            "pods",
            "-n",
            SYSTEM_NAMESPACE,
            "-l",
            &format!("app.kubernetes.io/component={component}"),
            "--field-selector=status.phase=Running",
        ],
        "{.items[*].metadata.name}",
    )
    .split_whitespace()
    .map(str::to_owned)
    .collect()
}

/// A pod's IP (the host routes the pod range to the node).
pub fn pod_ip(node: &NodeCluster, namespace: &str, pod: &str) -> String {
    jsonpath(node, &["pod", pod, "-n", namespace], "{.status.podIP}")
}

/// `gitwarden-agent status` against the leading agent, as admin (the agent
/// reviews admin's token); its output.
pub fn agent_status(node: &NodeCluster) -> gitwarden_tests::kubectl::KubectlOutput {
    let leader = leader_pod(node);
    let url = format!("http://{}:8080", pod_ip(node, SYSTEM_NAMESPACE, &leader));
    let agent = gitwarden_tests::binaries::binary("gitwarden-agent").unwrap();
    gitwarden_tests::node::run_host(
        std::process::Command::new(agent)
            .args(["status", "--url", &url, "--kubeconfig"])
            .arg(node.kubeconfig(gitwarden_tests::Identity::Admin)),
    )
}

/// The admin kubeconfig's bearer token (tests/cluster writes static tokens):
/// gitwarden's endpoints review it, and admin may read /audit and /status.
pub fn admin_token(node: &NodeCluster) -> String {
    let text = std::fs::read_to_string(node.kubeconfig(gitwarden_tests::Identity::Admin)).unwrap();
    let config: serde_json::Value = serde_yaml_ng::from_str(&text).unwrap();
    config["users"][0]["user"]["token"]
        .as_str()
        .expect("the admin kubeconfig holds a bearer token")
        .to_owned()
}
