//! A cluster whose pods run: the control plane of `tests/cluster` with a real
//! node (kube-scheduler; containerd, the kubelet and kube-proxy in a network
//! namespace of their own; `GITWARDEN_CLUSTER_NODE=1 tests/cluster/up`).
//!
//! There is no registry: pods use images imported into the node, with
//! `imagePullPolicy: Never` or `IfNotPresent`: [`TOOLBOX_IMAGE`] (busybox and
//! a static kubectl), [`PAUSE_IMAGE`], and the archives `GITWARDEN_CLUSTER_IMAGES`
//! names. A node needs root and what `scripts/node-prereqs` installs.

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};

use crate::cluster::{TestCluster, repo_root};
use crate::kubectl::{KubectlOutput, kubectl_binary};

/// Busybox (sh, wget, httpd, nc, ...) and a static kubectl, for workloads
/// (`tests/images/toolbox.Containerfile`).
pub const TOOLBOX_IMAGE: &str = "gitwarden.local/toolbox:dev";

/// The pod sandbox image the node's containerd is configured with.
pub const PAUSE_IMAGE: &str = "registry.k8s.io/pause:3.10";

/// The port [`NodeCluster::run_web`] serves on.
pub const WEB_PORT: u16 = 8080;

/// What `tests/cluster/up` wrote about the node into `DIR/node/facts.env`.
#[derive(Debug, Clone)]
pub struct NodeFacts {
    /// The Node's name.
    pub name: String,
    /// The node's IP (its InternalIP; the kubelet API listens there).
    pub ip: String,
    /// The host's end of the node's only link; kube-apiserver listens there.
    pub host_ip: String,
    /// The pods' addresses, e.g. `10.244.3.0/24`.
    pub pod_cidr: String,
    /// The Services' ClusterIPs, e.g. `10.96.3.0/24`.
    pub service_cidr: String,
    /// The ClusterIP of Service `default/kubernetes`.
    pub kubernetes_service_ip: String,
    /// How pods reach the API server: `https://<kubernetes ClusterIP>:443`.
    pub api_server_for_pods: String,
    /// The ClusterIP of Service `kube-system/kube-dns` (CoreDNS), the
    /// kubelet's `clusterDNS`.
    pub cluster_dns: String,
    /// The network namespace the node runs in.
    pub netns: String,
    /// The host's end of the node's veth.
    pub host_interface: String,
    /// Seconds from the node's start to Ready and schedulable.
    pub ready_seconds: f64,
    /// containerd's `ctr` and the node's containerd socket, for what a
    /// node-level failure does (a container's process killed).
    pub ctr: String,
    /// The node's containerd socket.
    pub containerd_address: String,
}

impl NodeFacts {
    /// Reads `DIR/node/facts.env` (KEY=value lines).
    pub fn read(dir: &Path) -> Result<NodeFacts> {
        let path = dir.join("node/facts.env");
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!("no running node in {} ({})", dir.display(), path.display())
        })?;
        let get = |key: &str| -> Result<String> {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .map(str::to_string)
                .with_context(|| format!("{} has no {key}", path.display()))
        };
        Ok(NodeFacts {
            name: get("NODE_NAME")?,
            ip: get("NODE_IP")?,
            host_ip: get("HOST_IP")?,
            pod_cidr: get("POD_CIDR")?,
            service_cidr: get("SERVICE_CIDR")?,
            kubernetes_service_ip: get("KUBERNETES_SERVICE_IP")?,
            api_server_for_pods: get("API_SERVER_FOR_PODS")?,
            cluster_dns: get("CLUSTER_DNS")?,
            netns: get("NETNS")?,
            host_interface: get("HOST_INTERFACE")?,
            ready_seconds: get("NODE_READY_SECONDS")?.parse()?,
            ctr: get("CTR")?,
            containerd_address: get("CONTAINERD_ADDRESS")?,
        })
    }
}

/// A [`TestCluster`] with a node; everything a `TestCluster` offers works on
/// it (it dereferences to one).
#[derive(Debug)]
pub struct NodeCluster {
    cluster: TestCluster,
}

