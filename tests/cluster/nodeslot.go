package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Slots keep node clusters that run at once apart (see nodeNet). A cluster
// directory reserves a slot in nodeRunRoot/slot-N ("PID DIR") and keeps it while
// the directory holds node state, also while stopped, so a restart gets the same
// addresses, the same Service range and so the same ClusterIPs back. `down`
// releases it. A reservation whose directory is gone, or no longer names the
// slot, is stale: the next cluster that needs a slot cleans it up and takes it.

// reserveSlot returns the slot for dir: the one dir/node/slot remembers if it is
// still dir's or free, else the lowest free slot whose ranges no host route
// touches. Reservations are made under an exclusive lock.
func reserveSlot(dir string) (int, error) {
	unlock, err := lockSlots()
	if err != nil {
		return 0, err
	}
	defer unlock()
	sweepCrashedNodes()
	remembered := rememberedSlot(dir)
	candidates := []int{}
	if remembered > 0 {
		candidates = append(candidates, remembered)
	}
	for s := 1; s <= maxSlot; s++ {
		if s != remembered {
			candidates = append(candidates, s)
		}
	}
	var skipped []string
	for _, s := range candidates {
		owner, pid, ok := slotOwner(s)
		if ok && owner != dir && !staleReservation(s, owner, pid) {
			continue
		}
		if ok && owner != dir {
			logf("slot %d was reserved by %s, which is gone: cleaning up after it", s, owner)
			teardownSlot(netForSlot(s), owner)
		}
		hits, err := hostRoutesOverlapping(netForSlot(s))
		if err != nil {
			return 0, err
		}
		if len(hits) > 0 {
			skipped = append(skipped, fmt.Sprintf("slot %d: %s", s, strings.Join(hits, "; ")))
			continue
		}
		if s != remembered && remembered > 0 {
			logf("slot %d (remembered by %s) is taken; using slot %d: node and Service addresses change", remembered, dir, s)
		}
		if err := os.WriteFile(slotFile(s), []byte(fmt.Sprintf("%d %s\n", os.Getpid(), dir)), 0o644); err != nil {
			return 0, err
		}
		if err := os.MkdirAll(filepath.Join(dir, "node"), 0o755); err != nil {
			return 0, err
		}
		if err := os.WriteFile(filepath.Join(dir, "node", "slot"), []byte(strconv.Itoa(s)+"\n"), 0o644); err != nil {
			return 0, err
		}
		return s, nil
	}
	return 0, fmt.Errorf("no free node slot among 1..%d (each node cluster needs one; see %s); skipped for host routes: %s",
		maxSlot, nodeRunRoot, strings.Join(skipped, ", "))
}

// sweepCrashedNodes removes what nodes left whose control plane died without
// cleaning up and whose directory nobody cleaned since (a SIGKILL to both it and
// its test process): their network namespace still exists, their reserving
// process does not. Their reservations stay.
func sweepCrashedNodes() {
	for s := 1; s <= maxSlot; s++ {
		owner, pid, ok := slotOwner(s)
		n := netForSlot(s)
		if !ok || processAlive(pid) {
			continue
		}
		if _, err := os.Stat(n.netnsPath()); err != nil {
			continue
		}
		logf("slot %d: the node of %s was left running by a control plane that died; cleaning up after it", s, owner)
		teardownSlot(n, owner)
	}
}

// releaseSlot drops dir's reservation of slot (tests/cluster/down).
func releaseSlot(slot int, dir string) error {
	unlock, err := lockSlots()
	if err != nil {
		return err
	}
	defer unlock()
	if owner, _, ok := slotOwner(slot); ok && owner == dir {
		return os.Remove(slotFile(slot))
	}
	return nil
}

func lockSlots() (func(), error) {
	if err := os.MkdirAll(nodeRunRoot, 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w", nodeRunRoot, err)
	}
	f, err := os.OpenFile(filepath.Join(nodeRunRoot, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", f.Name(), err)
	}
	return func() { f.Close() }, nil
}

func slotFile(slot int) string { return filepath.Join(nodeRunRoot, "slot-"+strconv.Itoa(slot)) }

// slotOwner returns the directory that reserved slot and the pid that did.
func slotOwner(slot int) (string, int, bool) {
	data, err := os.ReadFile(slotFile(slot))
	if err != nil {
		return "", 0, false
	}
	p, dir, ok := strings.Cut(strings.TrimSpace(string(data)), " ")
	pid, _ := strconv.Atoi(p)
	return dir, pid, ok && dir != ""
}

// staleReservation: the owner's directory is gone or no longer names this
// slot, and the process that reserved it is gone too.
func staleReservation(slot int, owner string, pid int) bool {
	return rememberedSlot(owner) != slot && !processAlive(pid)
}

// processAlive: pid exists and is not a zombie.
func processAlive(pid int) bool {
	if pid <= 0 || syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name, which may hold spaces.
	rest := string(stat[strings.LastIndexByte(string(stat), ')')+1:])
	return !strings.HasPrefix(strings.TrimSpace(rest), "Z")
}

// rememberedSlot is the slot dir/node/slot names, or 0.
func rememberedSlot(dir string) int {
	data, err := os.ReadFile(filepath.Join(dir, "node", "slot"))
	if err != nil {
		return 0
	}
	s, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || s < 1 || s > maxSlot {
		return 0
	}
	return s
}
