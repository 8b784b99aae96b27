package oci

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
)

// Archive is an oci-archive as read back: what the tests check images against.
type Archive struct {
	Index    Index
	Manifest Manifest
	Config   ImageConfig
	Files    map[string]*File // by absolute path in the image
	// Blobs tells, for each blob, whether its content matches its digest.
	Blobs map[string]bool
}

// File is one entry of the image's layer.
type File struct {
	Header *tar.Header
	SHA256 string // of a regular file's content
	Data   []byte // a regular file's content when it is under 1 MiB
}

// ReadArchive reads an oci-archive with one image of one layer, verifying every
// blob's digest.
func ReadArchive(path string) (*Archive, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	blobs := map[string][]byte{}
	var layerDigest string
	a := &Archive{Blobs: map[string]bool{}, Files: map[string]*File{}}
	tr := tar.NewReader(f)
	var layer []byte
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return nil, err
		}
		switch {
		case h.Name == "index.json":
			if err := json.Unmarshal(data, &a.Index); err != nil {
				return nil, fmt.Errorf("index.json: %w", err)
			}
		case strings.HasPrefix(h.Name, "blobs/sha256/"):
			digest := "sha256:" + strings.TrimPrefix(h.Name, "blobs/sha256/")
			a.Blobs[digest] = digestOf(data) == digest
			blobs[digest] = data
		}
	}
	if len(a.Index.Manifests) != 1 {
		return nil, fmt.Errorf("index.json lists %d manifests, want 1", len(a.Index.Manifests))
	}
	if err := json.Unmarshal(blobs[a.Index.Manifests[0].Digest], &a.Manifest); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	if err := json.Unmarshal(blobs[a.Manifest.Config.Digest], &a.Config); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if len(a.Manifest.Layers) != 1 {
		return nil, fmt.Errorf("the manifest has %d layers, want 1", len(a.Manifest.Layers))
	}
	layerDigest = a.Manifest.Layers[0].Digest
	layer = blobs[layerDigest]
	if layer == nil {
		return nil, fmt.Errorf("layer blob %s is missing", layerDigest)
	}
	gz, err := gzip.NewReader(bytes.NewReader(layer))
	if err != nil {
		return nil, err
	}
	diff := sha256.New()
	lr := tar.NewReader(io.TeeReader(gz, diff))
	for {
		h, err := lr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		file := &File{Header: h}
		if h.Typeflag == tar.TypeReg {
			sum := sha256.New()
			var small bytes.Buffer
			w := io.Writer(sum)
			if h.Size < 1<<20 {
				w = io.MultiWriter(sum, &small)
			}
			if _, err := io.Copy(w, lr); err != nil {
				return nil, err
			}
			file.SHA256 = hex.EncodeToString(sum.Sum(nil))
			if h.Size < 1<<20 {
				file.Data = small.Bytes()
			}
		}
		a.Files["/"+strings.TrimSuffix(h.Name, "/")] = file
	}
	// Read to the end so the diff ID covers the tar's padding too.
	if _, err := io.Copy(io.Discard, io.TeeReader(gz, diff)); err != nil {
		return nil, err
	}
	if got := "sha256:" + hex.EncodeToString(diff.Sum(nil)); len(a.Config.RootFS.DiffIDs) != 1 || a.Config.RootFS.DiffIDs[0] != got {
		return nil, fmt.Errorf("diff_ids %v, but the layer's uncompressed digest is %s", a.Config.RootFS.DiffIDs, got)
	}
	return a, nil
}
