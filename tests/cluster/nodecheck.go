package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
)

// checkNetwork proves, from the kernel's own answers, that nothing the node or
// its pods send can leave the machine, and refuses the node otherwise. It runs
// before the kubelet starts (before any pod exists) and again once the node is
// Ready (kube-proxy's rules in place), and on demand (tests/cluster/node/check).
func checkNetwork(n *nodeNet, apiPort int, phase string) error {
	report, failed := networkReport(n, apiPort)
	logf("network check (%s):\n  %s", phase, strings.Join(report, "\n  "))
	if failed {
		return fmt.Errorf("the node's network check failed %s; refusing to run pods:\n  %s", phase, strings.Join(report, "\n  "))
	}
	return nil
}

// networkReport returns one line per check ("ok: ..." or "FAIL: ...").
func networkReport(n *nodeNet, apiPort int) ([]string, bool) {
	var lines []string
	failed := false
	check := func(ok bool, format string, args ...any) {
		if ok {
			lines = append(lines, "ok: "+fmt.Sprintf(format, args...))
		} else {
			lines = append(lines, "FAIL: "+fmt.Sprintf(format, args...))
			failed = true
		}
	}
	if _, err := os.Stat(n.netnsPath()); err != nil {
		check(false, "network namespace %s exists", n.netns)
		return lines, failed
	}

	// Inside the node: only the link to the host, the pods' bridge and the
	// Service range (pointing at the host); no default route, no IPv6.
	routes, err := output("ip", "-n", n.netns, "-4", "-o", "route", "show", "table", "all")
	check(err == nil, "reading the node's routes")
	for _, line := range strings.Split(strings.TrimSpace(routes), "\n") {
		if line == "" {
			continue
		}
		check(allowedNodeRoute(n, line), "node route %q is one of: link to the host, pod bridge, Service range via the host", strings.TrimSpace(line))
	}
	v6, _ := output("ip", "-n", n.netns, "-6", "-o", "route", "show", "table", "all")
	check(strings.TrimSpace(v6) == "", "the node has no IPv6 route")
	for _, dst := range append([]string{"1.1.1.1", "8.8.8.8"}, hostGateways()...) {
		out, err := output("ip", "-n", n.netns, "route", "get", dst)
		check(err != nil, "from the node, %s (off the machine) has no route%s", dst, unexpected(out))
	}

	// On the host: the pod range is reached only through the veth, the Service
	// range is unreachable, and no other route covers either.
	for _, ip := range []net.IP{offset(n.podCIDR, 2), offset(n.podCIDR, 254)} {
		out, err := output("ip", "route", "get", ip.String())
		check(err == nil && strings.Contains(out, " dev "+n.hostIf+" "), "from the host, pod address %s routes via %s%s", ip, n.hostIf, unexpected(out))
	}
	for _, ip := range []net.IP{n.kubernetesServiceIP(), offset(n.serviceCIDR, 254)} {
		out, err := output("ip", "route", "get", ip.String())
		check(err != nil, "from the host, Service address %s is unreachable%s", ip, unexpected(out))
	}
	hostRoutes, err := output("ip", "-4", "-o", "route", "show", "table", "all")
	check(err == nil, "reading the host's routes")
	for _, line := range strings.Split(hostRoutes, "\n") {
		dst := routeDestination(line)
		if dst == nil || dst.String() == "0.0.0.0/0" || !(overlaps(dst, n.podCIDR) || overlaps(dst, n.serviceCIDR) || overlaps(dst, n.transit)) {
			continue
		}
		ours := strings.Contains(line, " dev "+n.hostIf+" ") || strings.HasSuffix(strings.TrimSpace(line), " dev "+n.hostIf) ||
			strings.HasPrefix(strings.TrimSpace(line), "unreachable "+n.serviceCIDR.String())
		check(ours, "host route %q for the node's ranges is the harness's own", strings.TrimSpace(line))
	}

	// The host forwards nothing for the node, whatever else its FORWARD chain does.
	fwd, err := output("iptables", "-w", "-S", "FORWARD")
	check(err == nil && guardFirst(fwd, n.forwardChain()), "the host's FORWARD chain jumps to %s before any other rule", n.forwardChain())
	guard, err := output("iptables", "-w", "-S", n.forwardChain())
	check(err == nil && strings.Contains(guard, "-i "+n.hostIf+" -j DROP") && strings.Contains(guard, "-s "+n.podCIDR.String()+" -j DROP"),
		"%s drops everything forwarded from the node and from the pod range", n.forwardChain())
	in, err := output("iptables", "-w", "-S", n.inputChain())
	check(err == nil && strings.Contains(in, fmt.Sprintf("--dport %d -j ACCEPT", apiPort)) && strings.HasSuffix(strings.TrimSpace(in), "-j DROP"),
		"of the host's own services, pods reach only kube-apiserver (port %d)", apiPort)
	if data, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward"); err == nil {
		lines = append(lines, "info: the host's net.ipv4.ip_forward is "+strings.TrimSpace(string(data))+" (the guard chain drops the node's traffic either way)")
	}

	// No masquerading on the host could rewrite pod or Service traffic for another interface.
	examined, risky := 0, 0
	var sources []string
	for _, save := range natDumps() {
		sources = append(sources, save.source)
		for _, line := range strings.Split(save.text, "\n") {
			if r := parseNATRule(line); r != nil {
				examined++
				if r.couldMasquerade(n) {
					risky++
					check(false, "%s rule %q cannot masquerade the node's ranges off the machine", save.source, strings.TrimSpace(line))
				}
			}
		}
	}
	if _, err := exec.LookPath("nft"); err == nil {
		sources = append(sources, "native nftables")
	}
	for _, line := range nativeNFTMasquerades() {
		examined++
		if nftRuleCouldMatch(line, n) {
			risky++
			check(false, "nftables rule %q cannot masquerade the node's ranges off the machine", line)
		}
	}
	check(len(sources) > 0 && risky == 0, "the host's nat rules cannot masquerade the node's ranges off the machine (%d SNAT/MASQUERADE rules examined in %s)",
		examined, strings.Join(sources, ", "))
	return lines, failed
}

