package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// identity is a static-token user of the test cluster. The humans are the
// threat model gitwarden defends against: alice and carol are cluster-admins
// by RBAC, admin is in system:masters (RBAC cannot restrict it at all).
type identity struct {
	file   string // kubeconfig file name in DIR, empty for internal users
	user   string
	groups []string
	token  string
	// bindClusterAdmin grants cluster-admin through a ClusterRoleBinding.
	bindClusterAdmin bool
}

func identities() []*identity {
	return []*identity{
		{file: "admin.kubeconfig", user: "admin", groups: []string{"system:masters"}},
		{file: "alice.kubeconfig", user: "alice", groups: []string{"developers"}, bindClusterAdmin: true},
		{file: "carol.kubeconfig", user: "carol", groups: []string{"developers", "gitwarden:break-glass"}, bindClusterAdmin: true},
		{file: "kube-controller-manager.kubeconfig", user: "system:kube-controller-manager"},
		{file: "kube-scheduler.kubeconfig", user: "system:kube-scheduler"},
	}
}

// writeTokenFile writes kube-apiserver's --token-auth-file (CSV: token,user,uid,"groups").
// A user who already has a token in the file keeps it, so the kubeconfigs of a
// control plane restarted on the same DIR stay valid; new users get a new token.
func writeTokenFile(path string, ids []*identity) error {
	previous := readTokens(path)
	var b strings.Builder
	for _, id := range ids {
		if token, ok := previous[id.user]; ok {
			id.token = token
		} else {
			id.token = randomToken()
		}
		fmt.Fprintf(&b, "%s,%s,%s,\"%s\"\n", id.token, id.user, "uid-"+strings.ReplaceAll(id.user, ":", "-"), strings.Join(id.groups, ","))
	}
	return os.WriteFile(path, []byte(b.String()), 0o600)
}

// readTokens returns user → token from a token file written before; an absent
// or unreadable file gives none (a fresh DIR).
func readTokens(path string) map[string]string {
	tokens := map[string]string{}
	data, err := os.ReadFile(path)
	if err != nil {
		return tokens
	}
	for _, line := range strings.Split(string(data), "\n") {
		fields := strings.SplitN(line, ",", 3)
		if len(fields) == 3 && len(fields[0]) == 32 && fields[1] != "" {
			tokens[fields[1]] = fields[0]
		}
	}
	return tokens
}

// writeKubeconfig writes a kubeconfig with a bearer token; the same shape kubectl,
// client-go and kube-rs all read.
func writeKubeconfig(dir string, id *identity, server, caFile string) error {
	abs, err := filepath.Abs(caFile)
	if err != nil {
		return err
	}
	content := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: gitwarden-test
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: %s
  user:
    token: %s
contexts:
- name: %s@gitwarden-test
  context:
    cluster: gitwarden-test
    user: %s
    namespace: default
current-context: %s@gitwarden-test
`, server, abs, id.user, id.token, id.user, id.user, id.user)
	return os.WriteFile(filepath.Join(dir, id.file), []byte(content), 0o600)
}
