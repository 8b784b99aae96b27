package main

import (
	"archive/tar"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"gitwarden.io/tests/images/containerfile"
	"gitwarden.io/tests/images/oci"
)

// copy adds COPY's sources on top of the file system: from the build context (the
// repository) or from an earlier stage. Owners are root and modes are kept, as in
// Docker without --chown/--chmod.
func (b *builder) copy(r *stageResult, in containerfile.Instruction, done map[string]*stageResult) error {
	srcs, dest := in.Args[:len(in.Args)-1], in.Args[len(in.Args)-1]
	if !strings.HasPrefix(dest, "/") {
		trailing := strings.HasSuffix(dest, "/") || dest == "."
		dest = path.Join(orRoot(r.config.WorkingDir), dest)
		if trailing {
			dest += "/"
		}
	}
	intoDir := strings.HasSuffix(dest, "/") || len(srcs) > 1 || r.fs.isDir(dest)
	dest = r.fs.resolve(path.Clean(dest))
	for _, src := range srcs {
		files, err := b.copySources(src, in.From, done)
		if err != nil {
			return err
		}
		for _, f := range files {
			target := dest
			switch {
			case f.rel != "":
				// A directory's contents go into dest, keeping their layout.
				target = path.Join(dest, f.rel)
			case intoDir:
				target = path.Join(dest, path.Base(src))
			}
			if f.isDir {
				r.fs.add(oci.Entry{Path: target, Type: tar.TypeDir, Mode: f.mode})
				continue
			}
			e := oci.Entry{Path: target, Type: tar.TypeReg, Mode: f.mode, Source: f.host, Size: f.size}
			if err := r.fs.addFile(e); err != nil {
				return err
			}
		}
	}
	return nil
}

func orRoot(dir string) string {
	if dir == "" {
		return "/"
	}
	return dir
}

// copySource is one file or directory a COPY brings in.
type copySource struct {
	host  string // the file on this machine
	rel   string // path below the copied directory, "" when the source is a file
	isDir bool
	mode  int64
	size  int64
}

func (b *builder) copySources(src, from string, done map[string]*stageResult) ([]copySource, error) {
	if from == "" {
		clean := filepath.Clean(src)
		if filepath.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, "../") {
			return nil, fmt.Errorf("%s is outside the build context", src)
		}
		return hostSources(filepath.Join(b.repo, clean))
	}
	stage := done[from]
	if stage.tool != nil {
		host, err := stage.tool.artifact(cleanAbs(src))
		if err != nil {
			return nil, err
		}
		return hostSources(host)
	}
	host, err := stage.fs.file(cleanAbs(src))
	if err != nil {
		return nil, fmt.Errorf("--from=%s: %w", from, err)
	}
	return hostSources(host)
}

// hostSources lists a file, or a directory and everything in it.
func hostSources(root string) ([]copySource, error) {
	info, err := os.Stat(root)
	if err != nil {
		return nil, err
	}
	if !info.IsDir() {
		if !info.Mode().IsRegular() {
			return nil, fmt.Errorf("%s is not a regular file", root)
		}
		return []copySource{{host: root, mode: oci.ModeBits(info.Mode()), size: info.Size()}}, nil
	}
	var out []copySource
	err = filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		switch {
		case info.IsDir():
			out = append(out, copySource{host: p, rel: rel, isDir: true, mode: oci.ModeBits(info.Mode())})
		case info.Mode().IsRegular():
			out = append(out, copySource{host: p, rel: rel, mode: oci.ModeBits(info.Mode()), size: info.Size()})
		default:
			return fmt.Errorf("%s: only regular files and directories can be copied", p)
		}
		return nil
	})
	return out, err
}

// copyHostFile copies src to dst with mode bits (used when materializing overlays).
func copyHostFile(src, dst string, mode int64) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return chmodBits(dst, mode)
}

// cleanAbs makes a COPY --from source absolute, as Docker reads it (relative to /).
func cleanAbs(p string) string { return path.Clean("/" + p) }
