// Package oci writes container images as OCI image layouts packed in a tar (the
// "oci-archive" that `ctr images import`, `skopeo` and `podman load` read). An image
// here is one gzip-compressed layer; layers are deterministic: entries sorted by path,
// one fixed modification time, numeric owners only, so the same files give the same
// digest.
package oci

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"time"
)

// Epoch is the modification time of every file in every layer.
var Epoch = time.Unix(0, 0).UTC()

// Entry is one file system object of a layer.
type Entry struct {
	Path     string // absolute path in the image: "/usr/bin/git"
	Type     byte   // tar.TypeReg, tar.TypeDir or tar.TypeSymlink (hard links: see LinkKey)
	Mode     int64  // permission bits plus setuid (04000), setgid (02000) and sticky (01000)
	UID, GID int
	Linkname string // a symlink's target
	Source   string // the host file holding a regular file's content
	Size     int64
	// LinkKey groups hard links: regular files with the same non-empty key are written
	// once, the later ones (in path order) as hard links to the first.
	LinkKey string
}

// Layer describes a written layer blob.
type Layer struct {
	Digest string // sha256:… of the gzip blob
	DiffID string // sha256:… of the uncompressed tar
	Size   int64  // of the gzip blob
}

// Normalize sorts entries by path, keeps the last entry for a path (later sources
// override earlier ones, as a later COPY does), and adds the missing parent
// directories (root-owned, 0755), so the tar never creates a directory implicitly.
func Normalize(entries []Entry) []Entry {
	byPath := make(map[string]Entry, len(entries))
	for _, e := range entries {
		e.Path = path.Clean("/" + e.Path)
		if e.Path == "/" {
			continue
		}
		byPath[e.Path] = e
	}
	for p := range byPath {
		for dir := path.Dir(p); dir != "/"; dir = path.Dir(dir) {
			if _, ok := byPath[dir]; ok {
				break
			}
			byPath[dir] = Entry{Path: dir, Type: tar.TypeDir, Mode: 0o755}
		}
	}
	out := make([]Entry, 0, len(byPath))
	for _, e := range byPath {
		out = append(out, e)
	}
	// Sorting by path components puts every directory right before its contents.
	sort.Slice(out, func(i, j int) bool {
		return strings.ReplaceAll(out[i].Path, "/", "\x00") < strings.ReplaceAll(out[j].Path, "/", "\x00")
	})
	return out
}

// WriteLayer writes entries (normalized) as a gzip tar to dst and returns its digests.
func WriteLayer(dst string, entries []Entry) (Layer, error) {
	file, err := os.Create(dst)
	if err != nil {
		return Layer{}, err
	}
	defer file.Close()
	blobHash := sha256.New()
	counter := &countingWriter{w: io.MultiWriter(file, blobHash)}
	// BestSpeed: the layers hold large debug binaries, and the archives are imported
	// locally, so compression time matters more than the last few megabytes.
	gz, err := gzip.NewWriterLevel(counter, gzip.BestSpeed)
	if err != nil {
		return Layer{}, err
	}
	tarHash := sha256.New()
	if err := writeTar(io.MultiWriter(gz, tarHash), entries); err != nil {
		return Layer{}, err
	}
	if err := gz.Close(); err != nil {
		return Layer{}, err
	}
	if err := file.Close(); err != nil {
		return Layer{}, err
	}
	return Layer{
		Digest: "sha256:" + hex.EncodeToString(blobHash.Sum(nil)),
		DiffID: "sha256:" + hex.EncodeToString(tarHash.Sum(nil)),
		Size:   counter.n,
	}, nil
}

func writeTar(w io.Writer, entries []Entry) error {
	tw := tar.NewWriter(w)
	firstOfLink := map[string]string{}
	for _, e := range entries {
		name := strings.TrimPrefix(e.Path, "/")
		h := &tar.Header{
			Name:    name,
			Mode:    e.Mode,
			Uid:     e.UID,
			Gid:     e.GID,
			ModTime: Epoch,
		}
		switch e.Type {
		case tar.TypeDir:
			h.Typeflag = tar.TypeDir
			h.Name += "/"
		case tar.TypeSymlink:
			h.Typeflag = tar.TypeSymlink
			h.Linkname = e.Linkname
		case tar.TypeReg:
			if first, ok := firstOfLink[e.LinkKey]; ok && e.LinkKey != "" {
				h.Typeflag = tar.TypeLink
				h.Linkname = first
			} else {
				h.Typeflag = tar.TypeReg
				h.Size = e.Size
				if e.LinkKey != "" {
					firstOfLink[e.LinkKey] = name
				}
			}
		default:
			return fmt.Errorf("%s: unsupported entry type %q", e.Path, e.Type)
		}
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("%s: %w", e.Path, err)
		}
		if h.Typeflag == tar.TypeReg {
			if err := copyFile(tw, e.Source, e.Size); err != nil {
				return fmt.Errorf("%s (from %s): %w", e.Path, e.Source, err)
			}
		}
	}
	return tw.Close()
}

func copyFile(w io.Writer, src string, size int64) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := io.Copy(w, io.LimitReader(f, size))
	if err != nil {
		return err
	}
	if n != size {
		return fmt.Errorf("changed while being read (%d of %d bytes)", n, size)
	}
	return nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
