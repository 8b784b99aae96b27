package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// nodeNet names one node cluster's network. Everything is derived from the
// cluster's slot (1..maxSlot), so clusters running at once never share a name,
// an interface or an address range:
//
//	netns gitwarden-node-N    the node: containerd, kubelet, kube-proxy, the CNI bridge, the pods
//	veth gwn-N                the host's end of the only link into it; "eth0" inside
//	10.250.N.0/30             that link: .1 on the host (kube-apiserver binds here), .2 the node IP
//	10.244.N.0/24             pods, on the bridge cni0 inside the netns
//	10.96.N.0/24              Services (virtual: kube-proxy's rules inside the netns)
//
// The netns has no default route, so a pod's packet to anything but the host's
// end of the link, the pods and the Services has no route at all. The host routes
// the pod range only via the veth, marks the Service range unreachable, and drops
// every forwarded packet from or to these ranges (the host never forwards for the
// node; it only talks to it).
type nodeNet struct {
	slot        int
	netns       string
	hostIf      string
	hostIP      net.IP
	nodeIP      net.IP
	transit     *net.IPNet
	podCIDR     *net.IPNet
	serviceCIDR *net.IPNet
}

const maxSlot = 250

// nodeRunRoot holds per-slot runtime files with short paths (unix sockets are
// limited to 108 bytes) and the slot reservations; /run is cleared on reboot,
// as are network namespaces.
const nodeRunRoot = "/run/gitwarden-node"

func netForSlot(slot int) *nodeNet {
	cidr := func(s string) *net.IPNet {
		_, n, err := net.ParseCIDR(s)
		if err != nil {
			panic(err)
		}
		return n
	}
	return &nodeNet{
		slot:        slot,
		netns:       "gitwarden-node-" + strconv.Itoa(slot),
		hostIf:      "gwn-" + strconv.Itoa(slot),
		hostIP:      net.IPv4(10, 250, byte(slot), 1).To4(),
		nodeIP:      net.IPv4(10, 250, byte(slot), 2).To4(),
		transit:     cidr(fmt.Sprintf("10.250.%d.0/30", slot)),
		podCIDR:     cidr(fmt.Sprintf("10.244.%d.0/24", slot)),
		serviceCIDR: cidr(fmt.Sprintf("10.96.%d.0/24", slot)),
	}
}

// bridgeIP is the pods' gateway, on cni0 inside the netns.
func (n *nodeNet) bridgeIP() net.IP { return offset(n.podCIDR, 1) }

// kubernetesServiceIP is the ClusterIP of Service default/kubernetes: the first
// address of the Service range, as kube-apiserver allocates it.
func (n *nodeNet) kubernetesServiceIP() net.IP { return offset(n.serviceCIDR, 1) }

// clusterDNSIP is Service kube-system/kube-dns's ClusterIP, as kubeadm picks it.
func (n *nodeNet) clusterDNSIP() net.IP { return offset(n.serviceCIDR, 10) }

// runDir holds this slot's sockets (containerd, its shims).
func (n *nodeNet) runDir() string { return filepath.Join(nodeRunRoot, strconv.Itoa(n.slot)) }

// netnsPath is the file `ip netns` keeps the namespace alive with.
func (n *nodeNet) netnsPath() string { return filepath.Join("/run/netns", n.netns) }

// cgroup is the node's cgroup (kubelet's cgroupRoot) in every v1 hierarchy.
func (n *nodeNet) cgroup() string { return "gitwarden-node-" + strconv.Itoa(n.slot) }

// guardChains are the host's iptables chains for this node (filter table).
func (n *nodeNet) forwardChain() string { return "GITWARDEN-NODE-" + strconv.Itoa(n.slot) + "-FWD" }
func (n *nodeNet) inputChain() string   { return "GITWARDEN-NODE-" + strconv.Itoa(n.slot) + "-IN" }

func offset(n *net.IPNet, i int) net.IP {
	ip := make(net.IP, 4)
	copy(ip, n.IP.To4())
	ip[3] += byte(i)
	return ip
}

