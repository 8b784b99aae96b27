package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// cleanupNode is --node-cleanup: after its control plane is gone (stop --kill,
// a crash, down), remove whatever DIR's node left: processes, mounts, cgroups,
// the network. With release, the slot is given up too. A slot that another
// directory has taken over since is left alone; only DIR's own mounts go.
func cleanupNode(dir string, release bool) error {
	slot := rememberedSlot(dir)
	if slot == 0 {
		return nil
	}
	n := netForSlot(slot)
	if owner, _, ok := slotOwner(slot); ok && owner != dir {
		p := pathsFor(dir, n)
		if err := unmountUnder(p.root); err != nil {
			return err
		}
		logf("slot %d now belongs to %s: cleaned up only %s", slot, owner, p.root)
	} else {
		teardownSlot(n, dir)
	}
	if release {
		if err := releaseSlot(slot, dir); err != nil {
			return err
		}
		return os.Remove(filepath.Join(dir, "node", "slot"))
	}
	return nil
}

// printNodeCheck is --node-check: the network checks of DIR's running node.
func printNodeCheck(dir string) error {
	slot := rememberedSlot(dir)
	if slot == 0 {
		return fmt.Errorf("%s has no node (start it with GITWARDEN_CLUSTER_NODE=1 tests/cluster/up)", dir)
	}
	data, err := os.ReadFile(filepath.Join(dir, "port"))
	if err != nil {
		return err
	}
	port, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return fmt.Errorf("%s/port: %w", dir, err)
	}
	report, failed := networkReport(netForSlot(slot), port)
	fmt.Println(strings.Join(report, "\n"))
	if failed {
		return fmt.Errorf("the node's network check failed")
	}
	return nil
}
