package main

import (
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"gitwarden.io/tests/images/containerfile"
)

// Toolchain stages (FROM rust:… or golang:…) only compile; their results are what later
// stages COPY --from them. Without a registry there is no rust or golang image, so the
// builder gets the same results from this machine's toolchains: gitwarden's binaries
// come prebuilt from the bin directory (one cargo build at a time, and tests already
// build them), Go programs are built here with the stage's own `go` command line. Both
// are checked against what the stage says it makes, and toolchain.go's callers check
// that the binaries run on the image's libraries (elfcheck.go).

var (
	rustImage   = regexp.MustCompile(`^docker\.io/library/rust:[0-9.]+-bookworm$`)
	golangImage = regexp.MustCompile(`^docker\.io/library/golang:([0-9]+\.[0-9]+)(\.[0-9]+)?-bookworm$`)
	releaseBin  = regexp.MustCompile(`target/release/([A-Za-z0-9_.-]+)`)
	cargoPkg    = regexp.MustCompile(`(?:-p|--package)\s+([A-Za-z0-9_-]+)`)
)

func toolchainKind(from string) string {
	switch {
	case rustImage.MatchString(from):
		return "rust"
	case golangImage.MatchString(from):
		return "golang"
	}
	return ""
}

// toolchainStage maps the paths a toolchain stage produces to files on this machine.
type toolchainStage struct {
	name  string
	files map[string]string // image path -> host file
	// missing explains how to make a file the stage produces but that is not there yet.
	missing func(p string) error
}

func (t *toolchainStage) artifact(p string) (string, error) {
	host, ok := t.files[p]
	if !ok {
		produced := make([]string, 0, len(t.files))
		for f := range t.files {
			produced = append(produced, f)
		}
		sort.Strings(produced)
		return "", fmt.Errorf("stage %s does not produce %s (it produces %s)", t.name, p, strings.Join(produced, ", "))
	}
	if info, err := os.Stat(host); err != nil || !info.Mode().IsRegular() {
		if t.missing != nil {
			return "", t.missing(p)
		}
		return "", fmt.Errorf("%s (for %s) is missing", host, p)
	}
	return host, nil
}

func (b *builder) toolchain(kind string, f *containerfile.File, st *containerfile.Stage) (*toolchainStage, error) {
	if st.Name == "" {
		return nil, fmt.Errorf("%s:%d: a %s stage needs a name (AS NAME) for COPY --from", f.Path, st.Line, kind)
	}
	if kind == "rust" {
		return b.rustStage(f, st)
	}
	return b.goStage(f, st)
}

// rustStage: the stage copies the repository and runs `cargo build --release … && cp
// target/release/NAME /`; the builder takes /NAME from the bin directory.
func (b *builder) rustStage(f *containerfile.File, st *containerfile.Stage) (*toolchainStage, error) {
	t := &toolchainStage{name: st.Name, files: map[string]string{}}
	var packages []string
	for _, in := range st.Instructions {
		switch {
		case in.Cmd == "WORKDIR":
		case in.Cmd == "COPY" && in.From == "":
			// The repository: the prebuilt binaries were built from this checkout.
		case in.Cmd == "RUN" && in.Shell && strings.Contains(in.Args[2], "cargo build"):
			for _, m := range releaseBin.FindAllStringSubmatch(in.Args[2], -1) {
				t.files["/"+m[1]] = filepath.Join(b.binDir, m[1])
			}
			for _, m := range cargoPkg.FindAllStringSubmatch(in.Args[2], -1) {
				packages = append(packages, "-p", m[1])
			}
		default:
			return nil, fmt.Errorf("%s:%d: %s in a rust stage: the builder understands WORKDIR, COPY of the context and a RUN with cargo build ... && cp target/release/NAME /", f.Path, in.Line, in.Cmd)
		}
	}
	if len(t.files) == 0 {
		return nil, fmt.Errorf("%s:%d: the rust stage copies no target/release/NAME", f.Path, st.Line)
	}
	t.missing = func(p string) error {
		profile := filepath.Base(b.binDir)
		if profile != "debug" && profile != "release" {
			return fmt.Errorf("%s is not built: build %s and put it there, or set GITWARDEN_BIN_DIR to a directory that has it", t.files[p], path.Base(p))
		}
		if profile == "release" {
			packages = append([]string{"--release"}, packages...)
		}
		return fmt.Errorf("%s is not built: run `CARGO_TARGET_DIR=%s cargo build %s` (or set GITWARDEN_BIN_DIR to a directory that has it)",
			t.files[p], filepath.Dir(b.binDir), strings.Join(packages, " "))
	}
	return t, nil
}

