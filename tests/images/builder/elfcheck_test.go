package main

import (
	"archive/tar"
	"os"
	"strings"
	"testing"

	"gitwarden.io/tests/images/oci"
)

// A dynamically linked program (this machine's /bin/true) starts on a file system that
// has its loader and libraries (this machine's own), and is refused where they are
// missing, as on an empty image.
func TestDynamicBinariesNeedTheImagesLibraries(t *testing.T) {
	prog := "/bin/true"
	if _, err := os.Stat(prog); err != nil {
		t.Skip("no /bin/true here")
	}
	with := fsState{dir: "/", overlay: []oci.Entry{{Path: "/usr/local/bin/prog", Type: tar.TypeReg, Source: prog}}}
	if err := checkBinaries(&with); err != nil {
		t.Fatalf("on this machine's own file system: %v", err)
	}
	without := fsState{overlay: with.overlay}
	err := checkBinaries(&without)
	if err == nil || !strings.Contains(err.Error(), "needs the dynamic loader") {
		t.Fatalf("on an empty file system: %v", err)
	}
}

// A library that is missing, or one too old for the symbol versions the program needs
// (here: the loader standing in for libc), fails the build.
func TestMissingLibrariesAndVersionsAreRefused(t *testing.T) {
	loader, err := os.ReadFile("/lib64/ld-linux-x86-64.so.2")
	if err != nil {
		t.Skip("no x86-64 glibc loader here")
	}
	root := t.TempDir()
	for _, dir := range []string{"/lib64", "/lib/x86_64-linux-gnu"} {
		if err := os.MkdirAll(root+dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(root+"/lib64/ld-linux-x86-64.so.2", loader, 0o755); err != nil {
		t.Fatal(err)
	}
	fs := fsState{dir: root, overlay: []oci.Entry{{Path: "/prog", Type: tar.TypeReg, Source: "/bin/true"}}}
	if err := checkBinaries(&fs); err == nil || !strings.Contains(err.Error(), "needs libc.so.6") {
		t.Fatalf("without libc: %v", err)
	}
	if err := os.WriteFile(root+"/lib/x86_64-linux-gnu/libc.so.6", loader, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := checkBinaries(&fs); err == nil || !strings.Contains(err.Error(), "does not define") {
		t.Fatalf("with a libc lacking the versions: %v", err)
	}
}
