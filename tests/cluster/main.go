// Command gitwarden-cluster runs a real, single-process Kubernetes control plane on
// loopback: embedded etcd, kube-apiserver and kube-controller-manager, all built from
// the upstream Go modules. It is started and stopped by the `up` and `down` scripts
// beside this file, which are the contract tests and the demo rely on.
//
// With --node it also runs a real node (node.go): kube-scheduler in this process,
// and containerd, the kubelet and kube-proxy as processes of their own in a
// network namespace that cannot reach beyond the machine (nodenet.go).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	dir := flag.String("dir", "", "directory for the cluster's state, kubeconfigs and marker files (required)")
	port := flag.Int("port", 0, "kube-apiserver secure port on 127.0.0.1 (0 = pick a free one)")
	watchPID := flag.Int("watch-pid", 0, "shut down when this process exits (test harnesses pass their own pid)")
	removeOnExit := flag.Bool("remove-on-exit", false, "remove DIR and everything in it after shutting down (for test harnesses)")
	removeWhenOrphaned := flag.Bool("remove-when-orphaned", false, "remove DIR only when the --watch-pid process is gone (test harnesses that restart the control plane on the same DIR)")
	admissionConfig := flag.String("admission-config", "", "kube-apiserver --admission-control-config-file (an AdmissionConfiguration, e.g. with manifest-based webhooks)")
	withNode := flag.Bool("node", false, "also run a node: kube-scheduler, containerd, kubelet, kube-proxy (needs root and --node-bin)")
	nodeBin := flag.String("node-bin", "", "directory of the node's programs (tests/cluster/node/build prints it)")
	var nodeImages stringList
	flag.Var(&nodeImages, "node-image", "an OCI image archive to import into the node's containerd before the kubelet starts (repeatable)")
	nodeCleanup := flag.Bool("node-cleanup", false, "do not start anything: remove what a stopped or killed node of DIR left (processes, mounts, cgroups, network)")
	nodeRelease := flag.Bool("node-release", false, "with --node-cleanup: also give up DIR's node slot (tests/cluster/down)")
	nodeCheck := flag.Bool("node-check", false, "do not start anything: run the network checks on DIR's running node and print them")
	flag.Parse()
	if *dir == "" {
		fatalf("--dir is required")
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		fatalf("resolving --dir: %v", err)
	}
	if *nodeCleanup {
		if err := cleanupNode(abs, *nodeRelease); err != nil {
			fatalf("%v", err)
		}
		return
	}
	if *nodeCheck {
		if err := printNodeCheck(abs); err != nil {
			fatalf("%v", err)
		}
		return
	}
	if *admissionConfig != "" {
		if *admissionConfig, err = filepath.Abs(*admissionConfig); err != nil {
			fatalf("resolving --admission-config: %v", err)
		}
		if _, err := os.Stat(*admissionConfig); err != nil {
			fatalf("--admission-config: %v", err)
		}
	}
	opts := options{port: *port, watchPID: *watchPID, removeOnExit: *removeOnExit, removeWhenOrphaned: *removeWhenOrphaned, admissionConfig: *admissionConfig}
	if *withNode {
		if *nodeBin == "" {
			fatalf("--node needs --node-bin (tests/cluster/node/build prints it)")
		}
		if opts.nodeBin, err = filepath.Abs(*nodeBin); err != nil {
			fatalf("resolving --node-bin: %v", err)
		}
		for _, img := range nodeImages {
			abs, err := filepath.Abs(img)
			if err != nil {
				fatalf("resolving --node-image: %v", err)
			}
			if _, err := os.Stat(abs); err != nil {
				fatalf("--node-image: %v", err)
			}
			opts.nodeImages = append(opts.nodeImages, abs)
		}
		opts.node = true
	}
	if err := run(abs, opts); err != nil {
		fatalf("%v", err)
	}
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "gitwarden-cluster: error: "+format+"\n", args...)
	os.Exit(1)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "gitwarden-cluster: %s "+format+"\n", append([]any{time.Now().Format(time.RFC3339Nano)}, args...)...)
}

