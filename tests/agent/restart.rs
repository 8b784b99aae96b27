//! The API server dies in the middle of the agent's first sync and comes back:
//! the agent must converge, with nothing half-applied.
//!
//! What the agent promises after a successful sync of revision R (and what
//! "nothing half-applied" means here):
//! 1. every object of R exists with exactly the content git has for it, and
//!    carries `app.kubernetes.io/managed-by: gitwarden`;
//! 2. its inventory records revision R and lists exactly the objects of R:
//!    none missing (prune must know every object it created) and none that
//!    does not exist in the cluster;
//! 3. no object outside R carries the managed-by label;
//! 4. the inventory agrees with the live objects: a resync sends no write;
//! 5. `/status` said why syncs failed while the API server was down, and
//!    clears the error on success.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use gitwarden_agent::status::Status;
use gitwarden_apply::{Action, SyncReport};
use gitwarden_tests::testdata;
use gitwarden_tests::webhook::apply;
use gitwarden_tests::{Identity, TestCluster, wait_for};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams};

use crate::common::{Run, fetch_status, git, json};

/// Namespaces of the repository, and ConfigMaps in each: a few hundred objects,
/// so that the first sync is still writing when the API server is killed.
const NAMESPACES: [&str; 2] = ["fleet-a", "fleet-b"];
const CONFIGMAPS_PER_NAMESPACE: usize = 200;
const MANAGED: &str = "app.kubernetes.io/managed-by=gitwarden";

/// The data git holds for ConfigMap `index` of `namespace`.
fn configmap_data(namespace: &str, index: usize) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("index".to_string(), index.to_string()),
        ("namespace".to_string(), namespace.to_string()),
        (
            "payload".to_string(),
            format!("{namespace}-{index:04}-").repeat(40),
        ),
    ])
}

/// Writes the repository: one Namespace and its ConfigMaps per namespace, one
/// file per object. Returns the commit and the inventory form of every object.
fn write_repository(repo: &Path) -> (String, BTreeSet<String>) {
    git(repo, &["init", "-q", "-b", "main"]);
    let mut objects = BTreeSet::new();
    for ns in NAMESPACES {
        let dir = repo.join("cluster").join(ns);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("namespace.yaml"),
            testdata::rendered("namespace.yaml", &[("NAME", ns)]).unwrap(),
        )
        .unwrap();
        objects.insert(format!("v1 Namespace {ns}"));
        for i in 0..CONFIGMAPS_PER_NAMESPACE {
            let name = format!("settings-{i:04}");
            let data: String = configmap_data(ns, i)
                .iter()
                .map(|(k, v)| format!("  {k}: \"{v}\"\n"))
                .collect();
            std::fs::write(
                dir.join(format!("{name}.yaml")),
                format!(
                    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {ns}\ndata:\n{data}"
                ),
            )
            .unwrap();
            objects.insert(format!("v1 ConfigMap {ns}/{name}"));
        }
    }
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "-m", "a fleet of settings"]);
    (git(repo, &["rev-parse", "HEAD"]), objects)
}

/// `gitwarden-agent run`, killed when dropped.
struct Agent {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Agent {
    fn start(repo: &Path, work: &Path, kubeconfig: &Path) -> Agent {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = work.join("agent.log");
        let child = Command::new(gitwarden_tests::binaries::binary("gitwarden-agent").unwrap())
            .arg("run")
            .arg("--repo")
            .arg(format!("file://{}", repo.display()))
            .arg("--cache-dir")
            .arg(work.join("cache"))
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["--inventory-namespace", "gitwarden-system"])
            .args(["--default-namespace", "default"])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            // A short interval: a sync that ends with failed objects is retried
            // on the interval, and this test waits for the agent to converge.
            .args(["--interval", "3s", "--leader-elect=false"])
            .args(["--health-timeout", "1s", "--drift-debounce", "200ms"])
            .stderr(std::fs::File::create(&log).unwrap())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        Agent {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    async fn status(&self) -> Option<Status> {
        fetch_status(&self.url).await
    }

    async fn metric(&self, name: &str) -> Option<f64> {
        let text = reqwest::get(format!("{}/metrics", self.url))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- agent log ---\n{}", self.log());
        }
    }
}

/// The managed ConfigMaps in the repository's namespaces: name → data.
async fn managed_configmaps(
    client: &kube::Client,
) -> kube::Result<BTreeMap<String, BTreeMap<String, String>>> {
    let api: Api<ConfigMap> = Api::all(client.clone());
    let list = api.list(&ListParams::default().labels(MANAGED)).await?;
    Ok(list
        .items
        .into_iter()
        .filter(|cm| {
            cm.metadata
                .namespace
                .as_deref()
                .is_some_and(|ns| NAMESPACES.contains(&ns))
        })
        .map(|cm| {
            (
                format!(
                    "v1 ConfigMap {}/{}",
                    cm.metadata.namespace.unwrap_or_default(),
                    cm.metadata.name.unwrap_or_default()
                ),
                cm.data.unwrap_or_default(),
            )
        })
        .collect())
}

/// The inventory as stored: (revisions of its shards, listed objects).
async fn inventory(client: &kube::Client) -> (BTreeSet<String>, BTreeSet<String>) {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "gitwarden-system");
    let shards = api
        .list(&ListParams::default().labels("gitwarden.io/inventory"))
        .await
        .unwrap();
    let mut revisions = BTreeSet::new();
    let mut objects = BTreeSet::new();
    for shard in shards.items {
        let data = shard.data.unwrap_or_default();
        revisions.insert(data.get("revision").cloned().unwrap_or_default());
        for line in data
            .get("entries")
            .map(String::as_str)
            .unwrap_or("")
            .lines()
        {
            // `<hash> <fields> <resourceVersion> @<source> <object>`: the
            // object holds spaces.
            if let Some(object) = line.splitn(5, ' ').nth(4) {
                objects.insert(object.to_string());
            }
        }
    }
    (revisions, objects)
}