// goPlan is a golang stage as its Containerfile lines describe it.
type goPlan struct {
	workdir string
	srcDir  string   // the context directory COPYed into WORKDIR, or ""
	env     []string // ENV and the RUN's NAME=VALUE assignments
	goArgs  []string // after `go`
	run     []string // the RUN argv, for the cache key
	line    int
}

// parseGoStage reads a golang stage without running anything: one `go build` or `go
// install` RUN, optionally after WORKDIR, ENV and one COPY of a context directory.
func (b *builder) parseGoStage(f *containerfile.File, st *containerfile.Stage) (*goPlan, error) {
	plan := &goPlan{workdir: "/go"} // the golang image's WORKDIR
	var env []string
	var run *containerfile.Instruction
	for i, in := range st.Instructions {
		fail := func(format string, a ...any) error {
			return fmt.Errorf("%s:%d: %s", f.Path, in.Line, fmt.Sprintf(format, a...))
		}
		switch in.Cmd {
		case "WORKDIR":
			plan.workdir = path.Clean(in.Args[0])
		case "ENV":
			for _, kv := range in.Pairs {
				env = append(env, kv[0]+"="+kv[1])
			}
		case "COPY":
			if in.From != "" || len(in.Args) != 2 || path.Join(plan.workdir, in.Args[1]) != plan.workdir || plan.srcDir != "" {
				return nil, fail("a golang stage may only COPY one context directory into its WORKDIR (COPY DIR/ .)")
			}
			plan.srcDir = filepath.Join(b.repo, filepath.Clean(in.Args[0]))
			if info, err := os.Stat(plan.srcDir); err != nil || !info.IsDir() {
				return nil, fail("%s is not a directory of the build context", in.Args[0])
			}
		case "RUN":
			if run != nil || !in.Shell {
				return nil, fail("a golang stage has one RUN, in shell form")
			}
			run = &st.Instructions[i]
		default:
			return nil, fail("%s in a golang stage: the builder understands WORKDIR, ENV, COPY and one RUN", in.Cmd)
		}
	}
	if run == nil {
		return nil, fmt.Errorf("%s:%d: the golang stage has no RUN", f.Path, st.Line)
	}
	assign, goArgs, err := goCommand(run.Args[2])
	if err != nil {
		return nil, fmt.Errorf("%s:%d: %w", f.Path, run.Line, err)
	}
	if goArgs[0] == "install" && !hasEnv(append(env, assign...), "GOBIN") {
		return nil, fmt.Errorf("%s:%d: go install needs GOBIN=/ABSOLUTE/DIR, so that the stage's output has a known path", f.Path, run.Line)
	}
	plan.env, plan.goArgs, plan.run, plan.line = append(env, assign...), goArgs, run.Args, run.Line
	return plan, nil
}