// options are the command-line settings besides DIR.
type options struct {
	port                             int
	watchPID                         int
	removeOnExit, removeWhenOrphaned bool
	admissionConfig                  string
	node                             bool
	nodeBin                          string
	nodeImages                       []string
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

func run(dir string, opts options) error {
	start := time.Now()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("cannot create %s: %w", dir, err)
	}
	// Without a node, kube-apiserver serves on loopback; with one, on the host's
	// end of the node's veth (nodenet.go), created first.
	host := "127.0.0.1"
	var nn *nodeNet
	if opts.node {
		if err := checkNodeTools(opts.nodeBin); err != nil {
			return err
		}
		slot, err := reserveSlot(dir)
		if err != nil {
			return err
		}
		nn = netForSlot(slot)
		// Whatever a killed run of this DIR left behind goes first.
		teardownSlot(nn, dir)
		if err := setupNetwork(nn); err != nil {
			return err
		}
		host = nn.hostIP.String()
		logf("node network: slot %d, netns %s, node IP %s, pods %s, Services %s", slot, nn.netns, nn.nodeIP, nn.podCIDR, nn.serviceCIDR)
	}
	var nd *node
	// On an early way out, whatever of the node exists goes (the normal way
	// out below orders it around kube-apiserver's shutdown).
	defer func() {
		if nd != nil {
			nd.stop()
		}
		if nn != nil {
			teardownSlot(nn, dir)
		}
	}()
	apiPort, err := choosePortOn(host, rememberedPort(dir, opts.port))
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "port"), []byte(strconv.Itoa(apiPort)+"\n"), 0o644); err != nil {
		return err
	}
	pk, reused, err := loadOrWritePKI(dir)
	if err != nil {
		return fmt.Errorf("generating certificates: %w", err)
	}
	if reused {
		logf("restarting on the state in %s: same CA, serving certificate, service-account keys, tokens and etcd data", dir)
	}
	listen := loopbackListen(pk)
	var np *nodePKI
	if opts.node {
		if err := installGuard(nn, apiPort); err != nil {
			return err
		}
		if np, err = writeNodePKI(dir, pk, nn, nodeName); err != nil {
			return fmt.Errorf("generating the node's certificates: %w", err)
		}
		listen = nodeListen(nn, np)
	}
	ids := identities()
	tokenFile := filepath.Join(dir, "pki", "tokens.csv")
	if err := writeTokenFile(tokenFile, ids); err != nil {
		return fmt.Errorf("writing token file: %w", err)
	}

	etcd, err := startEtcd(filepath.Join(dir, "etcd"))
	if err != nil {
		return fmt.Errorf("starting etcd: %w", err)
	}
	defer etcd.Close()
	logf("etcd ready at %s", etcd.url)

	server := "https://" + net.JoinHostPort(host, strconv.Itoa(apiPort))
	args := apiServerArgs(dir, apiPort, etcd.url, pk, tokenFile, listen)
	if opts.node {
		args = append(args, nodeAPIServerArgs(pk, np)...)
	}
	if opts.admissionConfig != "" {
		args = append(args, admissionArgs(opts.admissionConfig)...)
		logf("admission configuration: %s", opts.admissionConfig)
	}
	apiDone := startAPIServer(args)

	admin := ids[0]
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop := make(chan os.Signal, 2)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	orphaned := make(chan struct{})
	if opts.watchPID > 0 {
		go watchParent(opts.watchPID, stop, orphaned)
	}

	bootErr := make(chan error, 1)
	bootDone := make(chan struct{})
	kcmDone := make(chan error, 1)
	schedDone := make(chan error, 1)
	var started *node // set by the boot goroutine before it reports success
	go func() {
		defer close(bootDone)
		cs, err := waitForAPIServer(ctx, server, pk.caCert, admin.token, apiDone)
		if err != nil {
			bootErr <- err
			return
		}
		if err := bindClusterAdmins(ctx, cs, ids); err != nil {
			bootErr <- err
			return
		}
		kcmKubeconfig := ids[3]
		if err := writeKubeconfig(filepath.Join(dir, "pki"), kcmKubeconfig, server, pk.caCert); err != nil {
			bootErr <- err
			return
		}
		kcmControllers := controllers
		if opts.node {
			kcmControllers += nodeControllers
		}
		go func() {
			kcmDone <- runControllerManager(ctx, filepath.Join(dir, "pki", kcmKubeconfig.file), pk, kcmControllers)
		}()
		if opts.node {
			schedKubeconfig := ids[4]
			if err := writeKubeconfig(filepath.Join(dir, "pki"), schedKubeconfig, server, pk.caCert); err != nil {
				bootErr <- err
				return
			}
			go func() { schedDone <- runScheduler(ctx, filepath.Join(dir, "pki", schedKubeconfig.file)) }()
			if err := bindKubeletClient(ctx, cs); err != nil {
				bootErr <- err
				return
			}
		}
		if err := waitForDefaultNamespace(ctx, cs); err != nil {
			bootErr <- err
			return
		}
		for _, id := range ids[:3] {
			if err := writeKubeconfig(dir, id, server, pk.caCert); err != nil {
				bootErr <- err
				return
			}
		}
		if err := os.WriteFile(filepath.Join(dir, "server"), []byte(server+"\n"), 0o644); err != nil {
			bootErr <- err
			return
		}
		if opts.node {
			n, err := startNode(ctx, nodeConfig{
				dir: dir, net: nn, binDir: opts.nodeBin, images: opts.nodeImages,
				server: server, apiPort: apiPort, pk: pk, np: np, admin: cs,
				adminConfig: adminRESTConfig(server, pk.caCert, admin.token),
			})
			if err != nil {
				bootErr <- err
				return
			}
			started = n
		}
		elapsed := time.Since(start)
		if err := os.WriteFile(filepath.Join(dir, "ready"), []byte(fmt.Sprintf("%.2f\n", elapsed.Seconds())), 0o644); err != nil {
			bootErr <- err
			return
		}
		logf("cluster ready at %s after %.1fs", server, elapsed.Seconds())
		bootErr <- nil
	}()

	var result error
	becameReady := false
	select {
	case err := <-bootErr:
		if err != nil {
			result = err
			break
		}
		becameReady = true
		nd = started
		var nodeExited <-chan error
		if nd != nil {
			nodeExited = nd.exited
		}
		select {
		case sig := <-stop:
			logf("received %v, shutting down", sig)
		case err := <-apiDone:
			result = fmt.Errorf("kube-apiserver exited: %v", err)
		case err := <-kcmDone:
			result = fmt.Errorf("kube-controller-manager exited: %v", err)
		case err := <-schedDone:
			result = fmt.Errorf("kube-scheduler exited: %v", err)
		case err := <-nodeExited:
			result = fmt.Errorf("the node failed: %v", err)
		}
	case sig := <-stop:
		logf("received %v before ready, shutting down", sig)
	case err := <-apiDone:
		result = fmt.Errorf("kube-apiserver exited during start-up: %v", err)
	}
	cancel()
	// A node being started stops itself when ctx ends; wait for that.
	select {
	case <-bootDone:
	case <-time.After(60 * time.Second):
		logf("start-up did not wind down within 60s")
	}
	// The node first (the kubelet may still report to the API server), then the
	// control plane, then the network kube-apiserver served on.
	if nd != nil {
		nd.stop()
		nd = nil
	}
	shutdown(apiDone)
	etcd.Close()
	if nn != nil {
		teardownSlot(nn, dir)
		nn = nil
	}
	remove := opts.removeOnExit
	select {
	case <-orphaned:
		remove = remove || opts.removeWhenOrphaned
	default:
	}
	if remove && !becameReady {
		// A start-up that failed keeps its log (and state) for whoever asks
		// why: tests/cluster/up prints the log, then removes the directory.
		logf("start-up failed: keeping %s for diagnosis", dir)
		remove = false
	}
	if remove {
		if opts.node {
			if err := releaseSlot(rememberedSlot(dir), dir); err != nil {
				logf("releasing the node slot: %v", err)
			}
		}
		removeState(dir)
	}
	return result
}