func unexpected(out string) string {
	if strings.TrimSpace(out) == "" {
		return ""
	}
	return " (got: " + strings.Join(strings.Fields(out), " ") + ")"
}

// allowedNodeRoute tells whether a route of the node's netns is one the harness expects.
func allowedNodeRoute(n *nodeNet, line string) bool {
	f := strings.Fields(line)
	if len(f) > 0 && (f[0] == "local" || f[0] == "broadcast" || f[0] == "multicast") {
		return true // the kernel's own entries for the node's addresses
	}
	dst := routeDestination(line)
	if dst == nil {
		return false
	}
	switch dst.String() {
	case n.transit.String(), n.serviceCIDR.String():
		return strings.Contains(line, " dev eth0")
	case n.podCIDR.String():
		return strings.Contains(line, " dev cni0")
	}
	return false
}

// hostGateways are the host's default gateways: the way off the machine.
func hostGateways() []string {
	out, err := output("ip", "-4", "-o", "route", "show", "default")
	if err != nil {
		return nil
	}
	var gws []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "via" {
				gws = append(gws, f[i+1])
			}
		}
	}
	return gws
}

// guardFirst: every rule before the jump to chain is another node's guard.
func guardFirst(rules, chain string) bool {
	for _, line := range strings.Split(rules, "\n") {
		if !strings.HasPrefix(line, "-A FORWARD") {
			continue
		}
		if strings.TrimSpace(line) == "-A FORWARD -j "+chain {
			return true
		}
		if !strings.HasPrefix(line, "-A FORWARD -j GITWARDEN-NODE-") {
			return false
		}
	}
	return false
}

type natDump struct{ source, text string }

