package oci

import (
	"archive/tar"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func TestNormalizeSortsAddsParentsAndLetsLaterEntriesWin(t *testing.T) {
	got := Normalize([]Entry{
		{Path: "/usr/local/bin/tool", Type: tar.TypeReg, Mode: 0o755, Source: "old"},
		{Path: "/usr-x", Type: tar.TypeDir, Mode: 0o700},
		{Path: "/usr/local/bin/tool", Type: tar.TypeReg, Mode: 0o755, Source: "new"},
	})
	var paths []string
	for _, e := range got {
		paths = append(paths, e.Path)
	}
	want := []string{"/usr", "/usr/local", "/usr/local/bin", "/usr/local/bin/tool", "/usr-x"}
	if !reflect.DeepEqual(paths, want) {
		t.Fatalf("paths = %q, want %q", paths, want)
	}
	if got[3].Source != "new" || got[0].Mode != 0o755 || got[0].Type != tar.TypeDir {
		t.Fatalf("entries = %+v", got)
	}
}

// The same files give the same layer, whatever their timestamps on disk; hard links
// stay links and setuid bits stay set.
func TestLayersAreDeterministicAndFaithful(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "usr/bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(root, "usr/bin/a"), "same", 0o755)
	if err := os.Link(filepath.Join(root, "usr/bin/a"), filepath.Join(root, "usr/bin/b")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(root, "usr/bin/suid"), "x", 0o755)
	if err := os.Chmod(filepath.Join(root, "usr/bin/suid"), 0o755|os.ModeSetuid); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("usr/bin", filepath.Join(root, "bin")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "proc/self"), 0o755); err != nil {
		t.Fatal(err)
	}

	layer := func() Layer {
		entries, err := WalkRootfs(root, map[string]bool{"/proc": true})
		if err != nil {
			t.Fatal(err)
		}
		l, err := WriteLayer(filepath.Join(t.TempDir(), "layer"), Normalize(entries))
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	first := layer()
	if err := os.Chtimes(filepath.Join(root, "usr/bin/a"), Epoch.AddDate(3, 0, 0), Epoch.AddDate(3, 0, 0)); err != nil {
		t.Fatal(err)
	}
	if second := layer(); second != first {
		t.Fatalf("rebuilt layer %+v differs from %+v", second, first)
	}

	entries, _ := WalkRootfs(root, map[string]bool{"/proc": true})
	layerFile := filepath.Join(t.TempDir(), "layer")
	l, err := WriteLayer(layerFile, Normalize(entries))
	if err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(t.TempDir(), "image.oci.tar")
	digest, err := WriteArchive(archive, Image{
		Reference: "gitwarden.local/test:dev",
		Config:    RunConfig{User: "65532:65532", Entrypoint: []string{"/usr/bin/a"}},
		CreatedBy: "test",
		Layer:     l,
		LayerFile: layerFile,
	})
	if err != nil {
		t.Fatal(err)
	}
	a, err := ReadArchive(archive)
	if err != nil {
		t.Fatal(err)
	}
	for blob, ok := range a.Blobs {
		if !ok {
			t.Errorf("blob %s does not match its digest", blob)
		}
	}
	m := a.Index.Manifests[0]
	if m.Digest != digest || m.Annotations[AnnotationContainerdName] != "gitwarden.local/test:dev" ||
		m.Platform == nil || m.Platform.OS != "linux" || m.Platform.Architecture != "amd64" {
		t.Fatalf("index entry = %+v", m)
	}
	if a.Config.Config.User != "65532:65532" || a.Config.Architecture != "amd64" {
		t.Fatalf("config = %+v", a.Config)
	}
	files := a.Files
	if h := files["/usr/bin/b"].Header; h.Typeflag != tar.TypeLink || h.Linkname != "usr/bin/a" {
		t.Errorf("/usr/bin/b = %+v, want a hard link to usr/bin/a", h)
	}
	if h := files["/usr/bin/suid"].Header; h.Mode != 0o4755 {
		t.Errorf("/usr/bin/suid mode = %o", h.Mode)
	}
	if h := files["/bin"].Header; h.Typeflag != tar.TypeSymlink || h.Linkname != "usr/bin" {
		t.Errorf("/bin = %+v", h)
	}
	if _, ok := files["/proc"]; !ok {
		t.Errorf("/proc is missing")
	}
	if _, ok := files["/proc/self"]; ok {
		t.Errorf("/proc/self should have been left out")
	}
	for p, f := range files {
		if !f.Header.ModTime.Equal(Epoch) || f.Header.Uname != "" {
			t.Errorf("%s: mtime %v, owner name %q", p, f.Header.ModTime, f.Header.Uname)
		}
	}
}
