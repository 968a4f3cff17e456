package release

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the deb packager
)

// NFPMConfig is the package's definition, relative to the repository.
const NFPMConfig = "packaging/nfpm.yaml"

// DebOptions are the inputs of Deb.
type DebOptions struct {
	Meta
	// Binary is the static berth binary for linux/Arch.
	Binary string
	// Arch is the Debian architecture (amd64, arm64), which is Go's GOARCH for these two.
	Arch string
	// Repo is the repository, where NFPMConfig and the files it names are.
	Repo string
	// Out is the directory the package is written to, under its conventional name.
	Out string
}

// DebVersion is the Debian version of a berth version: v1.2.3 is 1.2.3, and anything
// that does not start with a digit after the v (devel) is 0.0.0~ itself, which sorts
// before every release.
func DebVersion(v string) string {
	v = strings.TrimPrefix(v, "v")
	if v == "" || v[0] < '0' || v[0] > '9' {
		v = "0.0.0~" + v
	}
	// Debian versions have no '-' but before the revision, nor '_' anywhere.
	return strings.NewReplacer("-", "~", "_", "~").Replace(v)
}

// Deb builds the Debian package of NFPMConfig and returns its path.
func Deb(o DebOptions) (string, error) {
	bin, err := filepath.Abs(o.Binary)
	if err != nil {
		return "", err
	}
	vars := map[string]string{"VERSION": DebVersion(o.Version), "ARCH": o.Arch, "BINARY": bin}
	cfg, err := nfpm.ParseFileWithEnvMapping(filepath.Join(o.Repo, NFPMConfig), func(k string) string { return vars[k] })
	if err != nil {
		return "", fmt.Errorf("%s: %w", NFPMConfig, err)
	}
	info, err := cfg.Get("deb")
	if err != nil {
		return "", err
	}
	// Paths in the config are relative to the repository, not to this process.
	rel := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(o.Repo, p)
	}
	for _, c := range info.Contents {
		c.Source = rel(c.Source)
	}
	s := &info.Scripts
	s.PreInstall, s.PostInstall, s.PreRemove, s.PostRemove = rel(s.PreInstall), rel(s.PostInstall), rel(s.PreRemove), rel(s.PostRemove)
	info.MTime = o.time()
	info = nfpm.WithDefaults(info)
	if err := nfpm.PrepareForPackager(info, "deb"); err != nil {
		return "", err
	}
	pkg, err := nfpm.Get("deb")
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return "", err
	}
	target := filepath.Join(o.Out, pkg.ConventionalFileName(info))
	f, err := os.Create(target)
	if err != nil {
		return "", err
	}
	info.Target = target
	if err := pkg.Package(info, f); err != nil {
		f.Close()
		os.Remove(target)
		return "", fmt.Errorf("package %s: %w", target, err)
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return target, nil
}
