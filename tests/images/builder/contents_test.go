package main

import (
	"archive/tar"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"gitwarden.io/tests/images/oci"
)

// imageContent is what a pod relies on in an image, written out by hand.
type imageContent struct {
	user       string
	entrypoint []string
	cmd        []string
	env        []string
	files      []string // regular files (or hard links) that must be there
	links      map[string]string
	absent     []string
	owners     map[string][2]int
}

var expectedContents = map[string]imageContent{
	"pause": {
		user: "65535:65535", entrypoint: []string{"/pause"},
		files: []string{"/pause"}, absent: []string{"/bin/sh"},
	},
	"toolbox": {
		user: "", cmd: []string{"/bin/sh"}, // root: tests' workloads write where they like
		files:  []string{"/bin/busybox", "/bin/kubectl", "/etc/passwd", "/etc/group"},
		links:  map[string]string{"/bin/sh": "/bin/busybox", "/bin/wget": "/bin/busybox", "/bin/nc": "/bin/busybox"},
		owners: map[string][2]int{"/tmp": {0, 0}},
	},
	"agent": {
		user: "65532:65532", entrypoint: []string{"/usr/local/bin/gitwarden-agent"}, cmd: []string{"run"},
		files: []string{"/usr/local/bin/gitwarden-agent", "/usr/local/bin/kustomize", "/usr/bin/git",
			"/usr/bin/ssh", "/etc/ssl/certs/ca-certificates.crt"},
	},
	"webhook": {
		user: "65532:65532", entrypoint: []string{"/usr/local/bin/gitwarden-webhook"}, cmd: []string{"serve"},
		env: []string{"SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"},
		files: []string{"/usr/local/bin/gitwarden-webhook", "/usr/local/bin/gitwarden-certs",
			"/usr/local/bin/gitwarden-doctor", "/etc/ssl/certs/ca-certificates.crt", "/etc/passwd",
			"/lib/x86_64-linux-gnu/libc.so.6", "/lib/x86_64-linux-gnu/libgcc_s.so.1"},
		absent: []string{"/bin/sh", "/usr/bin/sh", "/bin/bash", "/usr/bin/apt-get"},
		owners: map[string][2]int{"/home/nonroot": {65532, 65532}},
	},
	"git-server": {
		user: "65532:65532", entrypoint: []string{"/usr/local/bin/git-server"},
		cmd:    []string{"--listen=:8080", "--root=/srv/git"},
		files:  []string{"/usr/local/bin/git-server", "/usr/bin/git", "/usr/lib/git-core/git-http-backend"},
		owners: map[string][2]int{"/srv/git": {65532, 65532}},
	},
	"coredns": {
		user: "65532:65532", entrypoint: []string{"/coredns"},
		files: []string{"/coredns"}, absent: []string{"/bin/sh"},
	},
	"demo-web": {
		user: "65532:65532", entrypoint: []string{"/demo-web"},
		files: []string{"/demo-web"}, absent: []string{"/bin/sh"},
	},
}

// The images hold what their pods need: run as non-root (all but the tests' toolbox)
// with the right command, and carry their programs (and, for the webhook, nothing to shell into).
func TestImageContents(t *testing.T) {
	root := repoRoot(t)
	lines := built(t, t.TempDir())
	list, err := readList(filepath.Join(root, listPath))
	if err != nil {
		t.Fatal(err)
	}
	for _, spec := range list {
		want, ok := expectedContents[spec.Name]
		if !ok {
			t.Errorf("%s: no expected contents written down here", spec.Name)
			continue
		}
		t.Run(spec.Name, func(t *testing.T) {
			a, err := oci.ReadArchive(lines[spec.Name][2])
			if err != nil {
				t.Fatal(err)
			}
			cfg := a.Config.Config
			if cfg.User != want.user || !reflect.DeepEqual(cfg.Entrypoint, want.entrypoint) || !reflect.DeepEqual(cfg.Cmd, want.cmd) {
				t.Errorf("user %q entrypoint %q cmd %q, want %q %q %q", cfg.User, cfg.Entrypoint, cfg.Cmd, want.user, want.entrypoint, want.cmd)
			}
			for _, kv := range want.env {
				if !slices.Contains(cfg.Env, kv) {
					t.Errorf("env %q missing from %q", kv, cfg.Env)
				}
			}
			for _, p := range want.files {
				f := a.Files[p]
				if f == nil || (f.Header.Typeflag != tar.TypeReg && f.Header.Typeflag != tar.TypeLink) {
					t.Errorf("%s: not a file in the image", p)
				} else if f.Header.Typeflag == tar.TypeReg && f.Header.Size == 0 {
					t.Errorf("%s is empty", p)
				}
			}
			for p, target := range want.links {
				if f := a.Files[p]; f == nil || f.Header.Typeflag != tar.TypeSymlink || f.Header.Linkname != target {
					t.Errorf("%s: want a symlink to %s", p, target)
				}
			}
			for _, p := range want.absent {
				if a.Files[p] != nil {
					t.Errorf("%s should not be in the image", p)
				}
			}
			for p, owner := range want.owners {
				if f := a.Files[p]; f == nil || f.Header.Uid != owner[0] || f.Header.Gid != owner[1] {
					t.Errorf("%s: want owner %d:%d", p, owner[0], owner[1])
				}
			}
		})
	}
}
