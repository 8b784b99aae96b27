package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// listPath is the table of images, relative to the repository root.
const listPath = "tests/images/images.list"

// imageSpec is one line of images.list.
type imageSpec struct {
	Name          string // short name: the archive is NAME.oci.tar
	Reference     string // what containerd calls the image once imported
	Containerfile string // relative to the repository root
}

type imageList []imageSpec

func readList(path string) (imageList, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var list imageList
	seen := map[string]bool{}
	scanner := bufio.NewScanner(f)
	for n := 1; scanner.Scan(); n++ {
		line := strings.TrimSpace(scanner.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		words := strings.Fields(line)
		if len(words) != 3 {
			return nil, fmt.Errorf("%s:%d: want NAME REFERENCE CONTAINERFILE", path, n)
		}
		spec := imageSpec{Name: words[0], Reference: words[1], Containerfile: words[2]}
		if seen[spec.Name] {
			return nil, fmt.Errorf("%s:%d: image %q is listed twice", path, n, spec.Name)
		}
		if !fullyQualified(spec.Reference) {
			return nil, fmt.Errorf("%s:%d: %q must be a fully qualified reference (registry/name:tag): containerd stores the name as given, and the kubelet looks images up by their full name", path, n, spec.Reference)
		}
		seen[spec.Name] = true
		list = append(list, spec)
	}
	return list, scanner.Err()
}

// fullyQualified: a registry host (with a dot or a port) and a tag.
func fullyQualified(ref string) bool {
	host, rest, ok := strings.Cut(ref, "/")
	if !ok || !strings.ContainsAny(host, ".:") {
		return false
	}
	slash := strings.LastIndex(rest, "/")
	return strings.Contains(rest[slash+1:], ":")
}

// selectImages returns the named images in the list's order, or all of them.
func (l imageList) selectImages(names []string) (imageList, error) {
	if len(names) == 0 {
		return l, nil
	}
	want := map[string]bool{}
	for _, n := range names {
		if l.find(n) == nil {
			return nil, fmt.Errorf("unknown image %q (known: %s)", n, strings.Join(l.names(), ", "))
		}
		want[n] = true
	}
	var out imageList
	for _, s := range l {
		if want[s.Name] {
			out = append(out, s)
		}
	}
	return out, nil
}

func (l imageList) find(name string) *imageSpec {
	for i := range l {
		if l[i].Name == name {
			return &l[i]
		}
	}
	return nil
}

func (l imageList) names() []string {
	var names []string
	for _, s := range l {
		names = append(names, s.Name)
	}
	return names
}

// builtImage is one line of OUT/images.txt.
type builtImage struct {
	Name, Reference, Archive, Digest string
	Size                             int64
}

// writeManifest writes OUT/images.txt: one tab-separated line per image, NAME
// REFERENCE ARCHIVE DIGEST, in images.list order. Images built by an earlier run into
// the same directory stay listed while their archive is there, so building one image
// does not hide the others.
func writeManifest(out string, list imageList, built []builtImage) error {
	path := filepath.Join(out, "images.txt")
	lines := map[string]string{}
	if old, err := os.ReadFile(path); err == nil {
		for _, line := range strings.Split(string(old), "\n") {
			fields := strings.Split(line, "\t")
			if len(fields) == 4 && list.find(fields[0]) != nil {
				if _, err := os.Stat(fields[2]); err == nil {
					lines[fields[0]] = line
				}
			}
		}
	}
	for _, b := range built {
		lines[b.Name] = strings.Join([]string{b.Name, b.Reference, b.Archive, b.Digest}, "\t")
	}
	var text strings.Builder
	for _, s := range list {
		if line, ok := lines[s.Name]; ok {
			text.WriteString(line + "\n")
		}
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(text.String()), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