// lastIP is the broadcast address of an IPv4 network.
func lastIP(n *net.IPNet) net.IP {
	ip := make(net.IP, 4)
	for i := range ip {
		ip[i] = n.IP.To4()[i] | ^n.Mask[i]
	}
	return ip
}

// overlaps tells whether two networks share an address.
func overlaps(a, b *net.IPNet) bool { return a.Contains(b.IP) || b.Contains(a.IP) }

// setupNetwork creates the node's netns, its link to the host and the host's
// routes (installGuard adds the iptables guard once kube-apiserver's port is
// known). Whatever a previous run of this slot left behind is removed first; a
// failure part-way removes what was created.
func setupNetwork(n *nodeNet) error {
	teardownNetwork(n)
	if err := os.MkdirAll(n.runDir(), 0o700); err != nil {
		return err
	}
	in := func(args ...string) []string { return append([]string{"netns", "exec", n.netns}, args...) }
	tr, _ := n.transit.Mask.Size()
	peer := n.hostIf + "-n"
	steps := [][]string{
		{"ip", "netns", "add", n.netns},
		// IPv6 off inside before any interface arrives: the node is IPv4 only,
		// and no IPv6 address means no IPv6 route anywhere.
		append([]string{"ip"}, in("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")...),
		// The node routes between its pods and its link to the host...
		append([]string{"ip"}, in("sysctl", "-qw", "net.ipv4.ip_forward=1")...),
		// ...and Service traffic between pods on one bridge passes iptables.
		append([]string{"ip"}, in("sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1")...),
		// Every packet without a route gets its "network unreachable" at once,
		// not only the first one per second: a pod fails fast, every time.
		append([]string{"ip"}, in("sysctl", "-qw", "net.ipv4.icmp_ratelimit=0")...),
		{"ip", "link", "add", n.hostIf, "type", "veth", "peer", "name", peer},
		{"sysctl", "-qw", "net.ipv6.conf." + n.hostIf + ".disable_ipv6=1"},
		{"ip", "link", "set", peer, "netns", n.netns},
		{"ip", "-n", n.netns, "link", "set", peer, "name", "eth0"},
		{"ip", "addr", "add", fmt.Sprintf("%s/%d", n.hostIP, tr), "dev", n.hostIf},
		{"ip", "link", "set", n.hostIf, "up"},
		{"ip", "-n", n.netns, "addr", "add", fmt.Sprintf("%s/%d", n.nodeIP, tr), "dev", "eth0"},
		{"ip", "-n", n.netns, "link", "set", "lo", "up"},
		{"ip", "-n", n.netns, "link", "set", "eth0", "up"},
		// Node-local processes reach ClusterIPs: a route must exist before
		// kube-proxy's OUTPUT rules rewrite the destination. It points at the
		// host, which forwards nothing.
		{"ip", "-n", n.netns, "route", "add", n.serviceCIDR.String(), "dev", "eth0"},
		// The host reaches pods (kube-apiserver calls webhooks at pod IPs) only via the veth.
		{"ip", "route", "add", n.podCIDR.String(), "via", n.nodeIP.String(), "dev", n.hostIf},
		// Host traffic to a ClusterIP never takes the default route off the machine.
		{"ip", "route", "add", "unreachable", n.serviceCIDR.String()},
	}
	for _, s := range steps {
		if err := runCmd(s...); err != nil {
			teardownNetwork(n)
			return fmt.Errorf("setting up the node's network: %w", err)
		}
	}
	return nil
}

