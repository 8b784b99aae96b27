package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// nodeName is the Node's name; each cluster has its own API, so one name fits all.
const nodeName = "gitwarden-node"

// node is a running node: containerd, the kubelet and kube-proxy, each its own
// process in the node's network namespace.
type node struct {
	net   *nodeNet
	dir   string
	paths nodePaths
	procs []*nodeProc // in start order; stopped in reverse
	// exited receives the unexpected exits of the node's processes.
	exited   chan error
	stopping atomic.Bool
}

// nodeConfig is what starting a node needs from the control plane.
type nodeConfig struct {
	dir     string
	net     *nodeNet
	binDir  string   // tests/cluster/node/build's output
	images  []string // OCI archives to import before the kubelet starts
	server  string   // kube-apiserver's URL on the host's end of the veth
	apiPort int
	pk      *pki
	np      *nodePKI
	admin   *kubernetes.Clientset
	// adminConfig is admin's client configuration, for the add-ons.
	adminConfig *rest.Config
}

// checkNodeTools fails early, with what to do, when a program the node needs is missing.
func checkNodeTools(binDir string) error {
	var missing []string
	for _, t := range []string{"ip", "iptables", "iptables-save", "nsenter", "sysctl", "mount", "umount", "runc"} {
		if _, err := exec.LookPath(t); err != nil {
			missing = append(missing, t)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("the node needs %s on PATH: run scripts/node-prereqs", strings.Join(missing, ", "))
	}
	for _, b := range []string{"containerd", "containerd-shim-runc-v2", "ctr", "kubelet", "kube-proxy", "cni/bridge", "cni/host-local", "cni/loopback", "cni/portmap"} {
		if _, err := os.Stat(filepath.Join(binDir, b)); err != nil {
			return fmt.Errorf("the node's programs are incomplete in %s (run tests/cluster/node/build): %w", binDir, err)
		}
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("a node needs root (network namespaces, cgroups, mounts)")
	}
	return nil
}

// startNode brings the node up and returns once the Node is Ready and the
// network has passed its checks; on failure it removes what it started.
func startNode(ctx context.Context, c nodeConfig) (*node, error) {
	start := time.Now()
	nd := &node{net: c.net, dir: c.dir, paths: pathsFor(c.dir, c.net), exited: make(chan error, 4)}
	fail := func(err error) (*node, error) {
		nd.stop()
		return nil, err
	}
	if err := nd.prepare(c); err != nil {
		return fail(err)
	}
	if err := checkNetwork(c.net, c.apiPort, "before the node starts"); err != nil {
		return fail(err)
	}
	env := []string{
		"PATH=" + c.binDir + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=" + os.Getenv("HOME"),
	}
	runc, err := exec.LookPath("runc")
	if err != nil {
		return fail(err)
	}
	ctrdConf, err := writeContainerdConfig(nd.paths, c.net, c.binDir, runc)
	if err != nil {
		return fail(err)
	}
	if err := nd.spawn("containerd", env, filepath.Join(c.binDir, "containerd"), "--config", ctrdConf); err != nil {
		return fail(err)
	}
	ctr := filepath.Join(c.binDir, "ctr")
	if err := nd.waitFor(ctx, "containerd", 30*time.Second, func() bool {
		return exec.Command(ctr, "--address", nd.paths.socket, "version").Run() == nil
	}); err != nil {
		return fail(err)
	}
	for _, img := range c.images {
		// As kind loads images: into the CRI's namespace, unpacked for its snapshotter.
		if err := runCmd(ctr, "--address", nd.paths.socket, "-n", "k8s.io", "images", "import",
			"--all-platforms", "--snapshotter", "overlayfs", img); err != nil {
			return fail(fmt.Errorf("importing image archive %s: %w", img, err))
		}
	}
	logf("node: containerd ready with %d image archive(s) after %.1fs", len(c.images), time.Since(start).Seconds())

	kubeletKubeconfig := filepath.Join(nd.paths.root, "kubelet.kubeconfig")
	if err := writeCertKubeconfig(kubeletKubeconfig, c.server, c.pk.caCert, "system:node:"+nodeName, c.np.nodeClientCert, c.np.nodeClientKey); err != nil {
		return fail(err)
	}
	kubeletConf, err := writeKubeletConfig(nd.paths, c.net, c.pk.caCert, c.np)
	if err != nil {
		return fail(err)
	}
	if err := nd.spawn("kubelet", env, filepath.Join(c.binDir, "kubelet"),
		"--config="+kubeletConf, "--kubeconfig="+kubeletKubeconfig, "--root-dir="+nd.paths.kubeletDir,
		"--hostname-override="+nodeName, "--node-ip="+c.net.nodeIP.String(), "--v=1"); err != nil {
		return fail(err)
	}
	proxyKubeconfig := filepath.Join(nd.paths.root, "kube-proxy.kubeconfig")
	if err := writeCertKubeconfig(proxyKubeconfig, c.server, c.pk.caCert, "system:kube-proxy", c.np.proxyClientCert, c.np.proxyClientKey); err != nil {
		return fail(err)
	}
	proxyConf, err := writeKubeProxyConfig(nd.paths, c.net, proxyKubeconfig, nodeName)
	if err != nil {
		return fail(err)
	}
	if err := nd.spawn("kube-proxy", env, filepath.Join(c.binDir, "kube-proxy"), "--config="+proxyConf, "--v=1"); err != nil {
		return fail(err)
	}
	if err := nd.waitFor(ctx, "the Node to be Ready and schedulable", 3*time.Minute, func() bool { return nodeReady(ctx, c.admin) }); err != nil {
		return fail(err)
	}
	if err := checkNetwork(c.net, c.apiPort, "after the node is Ready"); err != nil {
		return fail(err)
	}
	if err := installAddons(ctx, c.adminConfig, c.admin, c.net, nd.paths); err != nil {
		return fail(err)
	}
	if err := nd.writeFacts(c, ctr, time.Since(start)); err != nil {
		return fail(err)
	}
	logf("node %s Ready at %s after %.1fs", nodeName, c.net.nodeIP, time.Since(start).Seconds())
	return nd, nil
}

// prepare starts from a clean slate: nothing of an earlier node of this DIR
// survives (the kubelet recreates the pods the API still holds), then creates
// the cgroup, the CNI configuration and the directories.
func (nd *node) prepare(c nodeConfig) error {
	if err := teardownNodeRuntime(nd.net, nd.paths); err != nil {
		return err
	}
	if err := createNodeCgroups(nd.net); err != nil {
		return err
	}
	for _, d := range append(nd.paths.runtimeDirs(), nd.paths.logs, nd.net.runDir()) {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	return writeCNIConfig(nd.paths, nd.net)
}

// spawn starts one of the node's programs and watches it: an exit before
// stop() is reported on exited.
func (nd *node) spawn(name string, env []string, bin string, args ...string) error {
	p, err := startNodeProc(nd.net, name, filepath.Join(nd.paths.logs, name+".log"), env, bin, args...)
	if err != nil {
		return err
	}
	nd.procs = append(nd.procs, p)
	go func() {
		err, ok := <-p.done
		if ok && !nd.stopping.Load() {
			nd.exited <- fmt.Errorf("%s exited (%v); see %s", name, err, filepath.Join(nd.paths.logs, name+".log"))
		}
	}()
	return nil
}

// waitFor polls ready until it holds, a node process exits, or limit passes.
func (nd *node) waitFor(ctx context.Context, what string, limit time.Duration, ready func() bool) error {
	deadline := time.Now().Add(limit)
	for !ready() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %s (logs in %s)", limit, what, nd.paths.logs)
		}
		select {
		case err := <-nd.exited:
			return fmt.Errorf("while waiting for %s: %w", what, err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	return nil
}

// nodeReady: the Node reports Ready and the node-lifecycle controller has
// lifted the not-ready taint, so pods can be scheduled.
func nodeReady(ctx context.Context, cs *kubernetes.Clientset) bool {
	n, err := cs.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
	if err != nil {
		return false
	}
	for _, t := range n.Spec.Taints {
		if t.Key == corev1.TaintNodeNotReady {
			return false
		}
	}
	for _, cond := range n.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}

// writeFacts records what tests need to know about the node in DIR/node/facts.env
// (KEY=value lines, shell-sourceable).
func (nd *node) writeFacts(c nodeConfig, ctr string, took time.Duration) error {
	facts := []string{
		"NODE_NAME=" + nodeName,
		"NODE_IP=" + c.net.nodeIP.String(),
		"HOST_IP=" + c.net.hostIP.String(),
		"POD_CIDR=" + c.net.podCIDR.String(),
		"SERVICE_CIDR=" + c.net.serviceCIDR.String(),
		"KUBERNETES_SERVICE_IP=" + c.net.kubernetesServiceIP().String(),
		"API_SERVER_FOR_PODS=https://" + c.net.kubernetesServiceIP().String() + ":443",
		"CLUSTER_DNS=" + c.net.clusterDNSIP().String(),
		"CLUSTER_DOMAIN=" + clusterDomain,
		"API_SERVER_ENDPOINT=" + c.server,
		"NETNS=" + c.net.netns,
		"HOST_INTERFACE=" + c.net.hostIf,
		"SLOT=" + fmt.Sprint(c.net.slot),
		"CONTAINERD_ADDRESS=" + nd.paths.socket,
		"CTR=" + ctr,
		fmt.Sprintf("NODE_READY_SECONDS=%.2f", took.Seconds()),
	}
	return os.WriteFile(filepath.Join(nd.paths.root, "facts.env"), []byte(strings.Join(facts, "\n")+"\n"), 0o644)
}

// stop ends the node: the kubelet and kube-proxy, then containerd, each by its
// pid with a grace period, then whatever is left in the node's cgroup; then
// its mounts and cgroups. The network stays for kube-apiserver, which serves
// on it until it has shut down (teardownNetwork follows); the slot stays
// reserved for this DIR.
func (nd *node) stop() {
	if nd == nil {
		return
	}
	nd.stopping.Store(true)
	for i := len(nd.procs) - 1; i >= 0; i-- {
		nd.procs[i].stop(10 * time.Second)
	}
	if err := teardownNodeRuntime(nd.net, nd.paths); err != nil {
		logf("node teardown: %v", err)
	}
	_ = os.Remove(filepath.Join(nd.paths.root, "facts.env"))
	logf("node stopped and cleaned up (slot %d)", nd.net.slot)
}

// teardownNodeRuntime kills every process left in the node's cgroup, unmounts
// everything below the node's directories, removes the cgroups and the node's
// runtime state (not its configuration, logs or slot).
func teardownNodeRuntime(n *nodeNet, p nodePaths) error {
	if err := killNodeProcesses(n); err != nil {
		return err
	}
	if err := unmountUnder(p.root, n.runDir()); err != nil {
		return err
	}
	removeNodeCgroups(n)
	forgetCNIResults(p)
	for _, d := range append(p.runtimeDirs(), n.runDir()) {
		if err := removeAllUnmounted(d); err != nil {
			return err
		}
	}
	forgetDevicePluginSocket()
	return nil
}

// devicePluginSocket is where every kubelet's device manager serves, whatever
// its root directory (no device plugins are used here).
const devicePluginSocket = "/var/lib/kubelet/device-plugins/kubelet.sock"

// forgetDevicePluginSocket removes the socket a stopped kubelet left, unless
// another node's kubelet answers on it, and then the directories once empty.
func forgetDevicePluginSocket() {
	if conn, err := net.DialTimeout("unix", devicePluginSocket, time.Second); err == nil {
		conn.Close()
		return
	}
	_ = os.Remove(devicePluginSocket)
	for _, d := range []string{filepath.Dir(devicePluginSocket), "/var/lib/kubelet"} {
		_ = syscall.Rmdir(d)
	}
}

// cniResultsDir is where libcni, inside containerd, caches each pod
// attachment's result; containerd has no setting for it.
const cniResultsDir = "/var/lib/cni/results"

// cniResultName is "<network>-<container id>-<interface>".
var cniResultName = regexp.MustCompile(`-([0-9a-f]{64})-[^-]+$`)

// forgetCNIResults removes the cached CNI results of the node's sandboxes,
// found in containerd's state: a node that is killed, not drained, never runs
// CNI DEL for them.
func forgetCNIResults(p nodePaths) {
	ids := map[string]bool{}
	for _, d := range []string{
		filepath.Join(p.stateDir, "io.containerd.runtime.v2.task", "k8s.io"),
		filepath.Join(p.stateDir, "io.containerd.grpc.v1.cri", "sandboxes"),
		filepath.Join(p.containerdDir, "io.containerd.grpc.v1.cri", "sandboxes"),
	} {
		entries, _ := os.ReadDir(d)
		for _, e := range entries {
			ids[e.Name()] = true
		}
	}
	entries, _ := os.ReadDir(cniResultsDir)
	for _, e := range entries {
		if m := cniResultName.FindStringSubmatch(e.Name()); m != nil && ids[m[1]] {
			_ = os.Remove(filepath.Join(cniResultsDir, e.Name()))
		}
	}
}

// teardownSlot removes everything a node of slot may have left, for a
// directory that is gone or stopped (tests/cluster/stop --kill, down, a crash).
func teardownSlot(n *nodeNet, dir string) {
	if err := teardownNodeRuntime(n, pathsFor(dir, n)); err != nil {
		logf("cleaning up slot %d: %v", n.slot, err)
	}
	teardownNetwork(n)
	if dir != "" {
		_ = os.Remove(filepath.Join(dir, "node", "facts.env"))
	}
}
