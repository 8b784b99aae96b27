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
	"syscall"
	"time"
)

func main() {
	dir := flag.String("dir", "", "directory for the cluster's state, kubeconfigs and marker files (required)")
	port := flag.Int("port", 0, "kube-apiserver secure port on 127.0.0.1 (0 = pick a free one)")
	watchPID := flag.Int("watch-pid", 0, "shut down when this process exits (test harnesses pass their own pid)")
	removeOnExit := flag.Bool("remove-on-exit", false, "remove DIR and everything in it after shutting down (for test harnesses)")
	flag.Parse()
	if *dir == "" {
		fatalf("--dir is required")
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		fatalf("resolving --dir: %v", err)
	}
	if err := run(abs, *port, *watchPID, *removeOnExit); err != nil {
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

func run(dir string, port, watchPID int, removeOnExit bool) error {
	start := time.Now()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("cannot create %s: %w", dir, err)
	}
	apiPort, err := choosePort(port)
	if err != nil {
		return err
	}
	pk, err := writePKI(dir)
	if err != nil {
		return fmt.Errorf("generating certificates: %w", err)
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
	apiDone := startAPIServer(apiServerArgs(dir, apiPort, etcd.url, pk, tokenFile))

	admin := ids[0]
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop := make(chan os.Signal, 2)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	if watchPID > 0 {
		go watchParent(watchPID, stop)
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
	if removeOnExit {
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
// panics or is killed never leaves a control plane behind.
func watchParent(pid int, stop chan<- os.Signal) {
	for {
		time.Sleep(time.Second)
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			logf("watched process %d is gone", pid)
			stop <- syscall.SIGTERM
			return
		}
	}
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
