// Command builder makes gitwarden's container images without Docker or a registry: it
// executes each image's Containerfile (the same file users build with `podman build`)
// with Debian root file systems made by debootstrap, chroot for RUN, and prebuilt
// binaries for the toolchain stages, and writes one oci-archive per image. Run it
// through tests/images/build, which builds it and passes the flags.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

func main() {
	repo := flag.String("repo", "", "the repository root: the build context of every Containerfile (required)")
	cache := flag.String("cache", "", "cache directory for root file systems, toolchain outputs and layers (required)")
	binDir := flag.String("bin-dir", "", "directory holding the prebuilt gitwarden binaries (required)")
	out := flag.String("out", "", "directory to write the archives and images.txt to (required)")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: builder -repo DIR -cache DIR -bin-dir DIR -out DIR [IMAGE...]\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *repo == "" || *cache == "" || *binDir == "" || *out == "" {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*repo, *cache, *binDir, *out, flag.Args()); err != nil {
		fmt.Fprintf(os.Stderr, "tests/images/build: error: %v\n", err)
		os.Exit(1)
	}
}

func run(repo, cacheDir, binDir, out string, names []string) error {
	list, err := readList(filepath.Join(repo, listPath))
	if err != nil {
		return err
	}
	selected, err := list.selectImages(names)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	out, err = filepath.Abs(out)
	if err != nil {
		return err
	}
	c, err := openCache(cacheDir)
	if err != nil {
		return err
	}
	defer c.close()
	chrootRun := newKey("chroot-run")
	if err := chrootRun.addFile(filepath.Join(repo, "tests/images/chroot-run")); err != nil {
		return err
	}
	b := &builder{repo: repo, cache: c, binDir: binDir, log: os.Stderr, chrootRunHash: chrootRun.sum()}
	var built []builtImage
	for _, spec := range selected {
		start := time.Now()
		result, err := b.buildImage(spec, out)
		if err != nil {
			return fmt.Errorf("%s (%s): %w", spec.Name, spec.Containerfile, err)
		}
		built = append(built, result)
		fmt.Fprintf(os.Stderr, "tests/images/build: %-10s %s  %s  %.1f MB  %.1fs\n",
			spec.Name, spec.Reference, result.Digest, float64(result.Size)/1e6, time.Since(start).Seconds())
	}
	if err := writeManifest(out, list, built); err != nil {
		return err
	}
	c.prune(30 * 24 * time.Hour)
	return nil
}
