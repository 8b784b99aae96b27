package main

import (
	"archive/tar"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"

	"gitwarden.io/tests/images/containerfile"
	"gitwarden.io/tests/images/oci"
)

// defaultPath is the PATH a container gets when its image sets none (Docker's and
// BuildKit's default, which they also write into images built FROM scratch).
const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// stageResult is what a finished stage offers to later stages and, for the last one,
// to the image.
type stageResult struct {
	tool   *toolchainStage // set for toolchain stages (rust, golang), which have no file system
	fs     fsState
	config oci.RunConfig
}

// runStage executes one stage. Stages FROM a root file system the builder can make
// (see bases.go, and scratch) run their instructions here; toolchain stages are handed
// to toolchain.go.
func (b *builder) runStage(f *containerfile.File, st *containerfile.Stage, done map[string]*stageResult) (*stageResult, error) {
	if kind := toolchainKind(st.From); kind != "" {
		tool, err := b.toolchain(kind, f, st)
		if err != nil {
			return nil, err
		}
		return &stageResult{tool: tool}, nil
	}
	r := &stageResult{}
	if st.From != "scratch" {
		base, config, err := b.base(st.From)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", f.Path, st.Line, err)
		}
		r.fs, r.config = base, config
	} else {
		r.fs.key = newKey("scratch").sum()
	}
	for _, in := range st.Instructions {
		if err := b.apply(r, in, done); err != nil {
			return nil, fmt.Errorf("%s:%d: %s: %w", f.Path, in.Line, in.Cmd, err)
		}
	}
	return r, nil
}

func (b *builder) apply(r *stageResult, in containerfile.Instruction, done map[string]*stageResult) error {
	switch in.Cmd {
	case "RUN":
		return b.run(r, in.Args)
	case "COPY":
		return b.copy(r, in, done)
	case "WORKDIR":
		dir := path.Clean(in.Args[0])
		r.config.WorkingDir = dir
		if !r.fs.isDir(dir) {
			r.fs.add(oci.Entry{Path: dir, Type: tar.TypeDir, Mode: 0o755})
		}
	case "ENV":
		for _, kv := range in.Pairs {
			r.config.Env = setEnv(r.config.Env, kv[0], kv[1])
		}
	case "USER":
		r.config.User = in.Args[0]
	case "ENTRYPOINT":
		// As in Docker: a new ENTRYPOINT drops the CMD inherited from the base image.
		r.config.Entrypoint, r.config.Cmd = in.Args, nil
	case "CMD":
		r.config.Cmd = in.Args
	case "EXPOSE":
		if r.config.ExposedPorts == nil {
			r.config.ExposedPorts = map[string]struct{}{}
		}
		for _, p := range in.Args {
			if !strings.Contains(p, "/") {
				p += "/tcp"
			}
			r.config.ExposedPorts[p] = struct{}{}
		}
	case "LABEL":
		if r.config.Labels == nil {
			r.config.Labels = map[string]string{}
		}
		for _, kv := range in.Pairs {
			r.config.Labels[kv[0]] = kv[1]
		}
	default:
		return fmt.Errorf("not supported")
	}
	return nil
}

// run executes a RUN in a copy of the stage's file system, chrooted, and caches the
// result under a key of everything that went into it.
func (b *builder) run(r *stageResult, argv []string) error {
	if u := r.config.User; u != "" && u != "0" && u != "root" && !strings.HasPrefix(u, "0:") && !strings.HasPrefix(u, "root:") {
		return fmt.Errorf("RUN after USER %s is not supported (RUN runs as root here)", u)
	}
	env := r.config.Env
	if !hasEnv(env, "PATH") {
		env = append([]string{defaultPath}, env...)
	}
	if !hasEnv(env, "HOME") {
		env = append(env, "HOME=/root")
	}
	key := newKey("run").add(r.fs.key).add(argv...).add("env").add(env...).add(b.chrootRunHash).sum()
	dst := b.cache.entry("rootfs", key)
	if !exists(dst) {
		fmt.Fprintf(b.log, "tests/images/build: RUN %s\n", strings.Join(argv, " "))
		tmp, err := b.cache.tempDir("run-")
		if err != nil {
			return err
		}
		if err := r.fs.materialize(tmp); err != nil {
			os.RemoveAll(tmp)
			return err
		}
		args := append([]string{tmp}, env...)
		args = append(append(args, "--"), argv...)
		cmd := exec.Command(filepath.Join(b.repo, "tests/images/chroot-run"), args...)
		cmd.Stdout, cmd.Stderr = b.log, b.log
		if err := cmd.Run(); err != nil {
			os.RemoveAll(tmp)
			return fmt.Errorf("the command failed (%v)", err)
		}
		removeVolatile(tmp)
		if dst, err = b.cache.commit(tmp, "rootfs", key); err != nil {
			return err
		}
	}
	r.fs = fsState{dir: dst, key: key}
	return nil
}

// removeVolatile deletes what package installs leave that only records when they ran
// (the same files Debian's official images leave out), so that a rebuilt file system
// differs only where the packages do.
func removeVolatile(root string) {
	for _, p := range []string{
		"var/log/dpkg.log", "var/log/alternatives.log", "var/log/bootstrap.log",
		"var/log/apt/history.log", "var/log/apt/term.log", "var/log/apt/eipp.log.xz",
		"var/cache/ldconfig/aux-cache",
	} {
		_ = os.Remove(filepath.Join(root, p))
	}
}

func setEnv(env []string, key, value string) []string {
	for i, kv := range env {
		if k, _, _ := strings.Cut(kv, "="); k == key {
			env[i] = key + "=" + value
			return env
		}
	}
	return append(env, key+"="+value)
}

func hasEnv(env []string, key string) bool {
	for _, kv := range env {
		if k, _, _ := strings.Cut(kv, "="); k == key {
			return true
		}
	}
	return false
}
