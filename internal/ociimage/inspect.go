package ociimage

import (
	"archive/tar"
	"fmt"
	"io"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// Inspected is one platform's image read back from a layout: its config
// and its flattened filesystem.
type Inspected struct {
	Config *v1.ConfigFile
	Ref    string                 // org.opencontainers.image.ref.name
	Files  map[string]*tar.Header // by absolute path, without a trailing slash
	Data   map[string][]byte
}

// Inspect reads the image of platform p from the OCI layout at dir, as a
// registry client would (index.json, the image index, the manifest, the
// config, the layers), so that tests check what would be pushed.
func Inspect(dir string, p Platform) (Inspected, error) {
	var out Inspected
	lp, err := layout.FromPath(dir)
	if err != nil {
		return out, fmt.Errorf("inspect %s: %w", dir, err)
	}
	top, err := lp.ImageIndex()
	if err != nil {
		return out, fmt.Errorf("inspect %s: %w", dir, err)
	}
	tm, err := top.IndexManifest()
	if err != nil {
		return out, fmt.Errorf("inspect %s: %w", dir, err)
	}
	if len(tm.Manifests) != 1 {
		return out, fmt.Errorf("inspect %s: index.json lists %d entries, want one image index", dir, len(tm.Manifests))
	}
	out.Ref = tm.Manifests[0].Annotations["org.opencontainers.image.ref.name"]
	idx, err := top.ImageIndex(tm.Manifests[0].Digest)
	if err != nil {
		return out, fmt.Errorf("inspect %s: %w", dir, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return out, fmt.Errorf("inspect %s: %w", dir, err)
	}
	for _, d := range im.Manifests {
		if d.Platform == nil || d.Platform.OS != p.OS || d.Platform.Architecture != p.Arch {
			continue
		}
		img, err := idx.Image(d.Digest)
		if err != nil {
			return out, fmt.Errorf("inspect %s: %w", dir, err)
		}
		if out.Config, err = img.ConfigFile(); err != nil {
			return out, fmt.Errorf("inspect %s: %w", dir, err)
		}
		out.Files, out.Data = map[string]*tar.Header{}, map[string][]byte{}
		rc := mutate.Extract(img)
		defer rc.Close()
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				return out, nil
			}
			if err != nil {
				return out, fmt.Errorf("inspect %s: %w", dir, err)
			}
			b, err := io.ReadAll(tr)
			if err != nil {
				return out, fmt.Errorf("inspect %s: %w", dir, err)
			}
			name := "/" + strings.TrimSuffix(h.Name, "/")
			out.Files[name], out.Data[name] = h, b
		}
	}
	return out, fmt.Errorf("inspect %s: no image for %s", dir, p)
}
