package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"gitwarden.io/tests/images/oci"
)

// baseRecipe makes the root file system of a base image a Containerfile names in FROM,
// from Debian packages, the way its publisher makes it (see each script's header).
type baseRecipe struct {
	script string // relative to tests/images
	needs  string // a base whose root file system the script borrows (for its apt), or ""
}

// baseRecipes are the FROM references the builder can make without a registry.
var baseRecipes = map[string]baseRecipe{
	"docker.io/library/debian:bookworm-slim": {script: "bases/debian-bookworm-slim"},
	"gcr.io/distroless/cc-debian12:nonroot":  {script: "bases/distroless-cc-debian12-nonroot", needs: "docker.io/library/debian:bookworm-slim"},
}

func knownBases() string {
	var refs []string
	for ref := range baseRecipes {
		refs = append(refs, ref)
	}
	sort.Strings(refs)
	return strings.Join(refs, ", ")
}

// base returns the cached root file system and run configuration of the base image
// ref, making it first if needed. Its key covers the recipe script, the chroot helper,
// the Debian mirror and the base it borrows from.
func (b *builder) base(ref string) (fsState, oci.RunConfig, error) {
	recipe, ok := baseRecipes[ref]
	if !ok {
		return fsState{}, oci.RunConfig{}, fmt.Errorf("base image %s: the builder can make scratch and %s (and runs rust:* and golang:* stages with the local toolchains)", ref, knownBases())
	}
	script := filepath.Join(b.repo, "tests/images", recipe.script)
	k := newKey("base").add(ref, os.Getenv("DEBIAN_MIRROR"), b.chrootRunHash)
	if err := k.addFile(script); err != nil {
		return fsState{}, oci.RunConfig{}, err
	}
	var needs fsState
	if recipe.needs != "" {
		var err error
		if needs, _, err = b.base(recipe.needs); err != nil {
			return fsState{}, oci.RunConfig{}, err
		}
		k.add(needs.key)
	}
	key := k.sum()
	entry := b.cache.entry("bases", safeName(ref)+"-"+key)
	if !exists(entry) {
		fmt.Fprintf(b.log, "tests/images/build: making base %s with %s (once; cached)...\n", ref, recipe.script)
		start := time.Now()
		tmp, err := b.cache.tempDir("base-")
		if err != nil {
			return fsState{}, oci.RunConfig{}, err
		}
		args := []string{tmp}
		if needs.dir != "" {
			args = append(args, needs.dir)
		}
		cmd := exec.Command(script, args...)
		cmd.Stdout, cmd.Stderr = b.log, b.log
		cmd.Env = append(os.Environ(), "CHROOT_RUN="+filepath.Join(b.repo, "tests/images/chroot-run"))
		if err := cmd.Run(); err != nil {
			os.RemoveAll(tmp)
			return fsState{}, oci.RunConfig{}, fmt.Errorf("base image %s: %s failed (%v)", ref, recipe.script, err)
		}
		removeVolatile(filepath.Join(tmp, "rootfs"))
		entry = filepath.Join(b.cache.dir, "bases", safeName(ref)+"-"+key)
		if err := os.Rename(tmp, entry); err != nil {
			return fsState{}, oci.RunConfig{}, err
		}
		fmt.Fprintf(b.log, "tests/images/build: base %s made in %.0fs\n", ref, time.Since(start).Seconds())
	}
	var config oci.RunConfig
	data, err := os.ReadFile(filepath.Join(entry, "config.json"))
	if err != nil {
		return fsState{}, oci.RunConfig{}, err
	}
	if err := json.Unmarshal(data, &config); err != nil {
		return fsState{}, oci.RunConfig{}, fmt.Errorf("%s/config.json: %w", entry, err)
	}
	return fsState{dir: filepath.Join(entry, "rootfs"), key: key}, config, nil
}
