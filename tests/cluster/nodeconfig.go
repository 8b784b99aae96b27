package main

import (
	"fmt"
	"os"
	"path/filepath"
)

// nodePaths are the node's files: configuration, logs and state under
// DIR/node, sockets under the slot's short runtime directory.
type nodePaths struct {
	root          string // DIR/node
	containerdDir string // containerd's root (content, snapshots, metadata)
	stateDir      string // containerd's state (task bundles, pod network namespaces)
	kubeletDir    string // the kubelet's root (pod volumes)
	podLogs       string
	cniConfDir    string
	cniIPAM       string // host-local's allocations
	logs          string
	socket        string // containerd's CRI and API socket
	volumes       string // the local PersistentVolumes' directories (kept across restarts)
}

func pathsFor(dir string, n *nodeNet) nodePaths {
	root := filepath.Join(dir, "node")
	return nodePaths{
		root:          root,
		containerdDir: filepath.Join(root, "containerd"),
		stateDir:      filepath.Join(root, "containerd-state"),
		kubeletDir:    filepath.Join(root, "kubelet"),
		podLogs:       filepath.Join(root, "pod-logs"),
		cniConfDir:    filepath.Join(root, "cni", "net.d"),
		cniIPAM:       filepath.Join(root, "cni", "ipam"),
		logs:          filepath.Join(root, "logs"),
		socket:        filepath.Join(n.runDir(), "containerd.sock"),
		volumes:       filepath.Join(root, "volumes"),
	}
}

// runtimeDirs are the directories a node start begins without: the node is
// built anew each time (the kubelet then recreates the pods the API holds).
func (p nodePaths) runtimeDirs() []string {
	return []string{p.containerdDir, p.stateDir, p.kubeletDir, p.podLogs, filepath.Dir(p.cniConfDir)}
}

// pauseImage is the sandbox image the kubelet's pods start with; it must be
// imported (never pulled: there is no registry).
const pauseImage = "registry.k8s.io/pause:3.10"

// writeContainerdConfig: containerd with its own root, state and sockets, so
// nodes running at once share nothing, and nothing from /etc or /opt.
// restrict_oom_score_adj: processes here cannot lower their OOM score, and
// without it every sandbox fails ("can't get final child's PID from pipe").
func writeContainerdConfig(p nodePaths, n *nodeNet, bin, runc string) (string, error) {
	file := filepath.Join(p.root, "containerd.toml")
	conf := fmt.Sprintf(`version = 4
root = %[1]q
state = %[2]q
temp = %[13]q
imports = []
disabled_plugins = ["io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp"]

[plugins."io.containerd.server.v1.grpc"]
  address = %[3]q

[plugins."io.containerd.server.v1.ttrpc"]
  address = %[4]q

[plugins."io.containerd.internal.v1.opt"]
  path = %[5]q

[plugins."io.containerd.shim.v1.manager"]
  socket_dir = %[6]q

[plugins."io.containerd.nri.v1.nri"]
  disable = true

[plugins."io.containerd.image-verifier.v1.bindir"]
  bin_dir = %[7]q

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = %[8]q

[plugins."io.containerd.cri.v1.runtime"]
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  cdi_spec_dirs = []
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = [%[9]q]
    conf_dir = %[10]q
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = %[11]q
        Root = %[12]q
        SystemdCgroup = false

[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
`, p.containerdDir, p.stateDir, p.socket, p.socket+".ttrpc", filepath.Join(p.containerdDir, "opt"),
		filepath.Join(n.runDir(), "s"), filepath.Join(p.containerdDir, "image-verifier"), pauseImage,
		filepath.Join(bin, "cni"), p.cniConfDir, runc, filepath.Join(n.runDir(), "runc"), filepath.Join(p.containerdDir, "tmp"))
	return file, os.WriteFile(file, []byte(conf), 0o644)
}

// writeCNIConfig: one bridge for the pods, addresses from the pod range, no
// masquerading (pod traffic keeps its source; the node has nowhere else to
// send it anyway).
func writeCNIConfig(p nodePaths, n *nodeNet) error {
	if err := os.MkdirAll(p.cniConfDir, 0o755); err != nil {
		return err
	}
	conf := fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "gitwarden-node",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": %q,
        "ranges": [[{"subnet": %q, "gateway": %q}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`, p.cniIPAM, n.podCIDR.String(), n.bridgeIP().String())
	return os.WriteFile(filepath.Join(p.cniConfDir, "10-gitwarden-node.conflist"), []byte(conf), 0o644)
}

// writeKubeletConfig: the settings this machine kind needs (cgroup v1 allowed,
// cgroupfs, no swap check, no host resolv.conf), the kubelet API secured as on
// a real node (client certificates from the cluster CA, webhook authentication
// and authorisation), and no eviction or image garbage collection driven by
// the host's disk, which the node shares with everything else (as kind sets
// it: a host with little free space must not taint the node with disk pressure).
func writeKubeletConfig(p nodePaths, n *nodeNet, caFile string, np *nodePKI) (string, error) {
	file := filepath.Join(p.root, "kubelet.yaml")
	conf := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %[1]s
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: %[2]q
tlsPrivateKeyFile: %[3]q
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: %[4]q
authorization:
  mode: Webhook
containerRuntimeEndpoint: unix://%[5]s
cgroupDriver: cgroupfs
cgroupRoot: /%[6]s
failCgroupV1: false
failSwapOn: false
resolvConf: ""
clusterDNS: [%[8]s]
clusterDomain: %[9]s
podLogsDir: %[7]q
registerNode: true
rotateCertificates: false
serverTLSBootstrap: false
evictionHard:
  memory.available: "1%%"
  nodefs.available: "0%%"
  nodefs.inodesFree: "0%%"
  imagefs.available: "0%%"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
maxPods: 110
`, n.nodeIP, np.kubeletServingCert, np.kubeletServKey, caFile, p.socket, n.cgroup(), p.podLogs,
		n.clusterDNSIP(), clusterDomain)
	return file, os.WriteFile(file, []byte(conf), 0o644)
}

// writeKubeProxyConfig: iptables mode inside the node's netns; conntrack
// limits left as they are (nf_conntrack_max is the whole machine's).
func writeKubeProxyConfig(p nodePaths, n *nodeNet, kubeconfig, nodeName string) (string, error) {
	file := filepath.Join(p.root, "kube-proxy.yaml")
	conf := fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection:
  kubeconfig: %[1]q
hostnameOverride: %[2]s
bindAddress: %[3]s
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
clusterCIDR: %[4]s
nodePortAddresses: ["primary"]
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
iptables:
  localhostNodePorts: false
`, kubeconfig, nodeName, n.nodeIP, n.podCIDR)
	return file, os.WriteFile(file, []byte(conf), 0o644)
}

// writeCertKubeconfig writes a kubeconfig that authenticates with a client certificate.
func writeCertKubeconfig(path, server, caFile, user, cert, key string) error {
	conf := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: gitwarden-test
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: %s
  user:
    client-certificate: %s
    client-key: %s
contexts:
- name: default
  context:
    cluster: gitwarden-test
    user: %s
current-context: default
`, server, caFile, user, cert, key, user)
	return os.WriteFile(path, []byte(conf), 0o600)
}
