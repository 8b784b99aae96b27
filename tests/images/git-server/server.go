package main

import (
	"fmt"
	"log"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
)

// repoPath matches the repository part of a smart-HTTP URL: one or more safe path
// segments ending in .git, followed by what git asks of it.
var repoPath = regexp.MustCompile(`^/((?:[A-Za-z0-9_][A-Za-z0-9._-]*/)*[A-Za-z0-9_][A-Za-z0-9._-]*\.git)(/.*)?$`)

type server struct {
	root     string
	backend  string // git-http-backend
	authFile string
	push     bool
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/healthz" {
		fmt.Fprintln(w, "ok")
		return
	}
	user := ""
	if s.authFile != "" {
		var ok bool
		if user, ok = s.authenticate(r); !ok {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
	}
	m := repoPath.FindStringSubmatch(r.URL.Path)
	if m == nil || strings.Contains(m[1], "..") {
		http.Error(w, "not a repository path (want /NAME.git/...)", http.StatusNotFound)
		return
	}
	pushing := r.URL.Query().Get("service") == "git-receive-pack" || m[2] == "/git-receive-pack"
	if pushing && !s.push {
		http.Error(w, "this server is read-only", http.StatusForbidden)
		return
	}
	if pushing {
		if err := s.ensureRepo(m[1]); err != nil {
			log.Printf("git-server: creating %s: %v", m[1], err)
			http.Error(w, "cannot create the repository", http.StatusInternalServerError)
			return
		}
	}
	env := []string{
		"GIT_PROJECT_ROOT=" + s.root,
		"GIT_HTTP_EXPORT_ALL=1",
		// Command-line scope configuration, the only scope git honours safe.directory
		// from: the volume's repositories may belong to another uid than the server's.
		"GIT_CONFIG_COUNT=2",
		"GIT_CONFIG_KEY_0=safe.directory", "GIT_CONFIG_VALUE_0=*",
		"GIT_CONFIG_KEY_1=http.receivepack", fmt.Sprintf("GIT_CONFIG_VALUE_1=%t", s.push),
	}
	// Protocol v2 (what gix and modern git ask for) reaches the backend only this way.
	if p := r.Header.Get("Git-Protocol"); p != "" {
		env = append(env, "GIT_PROTOCOL="+p)
	}
	if user != "" {
		env = append(env, "REMOTE_USER="+user)
	}
	h := &cgi.Handler{
		Path:       s.backend,
		Root:       "/",
		Env:        env,
		InheritEnv: []string{"PATH", "HOME", "TMPDIR"},
		Stderr:     os.Stderr,
	}
	h.ServeHTTP(w, r)
}

// ensureRepo creates an empty bare repository for a first push.
func (s *server) ensureRepo(name string) error {
	dir := filepath.Join(s.root, filepath.FromSlash(name))
	if _, err := os.Stat(filepath.Join(dir, "HEAD")); err == nil {
		return nil
	}
	out, err := exec.Command("git", "init", "--quiet", "--bare", "--initial-branch=main", dir).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	log.Printf("git-server: created %s", name)
	return nil
}