static NODE_CLUSTER: OnceLock<std::result::Result<NodeCluster, String>> = OnceLock::new();

impl NodeCluster {
    /// The node cluster shared by every test of this binary, started on first
    /// use, stopped and removed when the binary exits (also after a panic or a
    /// kill). With `GITWARDEN_TEST_NODE_CLUSTER` set to a directory where one
    /// runs already, that one is used and left running.
    pub fn shared() -> &'static NodeCluster {
        let cluster = NODE_CLUSTER.get_or_init(|| Self::start().map_err(|e| format!("{e:#}")));
        match cluster {
            Ok(c) => c,
            Err(e) => panic!("the test cluster with a node (tests/cluster) could not start: {e}"),
        }
    }

    fn start() -> Result<NodeCluster> {
        kubectl_binary()?;
        let cluster = match std::env::var_os("GITWARDEN_TEST_NODE_CLUSTER") {
            Some(dir) => TestCluster::attach(PathBuf::from(dir))?,
            None => TestCluster::up_watched(
                std::env::temp_dir().join(format!("gitwarden-node-cluster-{}", std::process::id())),
                &[("GITWARDEN_CLUSTER_NODE", "1")],
            )?,
        };
        Self::with(cluster)
    }

    /// A node cluster of the test's own (see [`TestCluster::start_private`]):
    /// it can be stopped and started again; the node is rebuilt on every start.
    pub fn start_private() -> Result<NodeCluster> {
        Self::with(TestCluster::start_private_with(true)?)
    }

    fn with(cluster: TestCluster) -> Result<NodeCluster> {
        NodeFacts::read(cluster.dir())?;
        Ok(NodeCluster { cluster })
    }

    /// The node's facts as its current start wrote them.
    pub fn facts(&self) -> Result<NodeFacts> {
        NodeFacts::read(self.dir())
    }

    /// The node's own credentials (`system:node:<name>` in `system:nodes`, a
    /// client certificate from the cluster CA), as the kubelet uses them.
    pub fn node_kubeconfig(&self) -> PathBuf {
        self.dir().join("node/kubelet.kubeconfig")
    }

    /// Applies a manifest as admin.
    pub fn apply(&self, namespace: &str, manifest: &str) -> Result<()> {
        let out = self.kubectl_full(
            &self.kubeconfig(crate::Identity::Admin),
            &["apply", "-n", namespace, "-f", "-"],
            manifest,
            &[],
        );
        if !out.success {
            bail!("kubectl apply failed: {}", out.stderr);
        }
        Ok(())
    }

    /// Starts a pod of [`TOOLBOX_IMAGE`] running `command` and waits until it
    /// is Ready; `labels` are added to its metadata.
    pub fn run_toolbox(
        &self,
        namespace: &str,
        name: &str,
        labels: &[(&str, &str)],
        command: &[&str],
    ) -> Result<()> {
        self.run_toolbox_pod(namespace, name, labels, command, serde_json::Value::Null)
    }

    /// Starts a pod of [`TOOLBOX_IMAGE`] whose HTTP server answers every path
    /// on port [`WEB_PORT`] with `body` (and a newline), and waits until it
    /// accepts connections (a TCP readiness probe).
    pub fn run_web(
        &self,
        namespace: &str,
        name: &str,
        labels: &[(&str, &str)],
        body: &str,
    ) -> Result<()> {
        let script = format!(
            "mkdir -p /www && echo '{body}' > /www/index.html && exec httpd -f -p {WEB_PORT} -h /www"
        );
        self.run_toolbox_pod(
            namespace,
            name,
            labels,
            &["sh", "-c", &script],
            serde_json::json!({ "tcpSocket": { "port": WEB_PORT }, "periodSeconds": 1 }),
        )
    }

    fn run_toolbox_pod(
        &self,
        namespace: &str,
        name: &str,
        labels: &[(&str, &str)],
        command: &[&str],
        readiness: serde_json::Value,
    ) -> Result<()> {
        let mut container = serde_json::json!({
            "name": "main",
            "image": TOOLBOX_IMAGE,
            "imagePullPolicy": "Never",
            "command": command,
        });
        if !readiness.is_null() {
            container["readinessProbe"] = readiness;
        }
        let pod = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "labels": labels.iter().map(|(k, v)| (k.to_string(), serde_json::json!(v))).collect::<serde_json::Map<_, _>>(),
            },
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "containers": [container],
            },
        });
        self.apply(namespace, &pod.to_string())?;
        self.wait_ready(namespace, name)
    }

    /// Waits (up to two minutes) until pod `name` is Ready.
    pub fn wait_ready(&self, namespace: &str, name: &str) -> Result<()> {
        let ready = crate::kubectl::wait_condition(
            &self.kubeconfig(crate::Identity::Admin),
            Some(namespace),
            &format!("pod/{name}"),
            "Ready",
            std::time::Duration::from_secs(120),
        );
        if let Err(e) = ready {
            let describe = self.kubectl(
                crate::Identity::Admin,
                &["describe", "-n", namespace, "pod", name],
            );
            bail!("{e}\n{}", describe.stdout);
        }
        Ok(())
    }

    /// `kubectl exec` as admin: runs `command` in the pod's first container.
    pub fn exec(&self, namespace: &str, pod: &str, command: &[&str]) -> KubectlOutput {
        let mut args = vec!["exec", "-n", namespace, pod, "--"];
        args.extend_from_slice(command);
        self.kubectl(crate::Identity::Admin, &args)
    }

    /// Kills the first container of a pod with SIGKILL through containerd,
    /// as a crash or the OOM killer would: no API request, no graceful
    /// shutdown; the kubelet then restarts it.
    pub fn kill_container(&self, namespace: &str, pod: &str) -> Result<()> {
        let out = self.kubectl(
            crate::Identity::Admin,
            &[
                "get",
                "pod",
                pod,
                "-n",
                namespace,
                "-o",
                "jsonpath={.status.containerStatuses[0].containerID}",
            ],
        );
        let id = out
            .stdout
            .trim()
            .strip_prefix("containerd://")
            .with_context(|| format!("pod {namespace}/{pod} has no running container: {out:?}"))?
            .to_string();
        let facts = self.facts()?;
        let kill = run_host(Command::new(&facts.ctr).args([
            "--address",
            &facts.containerd_address,
            "-n",
            "k8s.io",
            "tasks",
            "kill",
            "--signal",
            "SIGKILL",
            &id,
        ]));
        if !kill.success {
            bail!("ctr tasks kill {id}: {}", kill.stderr);
        }
        Ok(())
    }

    /// The harness's network checks on this node (`tests/cluster/node/check`):
    /// one `ok:`/`FAIL:` line each on stdout, success only when none failed.
    pub fn network_check(&self) -> KubectlOutput {
        run_host(Command::new(repo_root().join("tests/cluster/node/check")).arg(self.dir()))
    }

    /// Runs a command on the host inside the node's network namespace (as the
    /// node's own processes see the network).
    pub fn in_node_netns(&self, command: &[&str]) -> Result<KubectlOutput> {
        let netns = self.facts()?.netns;
        Ok(run_host(
            Command::new("ip")
                .args(["netns", "exec", &netns])
                .args(command),
        ))
    }
}

impl Deref for NodeCluster {
    type Target = TestCluster;

    fn deref(&self) -> &TestCluster {
        &self.cluster
    }
}

/// Runs a host command and captures it in the shape of a kubectl run.
pub fn run_host(command: &mut Command) -> KubectlOutput {
    match command.output() {
        Ok(out) => KubectlOutput::from(out),
        Err(e) => panic!("running {command:?}: {e}"),
    }
}

/// Whether `ip` (IPv4) lies in `cidr` (`a.b.c.d/n`).
pub fn in_cidr(ip: &str, cidr: &str) -> bool {
    let parse = |s: &str| s.parse::<std::net::Ipv4Addr>().ok().map(u32::from);
    let Some((net, bits)) = cidr.split_once('/') else {
        return false;
    };
    match (parse(ip), parse(net), bits.parse::<u32>()) {
        (Some(ip), Some(net), Ok(bits)) if bits <= 32 => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            ip & mask == net & mask
        }
        _ => false,
    }
}
