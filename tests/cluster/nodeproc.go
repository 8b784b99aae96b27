package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// nodeProc is one of the node's programs (containerd, kubelet, kube-proxy): a
// separate process, as on a real node, started in the node's network namespace.
type nodeProc struct {
	name string
	cmd  *exec.Cmd
	done chan error
}

// The node's processes get SIGKILL when this process dies, even by SIGKILL
// (Pdeathsig). The kernel sends it when the *thread* that started them exits,
// so they are all started from one goroutine locked to a thread that never exits.
var (
	spawnOnce     sync.Once
	spawnRequests = make(chan spawnRequest)
)

type spawnRequest struct {
	cmd    *exec.Cmd
	result chan error
}

func spawner() {
	runtime.LockOSThread() // never unlocked: the thread lives as long as the process
	for r := range spawnRequests {
		r.result <- r.cmd.Start()
	}
}

// startNodeProc starts bin in the node's netns, inside the node's cgroup (so
// teardown finds it and everything it forks, shims and containers included),
// logging to logFile. It stays in the host's mount namespace: the kubelet's
// volume mounts must be visible to containerd, and teardown unmounts them.
func startNodeProc(n *nodeNet, name, logFile string, env []string, bin string, args ...string) (*nodeProc, error) {
	spawnOnce.Do(func() { go spawner() })
	log, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	procs := filepath.Join(procsHierarchy(), n.cgroup(), "system", "cgroup.procs")
	// The shell joins the cgroup and then becomes nsenter, which becomes bin:
	// one pid throughout, and nothing forks before it is in the cgroup.
	script := `procs=$1 ns=$2; shift 2; echo $$ > "$procs" && exec nsenter --net="$ns" -- "$@"`
	cmd := exec.Command("/bin/sh", append([]string{"-c", script, "node-" + name, procs, n.netnsPath(), bin}, args...)...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	req := spawnRequest{cmd: cmd, result: make(chan error, 1)}
	spawnRequests <- req
	if err := <-req.result; err != nil {
		log.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &nodeProc{name: name, cmd: cmd, done: make(chan error, 1)}
	go func() {
		err := cmd.Wait()
		log.Close()
		p.done <- err
		close(p.done)
	}()
	return p, nil
}

// stop sends SIGTERM and waits up to grace, then SIGKILL.
func (p *nodeProc) stop(grace time.Duration) {
	if p == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		logf("%s did not stop within %s; killing it", p.name, grace)
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// cgroupMounts returns the mount points of the cgroup hierarchies (v1 and v2).
func cgroupMounts() map[string]string {
	mounts := map[string]string{}
	for _, m := range readMountInfo() {
		if m.fstype == "cgroup" || m.fstype == "cgroup2" {
			mounts[m.point] = m.fstype
		}
	}
	return mounts
}

// procsHierarchy is the hierarchy that tells which processes are the node's:
// the v1 pids controller when mounted (hybrid hosts), else the v2 hierarchy.
func procsHierarchy() string {
	mounts := cgroupMounts()
	if mounts["/sys/fs/cgroup/pids"] == "cgroup" {
		return "/sys/fs/cgroup/pids"
	}
	for point, typ := range mounts {
		if typ == "cgroup2" {
			return point
		}
	}
	return "/sys/fs/cgroup"
}

// createNodeCgroups creates the node's cgroup (the kubelet's cgroupRoot) in
// every hierarchy, and its leaf "system" for the node's own processes (cgroup v2
// forbids processes beside child cgroups that use controllers).
func createNodeCgroups(n *nodeNet) error {
	for point := range cgroupMounts() {
		root := filepath.Join(point, n.cgroup())
		if err := os.MkdirAll(filepath.Join(root, "system"), 0o755); err != nil {
			return fmt.Errorf("creating cgroup %s: %w", root, err)
		}
		// A new v1 cpuset has no CPUs or memory nodes until given its parent's.
		if filepath.Base(point) == "cpuset" {
			for _, dir := range []string{root, filepath.Join(root, "system")} {
				for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
					v, err := os.ReadFile(filepath.Join(filepath.Dir(dir), f))
					if err != nil {
						return err
					}
					if err := os.WriteFile(filepath.Join(dir, f), v, 0o644); err != nil {
						return fmt.Errorf("initialising %s/%s: %w", dir, f, err)
					}
				}
			}
		}
	}
	return nil
}

// killNodeProcesses sends SIGKILL, by pid, to every process in the node's
// cgroup (containerd, kubelet, kube-proxy, shims, containers) until none is left.
func killNodeProcesses(n *nodeNet) error {
	root := filepath.Join(procsHierarchy(), n.cgroup())
	deadline := time.Now().Add(15 * time.Second)
	for {
		pids := cgroupPids(root)
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes of the node still running after SIGKILL: %v", pids)
		}
		for _, pid := range pids {
			if pid != os.Getpid() {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// cgroupPids lists the processes in a cgroup and its descendants.
func cgroupPids(root string) []int {
	var pids []int
	_ = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		data, err := os.ReadFile(filepath.Join(path, "cgroup.procs"))
		if err != nil {
			return nil
		}
		for _, f := range strings.Fields(string(data)) {
			if pid, err := strconv.Atoi(f); err == nil {
				pids = append(pids, pid)
			}
		}
		return nil
	})
	return pids
}

// removeNodeCgroups removes the node's cgroup trees, deepest first, once empty.
func removeNodeCgroups(n *nodeNet) {
	for point := range cgroupMounts() {
		root := filepath.Join(point, n.cgroup())
		var dirs []string
		_ = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
		sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
		for _, d := range dirs {
			if err := syscall.Rmdir(d); err != nil && err != syscall.ENOENT {
				logf("removing cgroup %s: %v", d, err)
			}
		}
	}
}

type mountEntry struct{ point, fstype string }

// readMountInfo parses this process's /proc/self/mountinfo.
func readMountInfo() []mountEntry {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var mounts []mountEntry
	for _, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		sep := -1
		for i, f := range fields {
			if f == "-" {
				sep = i
				break
			}
		}
		if len(fields) < 5 || sep < 0 || sep+1 >= len(fields) {
			continue
		}
		mounts = append(mounts, mountEntry{point: unescapeMount(fields[4]), fstype: fields[sep+1]})
	}
	return mounts
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space, ...).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// mountsUnder lists the mount points at or below any of roots, deepest first.
func mountsUnder(roots ...string) []string {
	var found []string
	for _, m := range readMountInfo() {
		for _, r := range roots {
			if m.point == r || strings.HasPrefix(m.point, r+"/") {
				found = append(found, m.point)
				break
			}
		}
	}
	sort.Slice(found, func(i, j int) bool { return len(found[i]) > len(found[j]) })
	return found
}

// unmountUnder unmounts everything the node mounted below roots (volumes under
// the kubelet's root, container root filesystems and pod network namespaces
// under containerd's), deepest first; a busy mount is detached.
func unmountUnder(roots ...string) error {
	for i := range roots {
		if r, err := filepath.EvalSymlinks(roots[i]); err == nil {
			roots[i] = r
		}
	}
	for pass := 0; pass < 5; pass++ {
		left := mountsUnder(roots...)
		if len(left) == 0 {
			return nil
		}
		for _, m := range left {
			if err := syscall.Unmount(m, 0); err != nil {
				_ = syscall.Unmount(m, syscall.MNT_DETACH)
			}
		}
	}
	if left := mountsUnder(roots...); len(left) > 0 {
		return fmt.Errorf("still mounted after unmounting: %s", strings.Join(left, ", "))
	}
	return nil
}

// removeAllUnmounted deletes path like os.RemoveAll, but only when nothing is
// mounted below it: a container's root filesystem may hold a bind mount of a
// host directory, which a recursive delete must never walk into.
func removeAllUnmounted(path string) error {
	real := path
	if r, err := filepath.EvalSymlinks(path); err == nil {
		real = r
	}
	if left := mountsUnder(real); len(left) > 0 {
		return fmt.Errorf("not removing %s: still mounted below it: %s", path, strings.Join(left, ", "))
	}
	return os.RemoveAll(path)
}