// goStage runs the stage's `go build` or `go install` on this machine, with its output
// paths (-o, GOBIN) moved under a cache entry; the source is the build-context
// directory the stage COPYs into its WORKDIR, or the module proxy for `go install
// MODULE@VERSION`.
func (b *builder) goStage(f *containerfile.File, st *containerfile.Stage) (*toolchainStage, error) {
	plan, err := b.parseGoStage(f, st)
	if err != nil {
		return nil, err
	}
	goVersion, err := exec.Command("go", "env", "GOVERSION").Output()
	if err != nil {
		return nil, fmt.Errorf("go not found: the golang stage %s needs the Go toolchain", st.Name)
	}
	want := golangImage.FindStringSubmatch(st.From)[1]
	have := strings.TrimSpace(string(goVersion))
	if have != "go"+want && !strings.HasPrefix(have, "go"+want+".") {
		fmt.Fprintf(b.log, "tests/images/build: warning: %s builds with Go %s, this machine has %s\n", st.From, want, have)
	}

	// The host's Go settings change the output too.
	k := newKey("golang").add(st.From, have, plan.workdir, os.Getenv("GOFLAGS"), os.Getenv("CGO_ENABLED"), os.Getenv("GOAMD64"))
	k.add(plan.env...).add(plan.run...)
	if plan.srcDir != "" {
		if err := k.addTree(plan.srcDir); err != nil {
			return nil, err
		}
	}
	key := k.sum()
	entry := b.cache.entry("toolchain", key)
	if !exists(entry) {
		if err := b.runGo(entry, plan.srcDir, plan.env, plan.goArgs); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", f.Path, plan.line, err)
		}
	}
	t := &toolchainStage{name: st.Name, files: map[string]string{}}
	err = filepath.Walk(entry, func(p string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() {
			rel, _ := filepath.Rel(entry, p)
			t.files["/"+filepath.ToSlash(rel)] = p
		}
		return err
	})
	return t, err
}

// runGo runs go with its absolute output paths placed under a temporary directory that
// becomes the cache entry.
func (b *builder) runGo(entry, srcDir string, env, goArgs []string) error {
	tmp, err := b.cache.tempDir("go-")
	if err != nil {
		return err
	}
	out := filepath.Join(tmp, "out")
	work := filepath.Join(tmp, "work")
	if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	if srcDir != "" {
		work = srcDir
	}
	cmdEnv := append(os.Environ(), "GOTOOLCHAIN=local")
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "GOBIN="); ok && strings.HasPrefix(v, "/") {
			kv = "GOBIN=" + filepath.Join(out, v)
		}
		cmdEnv = append(cmdEnv, kv)
	}
	args := append([]string(nil), goArgs...)
	for i := 0; i < len(args); i++ {
		if args[i] == "-o" && i+1 < len(args) && strings.HasPrefix(args[i+1], "/") {
			args[i+1] = filepath.Join(out, args[i+1])
		} else if v, ok := strings.CutPrefix(args[i], "-o="); ok && strings.HasPrefix(v, "/") {
			args[i] = "-o=" + filepath.Join(out, v)
		}
	}
	fmt.Fprintf(b.log, "tests/images/build: go %s\n", strings.Join(goArgs, " "))
	cmd := exec.Command("go", args...)
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = work, cmdEnv, b.log, b.log
	if err := cmd.Run(); err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("go %s failed (%v)", strings.Join(goArgs, " "), err)
	}
	if err := os.Rename(out, entry); err != nil {
		return fmt.Errorf("go %s wrote nothing to an absolute path (%v)", strings.Join(goArgs, " "), err)
	}
	return os.RemoveAll(tmp)
}

// goCommand splits `NAME=VALUE... go install|build ARGS` and refuses anything a plain
// word split would misread (quotes, expansions, pipes, command lists).
func goCommand(text string) (assign, args []string, err error) {
	if strings.ContainsAny(text, "&|;<>$`'\"()\\*?") {
		return nil, nil, fmt.Errorf("a golang stage's RUN must be a plain `[NAME=VALUE...] go install|build ARGS`, got %q", text)
	}
	words := strings.Fields(text)
	for len(words) > 0 && strings.Contains(words[0], "=") {
		assign, words = append(assign, words[0]), words[1:]
	}
	if len(words) < 3 || words[0] != "go" || (words[1] != "install" && words[1] != "build") {
		return nil, nil, fmt.Errorf("a golang stage's RUN must be `[NAME=VALUE...] go install|build ARGS`, got %q", text)
	}
	return assign, words[1:], nil
}