/// The objects of the report (none without one) that did not end created,
/// configured or unchanged.
fn failed_objects(report: Option<&SyncReport>) -> Vec<String> {
    report
        .map(|report| {
            report
                .applied
                .iter()
                .filter(|o| {
                    !matches!(
                        o.action,
                        Action::Created | Action::Configured | Action::Unchanged
                    )
                })
                .map(|o| serde_json::to_string(o).unwrap())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_converges_with_nothing_half_applied_after_the_api_server_is_killed_mid_sync() {
    let cluster = TestCluster::start_private().unwrap();
    let admin_kubeconfig = cluster.kubeconfig(Identity::Admin);
    apply(
        &admin_kubeconfig,
        &testdata::rendered("namespace.yaml", &[("NAME", "gitwarden-system")]).unwrap(),
    )
    .unwrap();
    apply(
        &admin_kubeconfig,
        &testdata::read("agent-as-cluster-admin.yaml").unwrap(),
    )
    .unwrap();
    let (_, agent_kubeconfig) = cluster
        .mint_service_account_token("gitwarden-system", "gitwarden-agent")
        .await
        .unwrap();
    let repo = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let (commit, expected) = write_repository(repo.path());
    let total = expected.len();
    let admin = cluster.client(Identity::Admin).await.unwrap();

    let agent = Agent::start(repo.path(), work.path(), &agent_kubeconfig);
    // Kill the whole control plane as soon as the first ConfigMap is written
    // (polled every 20 ms, not wait_for's 200 ms: the sync must still be running).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let written_before_kill = loop {
        let n = managed_configmaps(&admin).await.map_or(0, |m| m.len());
        if n > 0 {
            break n;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the agent wrote no ConfigMap within 120s:\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    cluster.kill().unwrap();
    eprintln!(
        "killed the control plane with {written_before_kill} of {} ConfigMaps written",
        total - NAMESPACES.len()
    );

    // While it is down, the agent reports the error and has never succeeded.
    let outage = wait_for(Duration::from_secs(60), || async {
        let status = agent.status().await?;
        let error = status.error.clone()?;
        Some((error, status))
    })
    .await;
    let (error, status) = outage.unwrap_or_else(|| {
        panic!(
            "no error in /status while the API server was down:\n{}",
            agent.log()
        )
    });
    eprintln!("status while down: {error}");
    assert!(
        status.last_success.is_none(),
        "the first sync finished before the kill, so the kill did not hit a sync in flight: {}",
        json(&status)
    );

    cluster.start_again().unwrap();
    let converged = wait_for(Duration::from_secs(180), || async {
        let status = agent.status().await?;
        let done = status.revision.as_deref() == Some(commit.as_str())
            && status.last_success.is_some()
            && status.error.is_none()
            && failed_objects(status.last_report.as_ref()).is_empty();
        done.then_some(status)
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "the agent did not converge within 180s of the restart:\n{}",
            agent.log()
        )
    });
    let failures = agent
        .metric("gitwarden_agent_sync_failures_total")
        .await
        .unwrap_or(0.0);
    assert!(
        failures >= 1.0,
        "the outage was not counted in gitwarden_agent_sync_failures_total"
    );
    eprintln!(
        "converged after {failures} failed syncs; last report: {} objects, {:?} write requests",
        converged
            .last_report
            .as_ref()
            .map_or(0, |r| r.applied.len()),
        converged.last_report.as_ref().map(|r| r.write_requests)
    );

    // 1. Every object exists with git's content; 3. nothing else is labelled managed.
    let live = managed_configmaps(&admin).await.unwrap();
    for ns in NAMESPACES {
        for i in 0..CONFIGMAPS_PER_NAMESPACE {
            let object = format!("v1 ConfigMap {ns}/settings-{i:04}");
            assert_eq!(
                live.get(&object),
                Some(&configmap_data(ns, i)),
                "{object} is missing or differs from git"
            );
        }
        let labelled = cluster.kubectl(
            Identity::Admin,
            &[
                "get",
                "namespace",
                ns,
                "-o",
                "jsonpath={.metadata.labels.app\\.kubernetes\\.io/managed-by}",
            ],
        );
        assert_eq!(labelled.expect_success(), "gitwarden", "namespace {ns}");
    }
    let live_objects: BTreeSet<String> = live
        .keys()
        .cloned()
        .chain(NAMESPACES.iter().map(|ns| format!("v1 Namespace {ns}")))
        .collect();
    assert_eq!(live_objects, expected, "managed objects in the cluster");

    // 2. The inventory records the revision and exactly the objects of git,
    // each of which exists.
    let (revisions, listed) = inventory(&admin).await;
    assert_eq!(
        revisions,
        BTreeSet::from([commit.clone()]),
        "inventory revision"
    );
    let missing: Vec<_> = expected.difference(&listed).collect();
    let phantom: Vec<_> = listed.difference(&live_objects).collect();
    assert!(
        missing.is_empty(),
        "objects not in the inventory: {missing:?}"
    );
    assert!(
        phantom.is_empty(),
        "the inventory lists objects that do not exist: {phantom:?}"
    );

    // 4. The inventory agrees with the live objects: a resync writes nothing.
    drop(agent);
    let resync = Command::new(gitwarden_tests::binaries::binary("gitwarden-agent").unwrap())
        .arg("sync")
        .arg("--repo")
        .arg(format!("file://{}", repo.path().display()))
        .arg("--cache-dir")
        .arg(work.path().join("resync-cache"))
        .arg("--kubeconfig")
        .arg(&agent_kubeconfig)
        .args(["--inventory-namespace", "gitwarden-system"])
        .args(["--default-namespace", "default", "-o", "json"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&resync.stdout);
    assert!(
        resync.status.success(),
        "resync failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&resync.stderr)
    );
    let report = Run {
        code: resync.status.code().unwrap_or(-1),
        stdout: stdout.into_owned(),
        stderr: String::from_utf8_lossy(&resync.stderr).into_owned(),
    }
    .report();
    assert_eq!(report.write_requests, 0, "{}", json(&report));
    assert_eq!(report.applied.len(), total, "{}", json(&report));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_plane_killed_and_started_again_keeps_its_data_certificates_tokens_and_url() {
    let cluster = TestCluster::start_private().unwrap();
    cluster
        .kubectl(
            Identity::Admin,
            &["create", "configmap", "kept", "--from-literal=k=v"],
        )
        .expect_success();
    let (_, minted) = cluster
        .mint_service_account_token("default", "robot")
        .await
        .unwrap();
    let ca = std::fs::read(cluster.ca_file()).unwrap();
    let serving = std::fs::read(cluster.dir().join("pki/apiserver.crt")).unwrap();
    let alice = std::fs::read(cluster.kubeconfig(Identity::Alice)).unwrap();

    cluster.restart().unwrap();

    assert_eq!(std::fs::read(cluster.ca_file()).unwrap(), ca, "CA changed");
    assert_eq!(
        std::fs::read(cluster.dir().join("pki/apiserver.crt")).unwrap(),
        serving,
        "serving certificate changed"
    );
    assert_eq!(
        std::fs::read(cluster.kubeconfig(Identity::Alice)).unwrap(),
        alice,
        "alice's kubeconfig (server URL or token) changed"
    );
    let kept = cluster.kubectl(
        Identity::Alice,
        &["get", "configmap", "kept", "-o", "jsonpath={.data.k}"],
    );
    assert_eq!(kept.expect_success(), "v");
    // Signed before the restart, still valid: the signing keys were kept.
    let whoami = cluster.kubectl_with(
        &minted,
        &[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ],
    );
    assert_eq!(
        whoami.expect_success(),
        "system:serviceaccount:default:robot"
    );
}
