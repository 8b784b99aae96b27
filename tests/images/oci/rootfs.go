package oci

import (
	"archive/tar"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// WalkRootfs lists the files under dir as layer entries with their owners and modes.
// The directories in emptyDirs (image paths) are kept without their contents: /dev,
// /proc and /sys stay empty, like in Debian's official images, since the runtime mounts
// them. Device nodes, FIFOs and sockets elsewhere are an error: an image should not
// carry them.
func WalkRootfs(dir string, emptyDirs map[string]bool) ([]Entry, error) {
	var entries []Entry
	err := filepath.WalkDir(dir, func(hostPath string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, hostPath)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		imagePath := "/" + filepath.ToSlash(rel)
		info, err := os.Lstat(hostPath)
		if err != nil {
			return err
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("%s: no owner information", hostPath)
		}
		e := Entry{Path: imagePath, Mode: ModeBits(info.Mode()), UID: int(st.Uid), GID: int(st.Gid)}
		switch {
		case info.IsDir():
			e.Type = tar.TypeDir
			entries = append(entries, e)
			if emptyDirs[imagePath] {
				return filepath.SkipDir
			}
			return nil
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(hostPath)
			if err != nil {
				return err
			}
			e.Type, e.Linkname = tar.TypeSymlink, target
		case info.Mode().IsRegular():
			e.Type, e.Source, e.Size = tar.TypeReg, hostPath, info.Size()
			if st.Nlink > 1 {
				e.LinkKey = fmt.Sprintf("%d:%d", st.Dev, st.Ino)
			}
		default:
			return fmt.Errorf("%s: %v files do not belong in an image", imagePath, info.Mode().Type())
		}
		entries = append(entries, e)
		return nil
	})
	return entries, err
}

// ModeBits turns a Go file mode into tar's: permissions plus setuid, setgid and sticky.
func ModeBits(m fs.FileMode) int64 {
	bits := int64(m.Perm())
	if m&fs.ModeSetuid != 0 {
		bits |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		bits |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		bits |= 0o1000
	}
	return bits
}
