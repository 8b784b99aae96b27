// Command gitwarden-cluster runs a real, single-process Kubernetes control plane on
// loopback: embedded etcd, kube-apiserver and kube-controller-manager, all built from
// the upstream Go modules. It is started and stopped by the `up` and `down` scripts
// beside this file, which are the contract tests and the demo rely on.
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
	flag.Parse()
	if *dir == "" {
		fatalf("--dir is required")
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		fatalf("resolving --dir: %v", err)
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
}

func run(dir string, opts options) error {
	start := time.Now()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("cannot create %s: %w", dir, err)
	}
	apiPort, err := choosePort(rememberedPort(dir, opts.port))
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

	server := "https://127.0.0.1:" + strconv.Itoa(apiPort)
	args := apiServerArgs(dir, apiPort, etcd.url, pk, tokenFile)
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
	kcmDone := make(chan error, 1)
	go func() {
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
		go func() { kcmDone <- runControllerManager(ctx, filepath.Join(dir, "pki", kcmKubeconfig.file), pk) }()
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
		elapsed := time.Since(start)
		if err := os.WriteFile(filepath.Join(dir, "ready"), []byte(fmt.Sprintf("%.2f\n", elapsed.Seconds())), 0o644); err != nil {
			bootErr <- err
			return
		}
		logf("cluster ready at %s after %.1fs", server, elapsed.Seconds())
		bootErr <- nil
	}()

	var result error
	select {
	case err := <-bootErr:
		if err != nil {
			result = err
			break
		}
		select {
		case sig := <-stop:
			logf("received %v, shutting down", sig)
		case err := <-apiDone:
			result = fmt.Errorf("kube-apiserver exited: %v", err)
		case err := <-kcmDone:
			result = fmt.Errorf("kube-controller-manager exited: %v", err)
		}
	case sig := <-stop:
		logf("received %v before ready, shutting down", sig)
	case err := <-apiDone:
		result = fmt.Errorf("kube-apiserver exited during start-up: %v", err)
	}
	cancel()
	shutdown(apiDone)
	etcd.Close()
	select {
	case <-orphaned:
		if opts.removeWhenOrphaned {
			removeState(dir)
		}
	default:
	}
	if opts.removeOnExit {
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

// choosePort returns the requested port if it is free, or a free one when 0.
func choosePort(port int) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return 0, fmt.Errorf("port %d on 127.0.0.1 is already in use or not allowed: %w", port, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// removeState deletes dir with everything in it. Only test harnesses ask for it
// (--remove-on-exit), always on a directory they created for this cluster.
func removeState(dir string) {
	if err := os.RemoveAll(dir); err != nil {
		logf("removing %s: %v", dir, err)
	}
}