// natDumps are the host's nat tables as iptables-save prints them: the
// nftables-backed one, and the legacy one when the kernel has it loaded
// (asking for it otherwise would create it).
func natDumps() []natDump {
	var dumps []natDump
	if out, err := output("iptables-save", "-t", "nat"); err == nil {
		dumps = append(dumps, natDump{"iptables", out})
	}
	if names, err := os.ReadFile("/proc/net/ip_tables_names"); err == nil && strings.Contains(string(names), "nat") {
		if _, err := exec.LookPath("iptables-legacy-save"); err == nil {
			if out, err := output("iptables-legacy-save", "-t", "nat"); err == nil {
				dumps = append(dumps, natDump{"iptables-legacy", out})
			}
		}
	}
	return dumps
}

type natRule struct {
	src, out       string
	srcNeg, outNeg bool
}

// parseNATRule reads a MASQUERADE or SNAT rule of iptables-save; nil for any other line.
func parseNATRule(line string) *natRule {
	f := strings.Fields(line)
	if len(f) < 2 || f[0] != "-A" {
		return nil
	}
	r := &natRule{}
	target := ""
	neg := false
	for i := 2; i < len(f); i++ {
		switch f[i] {
		case "!":
			neg = true
			continue
		case "-s", "--source":
			if i+1 < len(f) {
				r.src, r.srcNeg = f[i+1], neg
				i++
			}
		case "-o", "--out-interface":
			if i+1 < len(f) {
				r.out, r.outNeg = f[i+1], neg
				i++
			}
		case "-j", "--jump":
			if i+1 < len(f) {
				target = f[i+1]
				i++
			}
		}
		neg = false
	}
	if target != "MASQUERADE" && target != "SNAT" {
		return nil
	}
	return r
}

// couldMasquerade: the rule may apply to a packet from the pod or Service
// range that leaves through anything but the node's own veth.
func (r *natRule) couldMasquerade(n *nodeNet) bool {
	if r.out == n.hostIf && !r.outNeg {
		return false
	}
	if r.src == "" {
		return true
	}
	src := parseCIDR(r.src)
	if src == nil {
		return true
	}
	for _, rng := range []*net.IPNet{n.podCIDR, n.serviceCIDR} {
		if !r.srcNeg && overlaps(src, rng) {
			return true
		}
		if r.srcNeg && !contains(src, rng) {
			return true
		}
	}
	return false
}

// nativeNFTMasquerades lists masquerade and snat statements of nftables tables
// that iptables-nft does not manage (those are read through iptables-save).
func nativeNFTMasquerades() []string {
	if _, err := exec.LookPath("nft"); err != nil {
		return nil
	}
	out, err := output("nft", "list", "ruleset")
	if err != nil {
		return nil
	}
	compat := map[string]bool{"filter": true, "nat": true, "mangle": true, "raw": true, "security": true}
	var hits []string
	skip := false
	for _, line := range strings.Split(out, "\n") {
		t := strings.TrimSpace(line)
		if strings.HasPrefix(t, "table ") {
			f := strings.Fields(t)
			skip = len(f) >= 3 && (f[1] == "ip" || f[1] == "ip6") && compat[f[2]]
			continue
		}
		if !skip && (strings.Contains(t, "masquerade") || strings.Contains(t, "snat ")) {
			hits = append(hits, t)
		}
	}
	return hits
}

// nftRuleCouldMatch: unless the rule names a source prefix apart from the
// node's ranges, it might masquerade them.
func nftRuleCouldMatch(line string, n *nodeNet) bool {
	f := strings.Fields(line)
	for i := 0; i+2 < len(f); i++ {
		if f[i] == "ip" && f[i+1] == "saddr" {
			src := parseCIDR(f[i+2])
			if src == nil {
				return true
			}
			return overlaps(src, n.podCIDR) || overlaps(src, n.serviceCIDR)
		}
	}
	return true
}

func parseCIDR(s string) *net.IPNet {
	if !strings.Contains(s, "/") {
		s += "/32"
	}
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		return nil
	}
	return n
}

// contains: every address of inner is in outer.
func contains(outer, inner *net.IPNet) bool {
	oo, _ := outer.Mask.Size()
	io, _ := inner.Mask.Size()
	return outer.Contains(inner.IP) && oo <= io
}
