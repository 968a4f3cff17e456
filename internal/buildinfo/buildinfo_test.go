package buildinfo

import (
	"runtime"
	"runtime/debug"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	vcs := &debug.BuildInfo{
		GoVersion: "go1.26.8",
		Main:      debug.Module{Path: "github.com/berth-sh/berth", Version: "(devel)"},
		Settings: []debug.BuildSetting{
			{Key: "GOOS", Value: "linux"}, {Key: "GOARCH", Value: "arm64"},
			{Key: "vcs.revision", Value: "0123456789abcdef"},
			{Key: "vcs.time", Value: "2026-05-04T10:00:00Z"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	for _, tc := range []struct {
		name                    string
		bi                      *debug.BuildInfo
		version, revision, date string
		want                    Info
	}{
		{"no build info", nil, "", "", "",
			Info{Version: "devel", Revision: "unknown", Date: "unknown", GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH}},
		{"a checkout", vcs, "", "", "",
			Info{Version: "devel", Revision: "0123456789abcdef", Date: "2026-05-04T10:00:00Z", Modified: true, GoVersion: "go1.26.8", OS: "linux", Arch: "arm64"}},
		{"go install @version", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.4.0"}}, "", "", "",
			Info{Version: "v1.4.0", Revision: "unknown", Date: "unknown", GoVersion: "go1.26.8", OS: runtime.GOOS, Arch: runtime.GOARCH}},
		{"ldflags win", vcs, "v2.0.0", "fedcba", "2026-06-01T00:00:00Z",
			Info{Version: "v2.0.0", Revision: "fedcba", Date: "2026-06-01T00:00:00Z", GoVersion: "go1.26.8", OS: "linux", Arch: "arm64"}},
	} {
		if got := fromBuildInfo(tc.bi, tc.version, tc.revision, tc.date); got != tc.want {
			t.Errorf("%s: got %+v, want %+v", tc.name, got, tc.want)
		}
	}
	in := fromBuildInfo(vcs, "", "", "")
	if s, want := in.String(), "berth devel (revision 0123456789abcdef-modified, 2026-05-04T10:00:00Z, go1.26.8, linux/arm64)"; s != want {
		t.Errorf("String() = %q, want %q", s, want)
	}
}
