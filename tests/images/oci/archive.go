package oci

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"sort"
)

// Media types of the OCI image specification v1.
const (
	MediaTypeIndex    = "application/vnd.oci.image.index.v1+json"
	MediaTypeManifest = "application/vnd.oci.image.manifest.v1+json"
	MediaTypeConfig   = "application/vnd.oci.image.config.v1+json"
	MediaTypeLayer    = "application/vnd.oci.image.layer.v1.tar+gzip"
)

// Annotations on the index entry: containerd's importer names the image after the
// first, skopeo and podman after the second.
const (
	AnnotationContainerdName = "io.containerd.image.name"
	AnnotationRefName        = "org.opencontainers.image.ref.name"
)

// RunConfig is the part of the image configuration a container starts from.
type RunConfig struct {
	User         string              `json:"User,omitempty"`
	ExposedPorts map[string]struct{} `json:"ExposedPorts,omitempty"`
	Env          []string            `json:"Env,omitempty"`
	Entrypoint   []string            `json:"Entrypoint,omitempty"`
	Cmd          []string            `json:"Cmd,omitempty"`
	WorkingDir   string              `json:"WorkingDir,omitempty"`
	Labels       map[string]string   `json:"Labels,omitempty"`
}

// ImageConfig is the OCI image configuration blob.
type ImageConfig struct {
	Created      string    `json:"created"`
	Architecture string    `json:"architecture"`
	OS           string    `json:"os"`
	Config       RunConfig `json:"config"`
	RootFS       struct {
		Type    string   `json:"type"`
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
	History []History `json:"history,omitempty"`
}

// History is one entry of the image's history.
type History struct {
	Created   string `json:"created"`
	CreatedBy string `json:"created_by"`
}

// Descriptor points at a blob.
type Descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Platform    *Platform         `json:"platform,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// Platform of an image manifest.
type Platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
}

// Manifest is an OCI image manifest.
type Manifest struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Config        Descriptor   `json:"config"`
	Layers        []Descriptor `json:"layers"`
}

// Index is an OCI image index (the layout's index.json).
type Index struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Manifests     []Descriptor `json:"manifests"`
}

// Image is what WriteArchive packs.
type Image struct {
	Reference string // fully qualified: registry.k8s.io/pause:3.10
	Config    RunConfig
	CreatedBy string // one line of history: how the image was made
	Layer     Layer
	LayerFile string // the layer blob on disk
}

// WriteArchive writes img as an oci-archive at dst (through a temporary file, so a
// reader never sees half an archive) and returns the manifest digest, the image's
// identity in containerd.
func WriteArchive(dst string, img Image) (string, error) {
	cfg := ImageConfig{
		Created:      Epoch.Format("2006-01-02T15:04:05Z"),
		Architecture: "amd64",
		OS:           "linux",
		Config:       img.Config,
		History:      []History{{Created: Epoch.Format("2006-01-02T15:04:05Z"), CreatedBy: img.CreatedBy}},
	}
	cfg.RootFS.Type = "layers"
	cfg.RootFS.DiffIDs = []string{img.Layer.DiffID}
	cfgBlob, err := json.Marshal(cfg)
	if err != nil {
		return "", err
	}
	manifest := Manifest{
		SchemaVersion: 2,
		MediaType:     MediaTypeManifest,
		Config:        Descriptor{MediaType: MediaTypeConfig, Digest: digestOf(cfgBlob), Size: int64(len(cfgBlob))},
		Layers:        []Descriptor{{MediaType: MediaTypeLayer, Digest: img.Layer.Digest, Size: img.Layer.Size}},
	}
	manifestBlob, err := json.Marshal(manifest)
	if err != nil {
		return "", err
	}
	manifestDigest := digestOf(manifestBlob)
	index := Index{
		SchemaVersion: 2,
		MediaType:     MediaTypeIndex,
		Manifests: []Descriptor{{
			MediaType: MediaTypeManifest,
			Digest:    manifestDigest,
			Size:      int64(len(manifestBlob)),
			Platform:  &Platform{Architecture: "amd64", OS: "linux"},
			Annotations: map[string]string{
				AnnotationContainerdName: img.Reference,
				AnnotationRefName:        img.Reference,
			},
		}},
	}
	indexBlob, err := json.Marshal(index)
	if err != nil {
		return "", err
	}

	tmp := dst + ".tmp"
	if err := writeLayout(tmp, indexBlob, map[string][]byte{
		manifestDigest:    manifestBlob,
		digestOf(cfgBlob): cfgBlob,
	}, img.Layer, img.LayerFile); err != nil {
		os.Remove(tmp)
		return "", err
	}
	return manifestDigest, os.Rename(tmp, dst)
}

func writeLayout(dst string, indexBlob []byte, small map[string][]byte, layer Layer, layerFile string) error {
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	file := func(name string, data []byte) error {
		h := &tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(data)), ModTime: Epoch}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	dir := func(name string) error {
		return tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: 0o755, ModTime: Epoch})
	}
	if err := file("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return err
	}
	if err := file("index.json", indexBlob); err != nil {
		return err
	}
	if err := dir("blobs/"); err != nil {
		return err
	}
	if err := dir("blobs/sha256/"); err != nil {
		return err
	}
	blobs := []string{layer.Digest}
	for d := range small {
		blobs = append(blobs, d)
	}
	sort.Strings(blobs)
	for _, d := range blobs {
		name := "blobs/sha256/" + d[len("sha256:"):]
		if data, ok := small[d]; ok {
			if err := file(name, data); err != nil {
				return err
			}
			continue
		}
		h := &tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: layer.Size, ModTime: Epoch}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if err := copyFile(tw, layerFile, layer.Size); err != nil {
			return fmt.Errorf("layer blob %s: %w", layerFile, err)
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return f.Close()
}

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}
