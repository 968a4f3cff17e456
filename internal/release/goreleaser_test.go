package release

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// .goreleaser.yaml builds static archives for linux and darwin on amd64 and arm64 with
// the ldflags of LDFlags, the version, commit and commit date filled in by goreleaser.
func TestGoreleaserConfig(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot, ".goreleaser.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Version int `json:"version"`
		Builds  []struct {
			Main    string   `json:"main"`
			Binary  string   `json:"binary"`
			Env     []string `json:"env"`
			Flags   []string `json:"flags"`
			LDFlags []string `json:"ldflags"`
			GOOS    []string `json:"goos"`
			GOARCH  []string `json:"goarch"`
		} `json:"builds"`
		Archives []struct {
			Formats []string `json:"formats"`
			Files   []string `json:"files"`
		} `json:"archives"`
	}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Version != 2 || len(cfg.Builds) != 1 || len(cfg.Archives) != 1 {
		t.Fatalf("want a version 2 config of one build and one archive: %+v", cfg)
	}
	bd := cfg.Builds[0]
	if bd.Main != "./cmd/berth" || bd.Binary != "berth" || !reflect.DeepEqual(bd.Env, []string{"CGO_ENABLED=0"}) || !reflect.DeepEqual(bd.Flags, []string{"-trimpath"}) {
		t.Errorf("build %+v: want ./cmd/berth as berth, CGO_ENABLED=0, -trimpath", bd)
	}
	if !reflect.DeepEqual(bd.GOOS, []string{"linux", "darwin"}) || !reflect.DeepEqual(bd.GOARCH, []string{"amd64", "arm64"}) {
		t.Errorf("build for %v × %v, want linux, darwin × amd64, arm64", bd.GOOS, bd.GOARCH)
	}
	want := Meta{Version: "{{ .Version }}", Revision: "{{ .FullCommit }}", Date: "{{ .CommitDate }}"}.LDFlags()
	if !reflect.DeepEqual(bd.LDFlags, []string{want}) {
		t.Errorf("ldflags %q, want %q", bd.LDFlags, want)
	}
	for _, f := range cfg.Archives[0].Files {
		if m, err := filepath.Glob(filepath.Join(repoRoot, f)); err != nil || len(m) == 0 {
			t.Errorf("archive file %q matches nothing", f)
		}
	}
	if !strings.Contains(string(b), "tar.gz") {
		t.Errorf("archives are not tar.gz")
	}
}
