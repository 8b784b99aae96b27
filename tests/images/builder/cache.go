package main

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// formatVersion is part of every cache key: bump it when the builder changes what it
// makes from the same inputs, so old cache entries are not reused.
const formatVersion = "gitwarden-images/1"

// cacheKinds are the cache's subdirectories, each holding entries named by key.
var cacheKinds = []string{"bases", "rootfs", "toolchain", "layers"}

// cache is the builder's directory of reusable results. Entries are written to tmp/
// and renamed into place, so an entry that exists is complete; one build at a time
// holds the lock (parallel test processes simply wait).
type cache struct {
	dir  string
	lock *os.File
}

func openCache(dir string) (*cache, error) {
	for _, sub := range append([]string{"tmp"}, cacheKinds...) {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return nil, err
		}
	}
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		fmt.Fprintf(os.Stderr, "tests/images/build: waiting for another build using %s...\n", dir)
		if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
			lock.Close()
			return nil, err
		}
	}
	c := &cache{dir: dir, lock: lock}
	// Whatever is in tmp/ was left by a build that died: nobody else holds the lock.
	if err := os.RemoveAll(filepath.Join(dir, "tmp")); err != nil {
		c.close()
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o755); err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

func (c *cache) close() { c.lock.Close() }

// entry is the path of the cache entry kind/key; it is marked as used, which keeps it
// from being pruned.
func (c *cache) entry(kind, key string) string {
	p := filepath.Join(c.dir, kind, key)
	now := time.Now()
	_ = os.Chtimes(p, now, now)
	return p
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// tempDir makes a fresh directory under tmp/, on the cache's file system so that it can
// be renamed into place.
func (c *cache) tempDir(prefix string) (string, error) {
	return os.MkdirTemp(filepath.Join(c.dir, "tmp"), prefix)
}

// commit moves a finished temporary directory or file to kind/key.
func (c *cache) commit(tmp, kind, key string) (string, error) {
	dst := filepath.Join(c.dir, kind, key)
	if err := os.Rename(tmp, dst); err != nil {
		return "", err
	}
	return c.entry(kind, key), nil
}

// prune removes entries not used for maxAge: old Debian root file systems are large,
// and every change to a Containerfile's RUN line makes a new one.
func (c *cache) prune(maxAge time.Duration) {
	cutoff := time.Now().Add(-maxAge)
	for _, kind := range cacheKinds {
		entries, err := os.ReadDir(filepath.Join(c.dir, kind))
		if err != nil {
			continue
		}
		for _, e := range entries {
			info, err := e.Info()
			if err == nil && info.ModTime().Before(cutoff) {
				_ = os.RemoveAll(filepath.Join(c.dir, kind, e.Name()))
			}
		}
	}
}

// keyer hashes the inputs of a cache entry.
type keyer struct{ h hash.Hash }

func newKey(kind string) *keyer {
	k := &keyer{h: sha256.New()}
	k.add(formatVersion, kind)
	return k
}

// add hashes each part with its length, so ("ab","c") and ("a","bc") differ.
func (k *keyer) add(parts ...string) *keyer {
	for _, p := range parts {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(p)))
		k.h.Write(n[:])
		k.h.Write([]byte(p))
	}
	return k
}

// addFile hashes a file's content and mode.
func (k *keyer) addFile(path string) error {
	info, err := os.Stat(path)
	if err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	k.add("file", fmt.Sprint(info.Size()), info.Mode().String())
	_, err = io.Copy(k.h, f)
	return err
}

// addTree hashes every file under dir with its relative path and mode.
func (k *keyer) addTree(dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		k.add("path", rel, info.Mode().String())
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			k.add(target)
		case info.Mode().IsRegular():
			return k.addFile(p)
		}
		return nil
	})
}

func (k *keyer) sum() string { return hex.EncodeToString(k.h.Sum(nil))[:32] }

// safeName turns a reference into a file-name prefix for cache entries people browse.
func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '.' {
			return r
		}
		return '-'
	}, strings.ToLower(s))
}
