package main

import (
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"gitwarden.io/tests/images/containerfile"
)

// repoRoot is the repository root, from this package's directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// Every Containerfile in deploy/images and tests/images is an image of images.list, and
// the builder can follow all of it: a Containerfile that gained an instruction, a base
// or a stage form the builder does not execute fails here, not in a pod.
func TestEveryContainerfileIsListedAndUnderstood(t *testing.T) {
	root := repoRoot(t)
	list, err := readList(filepath.Join(root, listPath))
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, spec := range list {
		listed[spec.Containerfile] = true
	}
	for _, dir := range []string{"deploy/images", "tests/images"} {
		found, _ := filepath.Glob(filepath.Join(root, dir, "*.Containerfile"))
		for _, path := range found {
			rel, _ := filepath.Rel(root, path)
			if !listed[rel] {
				t.Errorf("%s is not in %s: the local builder would never build it", rel, listPath)
			}
		}
	}
	b := &builder{repo: root, binDir: "/nonexistent", log: io.Discard}
	for _, spec := range list {
		f, err := containerfile.ParseFile(filepath.Join(root, spec.Containerfile))
		if err != nil {
			t.Errorf("%s: %v", spec.Name, err)
			continue
		}
		if err := b.check(f); err != nil {
			t.Errorf("%s: %v", spec.Name, err)
		}
	}
}

// The agent image's kustomize is the version the tests render with (tests/tools/build):
// the agent.Containerfile comment promises it, this keeps it true.
func TestAgentKustomizeIsTheVersionTheTestsUse(t *testing.T) {
	root := repoRoot(t)
	f, err := containerfile.ParseFile(filepath.Join(root, "deploy/images/agent.Containerfile"))
	if err != nil {
		t.Fatal(err)
	}
	stage := f.Stage("kustomize")
	if stage == nil {
		t.Fatal("agent.Containerfile has no kustomize stage")
	}
	var image string
	for _, in := range stage.Instructions {
		if in.Cmd == "RUN" {
			if m := regexp.MustCompile(`sigs\.k8s\.io/kustomize/kustomize/v5@(v[0-9.]+)`).FindStringSubmatch(in.Args[2]); m != nil {
				image = m[1]
			}
		}
	}
	script, err := os.ReadFile(filepath.Join(root, "tests/tools/build"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*kustomize\) module=sigs\.k8s\.io/kustomize/kustomize/v5 version=(v[0-9.]+)`).FindSubmatch(script)
	if image == "" || m == nil {
		t.Fatalf("kustomize version not found (image %q, tests/tools/build %q)", image, m)
	}
	if string(m[1]) != image {
		t.Fatalf("agent.Containerfile installs kustomize %s, tests/tools/build pins %s", image, m[1])
	}
}

// The builder stops at anything outside what it executes, before building anything.
func TestCheckRefusesWhatItCannotBuild(t *testing.T) {
	root := repoRoot(t)
	b := &builder{repo: root, binDir: "/nonexistent", log: io.Discard}
	for _, tc := range []struct{ name, text, want string }{
		{"unknown base", "FROM docker.io/library/alpine:3\n", "base image docker.io/library/alpine:3"},
		{"toolchain as image", "FROM docker.io/library/golang:1.26-bookworm AS b\nRUN GOBIN=/out go install x@v1\n", "last stage is a toolchain stage"},
		{"go with a shell list", "FROM docker.io/library/golang:1.26-bookworm AS b\nRUN go build -o /out/x . && strip /out/x\nFROM scratch\nCOPY --from=b /out/x /x\n", "plain"},
		{"go install without GOBIN", "FROM docker.io/library/golang:1.26-bookworm AS b\nRUN go install x@v1\nFROM scratch\nCOPY --from=b /go/bin/x /x\n", "GOBIN"},
		{"rust binary not built", "FROM docker.io/library/rust:1.95-bookworm AS b\nRUN cargo build --release -p a && cp target/release/a /\nFROM scratch\nCOPY --from=b /other /x\n", "does not build /other"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := containerfile.Parse("Containerfile", tc.text)
			if err != nil {
				t.Fatal(err)
			}
			if err := b.check(f); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("check = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