// shutdown asks kube-apiserver to stop through its own signal handler and waits a
// bounded time for it: a test harness must never hang on teardown.
func shutdown(apiDone <-chan error) {
	_ = syscall.Kill(os.Getpid(), syscall.SIGTERM)
	select {
	case <-apiDone:
	case <-time.After(20 * time.Second):
		logf("kube-apiserver did not stop within 20s; exiting anyway")
	}
}

// watchParent reports on stop when the watched process is gone, so a test binary that
// panics or is killed never leaves a control plane behind; orphaned is closed first.
func watchParent(pid int, stop chan<- os.Signal, orphaned chan<- struct{}) {
	for {
		time.Sleep(time.Second)
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			logf("watched process %d is gone", pid)
			close(orphaned)
			stop <- syscall.SIGTERM
			return
		}
	}
}

// rememberedPort is the port to ask for: the one requested, or else the one a
// previous run on dir used (so a restart keeps the server URL every kubeconfig
// names), or else 0 for a free one.
func rememberedPort(dir string, requested int) int {
	if requested != 0 {
		return requested
	}
	data, err := os.ReadFile(filepath.Join(dir, "port"))
	if err != nil {
		return 0
	}
	port, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || port <= 0 || port > 65535 {
		return 0
	}
	return port
}

// chooseDistinctPorts returns n free loopback ports, all different: each is
// held until all are chosen.
func chooseDistinctPorts(n int) ([]int, error) {
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("no free loopback port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// choosePortOn returns the requested port on host if it is free, or a free
// one when 0.
func choosePortOn(host string, port int) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return 0, fmt.Errorf("port %d on %s is already in use or not allowed: %w", port, host, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// removeState deletes dir with everything in it. Only test harnesses ask for it
// (--remove-on-exit), always on a directory they created for this cluster. It
// never deletes through a mount a node left behind.
func removeState(dir string) {
	if err := removeAllUnmounted(dir); err != nil {
		logf("removing %s: %v", dir, err)
	}
}
