package main

import (
	"os"
	"path/filepath"
	"testing"
)

// Two clusters never share a name, an interface or an address range.
func TestSlotsNeverShareNamesOrRanges(t *testing.T) {
	a, b := netForSlot(1), netForSlot(2)
	if a.netns == b.netns || a.hostIf == b.hostIf || a.cgroup() == b.cgroup() || a.forwardChain() == b.forwardChain() {
		t.Fatalf("names collide: %+v %+v", a, b)
	}
	for _, pair := range [][2]string{{a.podCIDR.String(), b.podCIDR.String()}, {a.serviceCIDR.String(), b.serviceCIDR.String()}, {a.transit.String(), b.transit.String()}} {
		if pair[0] == pair[1] {
			t.Fatalf("ranges collide: %v", pair)
		}
	}
	n := netForSlot(maxSlot)
	if len(n.hostIf) > 15 {
		t.Fatalf("interface name %q is longer than the kernel allows", n.hostIf)
	}
	if got := n.kubernetesServiceIP().String(); got != "10.96.250.1" {
		t.Fatalf("kubernetes ClusterIP %s", got)
	}
}

// A masquerading rule that could rewrite pod traffic for another interface is
// found; rules confined to other sources or to the node's own veth are not.
func TestMasqueradeRulesThatCouldTouchTheNodesRanges(t *testing.T) {
	n := netForSlot(3)
	cases := map[string]bool{
		"-A POSTROUTING -o eth0 -j MASQUERADE":                                  true,
		"-A POSTROUTING -s 10.244.0.0/16 ! -o docker0 -j MASQUERADE":            true,
		"-A POSTROUTING -s 10.96.3.7/32 -j SNAT --to-source 192.0.2.2":          true,
		"-A POSTROUTING ! -s 172.17.0.0/16 -j MASQUERADE":                       true,
		"-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE":            false,
		"-A POSTROUTING -o gwn-3 -j MASQUERADE":                                 false,
		"-A POSTROUTING ! -s 10.0.0.0/8 -j MASQUERADE":                          false,
		"-A POSTROUTING -m comment --comment \"a b\" -s 192.168.0.0/24 -j SNAT": false,
	}
	for line, want := range cases {
		r := parseNATRule(line)
		if r == nil {
			t.Fatalf("%q not parsed as a NAT rule", line)
		}
		if got := r.couldMasquerade(n); got != want {
			t.Errorf("%q: could masquerade = %v, want %v", line, got, want)
		}
	}
	if parseNATRule("-A POSTROUTING -j ACCEPT") != nil || parseNATRule("-P POSTROUTING ACCEPT") != nil {
		t.Fatal("a rule that does not rewrite sources was taken for one")
	}
}

func TestNativeNFTablesRulesNamingOtherSourcesAreHarmless(t *testing.T) {
	n := netForSlot(3)
	if nftRuleCouldMatch("ip saddr 172.18.0.0/16 oifname != \"br0\" masquerade", n) {
		t.Error("a rule for another source range was flagged")
	}
	if !nftRuleCouldMatch("oifname \"eth0\" masquerade", n) || !nftRuleCouldMatch("ip saddr 10.244.3.0/24 masquerade", n) {
		t.Error("a rule that could masquerade pods was not flagged")
	}
}

// The node may route only to its link, its bridge and the Service range.
func TestTheNodesAllowedRoutes(t *testing.T) {
	n := netForSlot(4)
	cases := map[string]bool{
		"10.250.4.0/30 dev eth0 proto kernel scope link src 10.250.4.2": true,
		"10.244.4.0/24 dev cni0 proto kernel scope link src 10.244.4.1": true,
		"10.96.4.0/24 dev eth0 scope link":                              true,
		"local 10.250.4.2 dev eth0 table local proto kernel scope host": true,
		"default via 10.250.4.1 dev eth0":                               false,
		"10.244.4.0/24 dev eth0":                                        false,
		"192.0.2.0/24 dev eth0 scope link":                              false,
		"unreachable 10.0.0.0/8":                                        false,
		"10.250.5.0/30 dev eth0 proto kernel scope link src 10.250.5.2": false,
	}
	for line, want := range cases {
		if got := allowedNodeRoute(n, line); got != want {
			t.Errorf("%q: allowed = %v, want %v", line, got, want)
		}
	}
}

// The guard must come before anything that could accept the node's packets.
func TestGuardFirstInForward(t *testing.T) {
	chain := netForSlot(5).forwardChain()
	ok := "-P FORWARD ACCEPT\n-A FORWARD -j GITWARDEN-NODE-2-FWD\n-A FORWARD -j " + chain + "\n-A FORWARD -j DOCKER\n"
	if !guardFirst(ok, chain) {
		t.Error("guard behind another node's guard rejected")
	}
	late := "-P FORWARD ACCEPT\n-A FORWARD -i docker0 -j ACCEPT\n-A FORWARD -j " + chain + "\n"
	if guardFirst(late, chain) || guardFirst("-P FORWARD ACCEPT\n", chain) {
		t.Error("a guard behind an ACCEPT, or none, accepted")
	}
}

// A restart finds its slot again; a directory that names none gets none.
func TestRememberedSlot(t *testing.T) {
	dir := t.TempDir()
	if rememberedSlot(dir) != 0 {
		t.Fatal("fresh dir has a slot")
	}
	if err := os.MkdirAll(filepath.Join(dir, "node"), 0o755); err != nil {
		t.Fatal(err)
	}
	for content, want := range map[string]int{"7\n": 7, "0": 0, "251": 0, "x": 0} {
		if err := os.WriteFile(filepath.Join(dir, "node", "slot"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if got := rememberedSlot(dir); got != want {
			t.Errorf("slot file %q: %d, want %d", content, got, want)
		}
	}
}

func TestUnescapeMount(t *testing.T) {
	if got := unescapeMount(`/tmp/a\040b\134c`); got != `/tmp/a b\c` {
		t.Fatalf("got %q", got)
	}
}
