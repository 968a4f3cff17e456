// Package release builds berth's release artifacts without a Docker daemon or any tool
// but Go: the static binary (BuildBinary), the OCI image (Image, WriteImageTarball,
// WriteImageLayout) and the Debian package (Deb). tools/release is its command line, run
// by `make image` and `make deb`.
package release

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Source is the project's repository, the image's org.opencontainers.image.source.
const Source = "https://github.com/berth-sh/berth"

// buildInfoPkg is where the -ldflags -X values of a release build go.
const buildInfoPkg = "github.com/berth-sh/berth/internal/buildinfo"

// Meta is what a release build says about itself.
type Meta struct {
	Version  string // v1.2.3, or devel
	Revision string // the git commit
	Date     string // the commit's time, RFC 3339; also the mtime of every file made
}

// LDFlags are the linker flags of a release build: stripped, with Meta in
// internal/buildinfo. The Makefile and .goreleaser.yaml pass the same.
func (m Meta) LDFlags() string {
	return fmt.Sprintf("-s -w -X %[1]s.version=%[2]s -X %[1]s.revision=%[3]s -X %[1]s.date=%[4]s",
		buildInfoPkg, m.Version, m.Revision, m.Date)
}

// time is Meta.Date parsed, or the Unix epoch when it is empty or not RFC 3339: a file's
// mtime in an image or package, so that the same inputs make the same bytes.
func (m Meta) time() time.Time {
	if t, err := time.Parse(time.RFC3339, m.Date); err == nil {
		return t.UTC()
	}
	return time.Unix(0, 0).UTC()
}

// BuildBinary builds cmd/berth of the module in repoDir for goos/goarch into out: static
// (CGO_ENABLED=0; the SQLite driver is pure Go), -trimpath, with m's LDFlags.
func BuildBinary(ctx context.Context, repoDir, goos, goarch, out string, m Meta) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtimeGOROOT(), "bin", "go")
	}
	abs, err := filepath.Abs(out)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, goBin, "build", "-trimpath", "-ldflags", m.LDFlags(), "-o", abs, "./cmd/berth")
	cmd.Dir = repoDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+goos, "GOARCH="+goarch, "GOFLAGS=-buildvcs=false")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build for %s/%s: %v\n%s", goos, goarch, err, strings.TrimSpace(string(b)))
	}
	return nil
}
