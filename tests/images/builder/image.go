package main

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"

	"gitwarden.io/tests/images/containerfile"
	"gitwarden.io/tests/images/oci"
)

type builder struct {
	repo, binDir  string
	cache         *cache
	log           io.Writer
	chrootRunHash string // part of every key that ran chroot-run
}

// buildImage executes spec's Containerfile and writes OUT/NAME.oci.tar.
func (b *builder) buildImage(spec imageSpec, out string) (builtImage, error) {
	f, err := containerfile.ParseFile(filepath.Join(b.repo, spec.Containerfile))
	if err != nil {
		return builtImage{}, err
	}
	if err := b.check(f); err != nil {
		return builtImage{}, err
	}
	needed := neededStages(f)
	done := map[string]*stageResult{}
	var final *stageResult
	for _, st := range f.Stages {
		if !needed[st] {
			continue // as BuildKit: a stage nothing copies from is not built
		}
		r, err := b.runStage(f, st, done)
		if err != nil {
			return builtImage{}, err
		}
		if st.Name != "" {
			done[st.Name] = r
		}
		final = r
	}
	if err := checkBinaries(&final.fs); err != nil {
		return builtImage{}, err
	}
	config := final.config
	if !hasEnv(config.Env, "PATH") {
		config.Env = append([]string{defaultPath}, config.Env...)
	}
	layer, layerFile, err := b.layer(&final.fs)
	if err != nil {
		return builtImage{}, err
	}
	archive := filepath.Join(out, spec.Name+".oci.tar")
	digest, err := oci.WriteArchive(archive, oci.Image{
		Reference: spec.Reference,
		Config:    config,
		CreatedBy: "tests/images/build " + spec.Containerfile,
		Layer:     layer,
		LayerFile: layerFile,
	})
	if err != nil {
		return builtImage{}, err
	}
	info, err := os.Stat(archive)
	if err != nil {
		return builtImage{}, err
	}
	return builtImage{Name: spec.Name, Reference: spec.Reference, Archive: archive, Digest: digest, Size: info.Size()}, nil
}

// layer returns the image's layer blob, written once per file system key.
func (b *builder) layer(fs *fsState) (oci.Layer, string, error) {
	key := newKey("layer").add(fs.key).sum()
	blob := b.cache.entry("layers", key+".tar.gz")
	meta := b.cache.entry("layers", key+".json")
	var layer oci.Layer
	if data, err := os.ReadFile(meta); err == nil && exists(blob) {
		if err := json.Unmarshal(data, &layer); err == nil {
			return layer, blob, nil
		}
	}
	entries, err := fs.entries()
	if err != nil {
		return layer, "", err
	}
	tmp, err := b.cache.tempDir("layer-")
	if err != nil {
		return layer, "", err
	}
	defer os.RemoveAll(tmp)
	if layer, err = oci.WriteLayer(filepath.Join(tmp, "layer"), entries); err != nil {
		return layer, "", err
	}
	data, err := json.Marshal(layer)
	if err != nil {
		return layer, "", err
	}
	if err := os.Rename(filepath.Join(tmp, "layer"), blob); err != nil {
		return layer, "", err
	}
	// The metadata last: it is what marks the entry complete.
	return layer, blob, os.WriteFile(meta, data, 0o644)
}

// neededStages: the last stage and every stage it copies from, transitively.
func neededStages(f *containerfile.File) map[*containerfile.Stage]bool {
	needed := map[*containerfile.Stage]bool{}
	var visit func(st *containerfile.Stage)
	visit = func(st *containerfile.Stage) {
		if needed[st] {
			return
		}
		needed[st] = true
		for _, in := range st.Instructions {
			if in.From != "" {
				visit(f.Stage(in.From))
			}
		}
	}
	visit(f.Final())
	return needed
}
