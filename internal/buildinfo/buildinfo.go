// Package buildinfo says which berth this binary is: its version, the VCS revision and
// time it was built from, and the Go toolchain, read from the binary's own build
// information (runtime/debug.ReadBuildInfo).
//
// A `go build` in a git checkout records the revision, its commit time and whether the
// tree was modified (unless -buildvcs=false); `go install
// github.com/berth-sh/berth/cmd/berth@v1.2.3` records the module version. Release builds
// set all three explicitly, which takes precedence over what Go recorded:
//
//	go build -trimpath -ldflags "-s -w \
//	  -X github.com/berth-sh/berth/internal/buildinfo.version=v1.2.3 \
//	  -X github.com/berth-sh/berth/internal/buildinfo.revision=$(git rev-parse HEAD) \
//	  -X github.com/berth-sh/berth/internal/buildinfo.date=$(git log -1 --format=%cI)" \
//	  ./cmd/berth
//
// (the Makefile's LDFLAGS and .goreleaser.yaml pass exactly these).
package buildinfo

import (
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// Set at link time with -ldflags -X (see the package documentation); empty means "ask
// runtime/debug".
var (
	version  string
	revision string
	date     string
)

// Info describes a berth binary.
type Info struct {
	// Version is the release version (v1.2.3), the module version Go recorded, or "devel".
	Version string `json:"version"`
	// Revision is the VCS revision (a git commit hash), "unknown" when none was recorded.
	Revision string `json:"revision"`
	// Date is the revision's commit time (RFC 3339), "unknown" when none was recorded.
	Date string `json:"date"`
	// Modified reports that the binary was built from a tree with uncommitted changes.
	Modified  bool   `json:"modified"`
	GoVersion string `json:"go_version"`
	OS        string `json:"os"`
	Arch      string `json:"arch"`
}

// Get returns this binary's Info.
func Get() Info {
	bi, _ := debug.ReadBuildInfo()
	return fromBuildInfo(bi, version, revision, date)
}

// fromBuildInfo computes Info from Go's build information (nil when there is none) and
// the link-time overrides, which win when set.
func fromBuildInfo(bi *debug.BuildInfo, version, revision, date string) Info {
	in := Info{Version: "devel", Revision: "unknown", Date: "unknown",
		GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH}
	if bi != nil {
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			in.Version = v
		}
		if bi.GoVersion != "" {
			in.GoVersion = bi.GoVersion
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				in.Revision = s.Value
			case "vcs.time":
				in.Date = s.Value
			case "vcs.modified":
				in.Modified = s.Value == "true"
			case "GOOS":
				in.OS = s.Value
			case "GOARCH":
				in.Arch = s.Value
			}
		}
	}
	if v := strings.TrimSpace(version); v != "" {
		in.Version = v
	}
	if r := strings.TrimSpace(revision); r != "" {
		in.Revision = r
		in.Modified = false // a release build names its revision exactly
	}
	if d := strings.TrimSpace(date); d != "" {
		in.Date = d
	}
	return in
}

// String is the one-line form `berth --version` prints.
func (in Info) String() string {
	rev := in.Revision
	if in.Modified {
		rev += "-modified"
	}
	return "berth " + in.Version + " (revision " + rev + ", " + in.Date + ", " + in.GoVersion + ", " + in.OS + "/" + in.Arch + ")"
}

// Collector returns the gauge berth_build_info{version,revision,goversion}, always 1,
// which tells a dashboard which build each process runs (join it on instance).
func Collector() prometheus.Collector {
	in := Get()
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "berth_build_info",
		Help: "Always 1; the labels say which build of berth this process runs.",
		ConstLabels: prometheus.Labels{
			"version": in.Version, "revision": in.Revision, "goversion": in.GoVersion,
		},
	})
	g.Set(1)
	return g
}