// installGuard adds the host's iptables chains: nothing is forwarded from or to
// the node's link or ranges, and of the host's own services pods reach only
// kube-apiserver on apiPort (replies to connections the host opened pass).
func installGuard(n *nodeNet, apiPort int) error {
	fwd, inp := n.forwardChain(), n.inputChain()
	rules := [][]string{
		{"-N", fwd},
		{"-A", fwd, "-i", n.hostIf, "-j", "DROP"},
		{"-A", fwd, "-o", n.hostIf, "-j", "DROP"},
	}
	for _, r := range []*net.IPNet{n.podCIDR, n.serviceCIDR, n.transit} {
		rules = append(rules, []string{"-A", fwd, "-s", r.String(), "-j", "DROP"}, []string{"-A", fwd, "-d", r.String(), "-j", "DROP"})
	}
	rules = append(rules,
		[]string{"-N", inp},
		[]string{"-A", inp, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"},
		[]string{"-A", inp, "-p", "tcp", "-d", n.hostIP.String(), "--dport", strconv.Itoa(apiPort), "-j", "ACCEPT"},
		[]string{"-A", inp, "-p", "icmp", "-j", "ACCEPT"},
		[]string{"-A", inp, "-j", "DROP"},
		[]string{"-I", "FORWARD", "1", "-j", fwd},
		[]string{"-I", "INPUT", "1", "-i", n.hostIf, "-j", inp},
	)
	for _, r := range rules {
		if err := runCmd(append([]string{"iptables", "-w"}, r...)...); err != nil {
			return fmt.Errorf("installing the host's iptables guard: %w", err)
		}
	}
	return nil
}

// teardownNetwork removes everything setupNetwork creates; absent pieces are fine.
func teardownNetwork(n *nodeNet) {
	fwd, inp := n.forwardChain(), n.inputChain()
	// A jump may have been inserted twice by an interrupted run: delete until none is left.
	for i := 0; i < 10 && runQuiet("iptables", "-w", "-D", "FORWARD", "-j", fwd) == nil; i++ {
	}
	for i := 0; i < 10 && runQuiet("iptables", "-w", "-D", "INPUT", "-i", n.hostIf, "-j", inp) == nil; i++ {
	}
	for _, c := range []string{fwd, inp} {
		_ = runQuiet("iptables", "-w", "-F", c)
		_ = runQuiet("iptables", "-w", "-X", c)
	}
	_ = runQuiet("ip", "route", "del", n.podCIDR.String(), "dev", n.hostIf)
	_ = runQuiet("ip", "route", "del", "unreachable", n.serviceCIDR.String())
	_ = runQuiet("ip", "link", "del", n.hostIf)
	if _, err := os.Stat(n.netnsPath()); err == nil {
		if err := runCmd("ip", "netns", "del", n.netns); err != nil {
			logf("removing network namespace %s: %v", n.netns, err)
		}
	}
}

// hostRoutesOverlapping lists the host's routes (any table, default routes
// aside) that share addresses with the slot's ranges: such a slot is not used.
func hostRoutesOverlapping(n *nodeNet) ([]string, error) {
	out, err := output("ip", "-4", "-o", "route", "show", "table", "all")
	if err != nil {
		return nil, err
	}
	var hits []string
	for _, line := range strings.Split(out, "\n") {
		dst := routeDestination(line)
		if dst == nil || dst.String() == "0.0.0.0/0" {
			continue
		}
		for _, r := range []*net.IPNet{n.transit, n.podCIDR, n.serviceCIDR} {
			if overlaps(dst, r) {
				hits = append(hits, strings.TrimSpace(line))
				break
			}
		}
	}
	return hits, nil
}

// routeDestination parses the destination of one `ip -o route` line, skipping
// a leading route type (unreachable, local, broadcast, ...).
func routeDestination(line string) *net.IPNet {
	fields := strings.Fields(line)
	if len(fields) > 0 && !strings.ContainsAny(fields[0], "./") && fields[0] != "default" && len(fields) > 1 {
		fields = fields[1:]
	}
	if len(fields) == 0 {
		return nil
	}
	if fields[0] == "default" {
		_, n, _ := net.ParseCIDR("0.0.0.0/0")
		return n
	}
	s := fields[0]
	if !strings.Contains(s, "/") {
		s += "/32"
	}
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		return nil
	}
	return n
}
