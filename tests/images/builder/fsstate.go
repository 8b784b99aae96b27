package main

import (
	"archive/tar"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"gitwarden.io/tests/images/oci"
)

// fsState is a stage's root file system: a cached directory that is never modified,
// plus the files COPY and WORKDIR added on top since. key identifies both.
type fsState struct {
	dir     string // "" for an empty file system (FROM scratch)
	key     string
	overlay []oci.Entry
}

// runtimeDirs are kept empty in images: the container runtime mounts them.
var runtimeDirs = map[string]bool{"/dev": true, "/proc": true, "/sys": true}

// add records a directory (or other non-file entry) on top of the file system.
func (s *fsState) add(e oci.Entry) {
	s.overlay = append(s.overlay, e)
	s.key = newKey("add").add(s.key, e.Path, strconv.Itoa(int(e.Type)), strconv.FormatInt(e.Mode, 8), e.Linkname).sum()
}

// addFile records a regular file on top of the file system; its content is part of
// the key, so a changed binary makes a new layer.
func (s *fsState) addFile(e oci.Entry) error {
	k := newKey("file").add(s.key, e.Path, strconv.FormatInt(e.Mode, 8))
	if err := k.addFile(e.Source); err != nil {
		return err
	}
	s.overlay = append(s.overlay, e)
	s.key = k.sum()
	return nil
}

// resolve follows symlinks in p's parent directories, as copying into the file system
// would: COPY to /bin/x lands in /usr/bin/x when /bin links to usr/bin.
func (s *fsState) resolve(p string) string {
	parent, err := resolveIn(s.dir, path.Dir(p), true)
	if err != nil {
		return p
	}
	return path.Join(parent, path.Base(p))
}

// isDir reports whether p is a directory in the file system.
func (s *fsState) isDir(p string) bool {
	p = path.Clean(p)
	for i := len(s.overlay) - 1; i >= 0; i-- {
		if s.overlay[i].Path == p {
			return s.overlay[i].Type == tar.TypeDir
		}
	}
	if s.dir == "" {
		return p == "/"
	}
	real, err := resolveIn(s.dir, p, true)
	if err != nil {
		return false
	}
	info, err := os.Stat(filepath.Join(s.dir, real))
	return err == nil && info.IsDir()
}

// file returns the host path of the regular file p.
func (s *fsState) file(p string) (string, error) {
	for i := len(s.overlay) - 1; i >= 0; i-- {
		if e := s.overlay[i]; e.Path == p {
			if e.Type != tar.TypeReg {
				return "", fmt.Errorf("%s is not a regular file", p)
			}
			return e.Source, nil
		}
	}
	if s.dir == "" {
		return "", fmt.Errorf("%s does not exist", p)
	}
	real, err := resolveIn(s.dir, p, true)
	if err != nil {
		return "", err
	}
	host := filepath.Join(s.dir, real)
	info, err := os.Lstat(host)
	if err != nil {
		return "", fmt.Errorf("%s does not exist", p)
	}
	if !info.Mode().IsRegular() {
		return "", fmt.Errorf("%s is not a regular file", p)
	}
	return host, nil
}

// materialize writes the whole file system (directory copy plus overlay) to dst.
func (s *fsState) materialize(dst string) error {
	if s.dir != "" {
		// cp -a keeps owners, modes, hard links and symlinks as they are.
		if out, err := exec.Command("cp", "-a", "--", s.dir+"/.", dst).CombinedOutput(); err != nil {
			return fmt.Errorf("copying %s: %v: %s", s.dir, err, out)
		}
	}
	if err := os.Chmod(dst, 0o755); err != nil {
		return err
	}
	for _, e := range s.overlay {
		parent, err := resolveIn(dst, path.Dir(e.Path), true)
		if err != nil {
			return err
		}
		if parent != path.Dir(e.Path) {
			return fmt.Errorf("%s: a parent directory is a symlink", e.Path)
		}
		host := filepath.Join(dst, e.Path)
		if err := os.MkdirAll(filepath.Dir(host), 0o755); err != nil {
			return err
		}
		switch e.Type {
		case tar.TypeDir:
			if err := os.MkdirAll(host, 0o755); err != nil {
				return err
			}
			if err := chmodBits(host, e.Mode); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := copyHostFile(e.Source, host, e.Mode); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: cannot materialize entry type %q", e.Path, e.Type)
		}
		if err := os.Lchown(host, e.UID, e.GID); err != nil {
			return err
		}
	}
	return nil
}

// entries lists the file system as layer entries, overlay last (it wins).
func (s *fsState) entries() ([]oci.Entry, error) {
	var all []oci.Entry
	if s.dir != "" {
		walked, err := oci.WalkRootfs(s.dir, runtimeDirs)
		if err != nil {
			return nil, err
		}
		all = walked
	}
	return oci.Normalize(append(all, s.overlay...)), nil
}

// resolveIn resolves p inside the root file system at root, following symlinks as the
// image would see them (absolute targets start again at root, never at the host's /).
// The last component is followed only when followLast is set. Missing components are
// kept as they are.
func resolveIn(root, p string, followLast bool) (string, error) {
	if root == "" {
		return path.Clean("/" + p), nil
	}
	parts := strings.Split(strings.Trim(path.Clean("/"+p), "/"), "/")
	cur := "/"
	hops := 0
	for i := 0; i < len(parts); i++ {
		part := parts[i]
		switch part {
		case "", ".":
			continue
		case "..":
			cur = path.Dir(cur)
			continue
		}
		next := path.Join(cur, part)
		info, err := os.Lstat(filepath.Join(root, next))
		last := i == len(parts)-1
		if err != nil || info.Mode()&fs.ModeSymlink == 0 || (last && !followLast) {
			cur = next
			continue
		}
		if hops++; hops > 40 {
			return "", fmt.Errorf("%s: too many levels of symlinks", p)
		}
		target, err := os.Readlink(filepath.Join(root, next))
		if err != nil {
			return "", err
		}
		if strings.HasPrefix(target, "/") {
			cur = "/"
		}
		parts = append(strings.Split(strings.Trim(target, "/"), "/"), parts[i+1:]...)
		i = -1
	}
	return cur, nil
}

// chmodBits applies tar-style mode bits, including setuid, setgid and sticky.
func chmodBits(p string, bits int64) error {
	mode := fs.FileMode(bits & 0o777)
	if bits&0o4000 != 0 {
		mode |= fs.ModeSetuid
	}
	if bits&0o2000 != 0 {
		mode |= fs.ModeSetgid
	}
	if bits&0o1000 != 0 {
		mode |= fs.ModeSticky
	}
	return os.Chmod(p, mode)
}
