package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// newServer starts the handler on a local port, as the image runs it.
func newServer(t *testing.T, s *server) string {
	t.Helper()
	backend, err := httpBackend()
	if err != nil {
		t.Fatalf("this test needs git: %v", err)
	}
	s.root, s.backend = t.TempDir(), backend
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return srv.URL
}

// git runs the real git client with no user or system configuration.
func git(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.invalid",
		"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.invalid", "GIT_TERMINAL_PROMPT=0")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func mustGit(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out, err := git(t, dir, args...)
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// commitRepo makes a work tree with two commits of deploy.yaml.
func commitRepo(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	mustGit(t, dir, "init", "-q", "-b", "main")
	for _, v := range []string{"one", "two"} {
		if err := os.WriteFile(filepath.Join(dir, "deploy.yaml"), []byte("value: "+v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		mustGit(t, dir, "add", ".")
		mustGit(t, dir, "commit", "-q", "-m", v)
	}
	return dir
}

func TestPushCreatesRepositoryAndCloneReadsIt(t *testing.T) {
	url := newServer(t, &server{push: true})
	work := commitRepo(t)
	mustGit(t, work, "push", "-q", url+"/team/demo.git", "main")

	clone := filepath.Join(t.TempDir(), "clone")
	// Shallow, over protocol v2: how the agent fetches.
	mustGit(t, "", "-c", "protocol.version=2", "clone", "-q", "--depth=1", url+"/team/demo.git", clone)
	data, err := os.ReadFile(filepath.Join(clone, "deploy.yaml"))
	if err != nil || string(data) != "value: two\n" {
		t.Fatalf("cloned deploy.yaml = %q, %v", data, err)
	}
	if n := strings.TrimSpace(mustGit(t, clone, "rev-list", "--count", "HEAD")); n != "1" {
		t.Fatalf("a depth-1 clone has %s commits", n)
	}
}

func TestAuthFileGuardsFetchAndPush(t *testing.T) {
	auth := filepath.Join(t.TempDir(), "auth")
	if err := os.WriteFile(auth, []byte("# users\nx-access-token:s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	url := newServer(t, &server{push: true, authFile: auth})
	work := commitRepo(t)
	if out, err := git(t, work, "push", "-q", url+"/demo.git", "main"); err == nil {
		t.Fatalf("push without credentials succeeded: %s", out)
	}
	if out, err := git(t, work, "push", "-q", strings.Replace(url, "://", "://x-access-token:wrong@", 1)+"/demo.git", "main"); err == nil {
		t.Fatalf("push with a wrong token succeeded: %s", out)
	}
	withToken := strings.Replace(url, "://", "://x-access-token:s3cret@", 1) + "/demo.git"
	mustGit(t, work, "push", "-q", withToken, "main")
	if out := mustGit(t, "", "ls-remote", withToken); !strings.Contains(out, "refs/heads/main") {
		t.Fatalf("ls-remote: %s", out)
	}
}

func TestReadOnlyRefusesPush(t *testing.T) {
	url := newServer(t, &server{push: false})
	work := commitRepo(t)
	if out, err := git(t, work, "push", "-q", url+"/demo.git", "main"); err == nil {
		t.Fatalf("push to a read-only server succeeded: %s", out)
	}
}

func TestPathsOutsideRepositoriesAreNotFound(t *testing.T) {
	url := newServer(t, &server{push: true})
	for _, p := range []string{"/", "/etc/passwd", "/../x.git/info/refs", "/a/..git/info/refs", "/missing.git/info/refs?service=git-upload-pack"} {
		resp, err := http.Get(url + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s = %d, want 404", p, resp.StatusCode)
		}
	}
	resp, err := http.Get(url + "/healthz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz: %v %v", resp, err)
	}
	resp.Body.Close()
}
