package release

import (
	"debug/elf"
	"testing"
)

// A release build is static (no dynamic loader, so it runs on scratch and any
// distribution) and reports the -ldflags -X version, revision and date.
func TestReleaseBinary(t *testing.T) {
	t.Parallel()
	bin := releaseBinary(t)
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s has a dynamic loader: not static", bin)
		}
	}
	wantReleaseVersion(t, bin)
}

func TestDebVersion(t *testing.T) {
	for in, want := range map[string]string{"v1.2.3": "1.2.3", "1.2.3": "1.2.3", "v1.2.3-rc.1": "1.2.3~rc.1", "devel": "0.0.0~devel", "v1.2.3-4-gabc-dirty": "1.2.3~4~gabc~dirty"} {
		if got := DebVersion(in); got != want {
			t.Errorf("DebVersion(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLDFlags(t *testing.T) {
	want := "-s -w -X github.com/berth-sh/berth/internal/buildinfo.version=v1 -X github.com/berth-sh/berth/internal/buildinfo.revision=r -X github.com/berth-sh/berth/internal/buildinfo.date=d"
	if got := (Meta{Version: "v1", Revision: "r", Date: "d"}).LDFlags(); got != want {
		t.Errorf("LDFlags = %q, want %q", got, want)
	}
}
