package release

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The image's fixed shape. The Dockerfile builds the same (its test compares them).
const (
	// ImageUID is the user the image runs as: distroless's "nonroot".
	ImageUID = 65532
	// ImageBinary is where the binary is in the image.
	ImageBinary = "/usr/bin/berth"
	// ImageDataDir is the volume of the embedded database and the first admin token.
	ImageDataDir = "/data"
	// ImagePort is the port berth serve listens on in the image.
	ImagePort = "8080/tcp"
)

// ImageEntrypoint and ImageCmd make `berth serve --addr 0.0.0.0:8080 --data-dir /data`.
// The subcommand is in Cmd, so that `docker run IMAGE version` (or a worker's args) runs
// another one.
var (
	ImageEntrypoint = []string{ImageBinary}
	ImageCmd        = []string{"serve", "--addr", "0.0.0.0:8080", "--data-dir", ImageDataDir}
)

// ImageOptions are the inputs of Image.
type ImageOptions struct {
	Meta
	// Binary is the static berth binary for OS/Arch.
	Binary   string
	OS, Arch string
	// CABundle, when not empty, is a PEM file put at /etc/ssl/certs/ca-certificates.crt,
	// where Go looks for the roots it verifies TLS servers with (PostgreSQL with
	// sslmode=verify-full, a worker's https:// URL). Without it, only --ca-cert files are
	// trusted.
	CABundle string
}

// ImageLabels are the image's OCI annotations of m.
func ImageLabels(m Meta) map[string]string {
	return map[string]string{
		"org.opencontainers.image.title":       "berth",
		"org.opencontainers.image.description": "A self-hosted work queue for agent sessions",
		"org.opencontainers.image.source":      Source,
		"org.opencontainers.image.url":         Source,
		"org.opencontainers.image.version":     m.Version,
		"org.opencontainers.image.revision":    m.Revision,
		"org.opencontainers.image.created":     m.Date,
	}
}

// Image is the OCI image of the binary: one layer on nothing (no shell, no package
// manager), running as ImageUID, with ImageDataDir as a volume owned by that user.
func Image(o ImageOptions) (v1.Image, error) {
	layerTar, err := imageLayer(o)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{Layer: layer, History: v1.History{
		Created: v1.Time{Time: o.time()}, CreatedBy: "berth tools/release", Comment: "the static berth binary",
	}})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = o.OS, o.Arch
	cf.Created = v1.Time{Time: o.time()}
	cf.Config = v1.Config{
		User:         fmt.Sprintf("%d:%d", ImageUID, ImageUID),
		Entrypoint:   ImageEntrypoint,
		Cmd:          ImageCmd,
		WorkingDir:   ImageDataDir,
		ExposedPorts: map[string]struct{}{ImagePort: {}},
		Volumes:      map[string]struct{}{ImageDataDir: {}},
		Env:          []string{"PATH=/usr/bin"},
		Labels:       ImageLabels(o.Meta),
	}
	return mutate.ConfigFile(img, cf)
}

// imageLayer is the tar of the image's only layer.
func imageLayer(o ImageOptions) ([]byte, error) {
	bin, err := os.ReadFile(o.Binary)
	if err != nil {
		return nil, fmt.Errorf("binary: %w", err)
	}
	var ca []byte
	if o.CABundle != "" {
		if ca, err = os.ReadFile(o.CABundle); err != nil {
			return nil, fmt.Errorf("CA bundle: %w", err)
		}
	}
	mtime := o.time()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dir := func(name string, mode int64, uid int) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, Uid: uid, Gid: uid, ModTime: mtime, Format: tar.FormatPAX})
	}
	file := func(name string, mode int64, b []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(b)), ModTime: mtime, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := tw.Write(b)
		return err
	}
	// /etc/passwd and /etc/group name the user, for tools that look it up; berth needs
	// neither.
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:%s:/sbin/nologin\n", ImageUID, ImageUID, ImageDataDir)
	group := fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", ImageUID)
	steps := []func() error{
		func() error { return dir("etc", 0o755, 0) },
		func() error { return file("etc/passwd", 0o644, []byte(passwd)) },
		func() error { return file("etc/group", 0o644, []byte(group)) },
		func() error { return dir("tmp", 0o1777, 0) },
		func() error { return dir("usr", 0o755, 0) },
		func() error { return dir("usr/bin", 0o755, 0) },
		func() error { return file(strings.TrimPrefix(ImageBinary, "/"), 0o755, bin) },
		func() error { return dir(strings.TrimPrefix(ImageDataDir, "/"), 0o700, ImageUID) },
	}
	if ca != nil {
		steps = append(steps,
			func() error { return dir("etc/ssl", 0o755, 0) },
			func() error { return dir("etc/ssl/certs", 0o755, 0) },
			func() error { return file("etc/ssl/certs/ca-certificates.crt", 0o644, ca) })
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// WriteImageTarball writes img to path as a tarball that `docker load` and `podman load`
// read, tagged ref (such as berth:v1.2.3).
func WriteImageTarball(path, ref string, img v1.Image) error {
	tag, err := name.NewTag(ref)
	if err != nil {
		return fmt.Errorf("image reference %q: %w", ref, err)
	}
	return tarball.WriteToFile(path, tag, img)
}

// WriteImageLayout writes the images to dir as an OCI image layout, one index of every
// platform (what `skopeo copy oci:DIR docker://…` or `crane push` publish).
func WriteImageLayout(dir string, imgs ...v1.Image) error {
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, img := range imgs {
		cf, err := img.ConfigFile()
		if err != nil {
			return err
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{
			Platform: &v1.Platform{OS: cf.OS, Architecture: cf.Architecture},
		}})
	}
	_, err := layout.Write(dir, idx)
	return err
}
