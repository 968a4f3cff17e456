package main

import (
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/berth-sh/berth/internal/buildinfo"
)

// berth version, berth --version and berth version --json describe this very binary; a
// release build's -ldflags -X values are checked by internal/release's tests, which build
// one.
func TestVersionCommand(t *testing.T) {
	t.Parallel()
	r := &cliRunner{t: t}
	want := buildinfo.Get()
	for _, args := range [][]string{{"version"}, {"--version"}} {
		if out := r.ok(args...); out != want.String()+"\n" {
			t.Errorf("berth %s printed %q, want %q", strings.Join(args, " "), out, want.String()+"\n")
		}
	}
	var got buildinfo.Info
	r.json(&got, "version", "--json")
	if got != want {
		t.Errorf("berth version --json = %+v, want %+v", got, want)
	}
	if got.GoVersion == "" || got.OS == "" || got.Arch == "" || got.Version == "" || got.Revision == "" {
		t.Errorf("berth version --json has empty fields: %+v", got)
	}
	r.fail(1, "version", "extra")
}

// berth_build_info is 1 with this build's labels, on the server's /metrics and on the
// worker's --health-addr.
func TestBuildInfoMetric(t *testing.T) {
	t.Parallel()
	in := buildinfo.Get()
	want := fmt.Sprintf(`berth_build_info{goversion=%q,revision=%q,version=%q} 1`, in.GoVersion, in.Revision, in.Version)

	c := newCluster(t)
	if got := metricLine(t, c.srv.url("/metrics"), "berth_build_info"); got != want {
		t.Errorf("berth serve /metrics: %q, want %q", got, want)
	}

	w := c.startWorker(nil, "--exec", "true", "--health-addr", "127.0.0.1:0")
	w.waitLog(t, `"msg":"health endpoint"`)
	m := regexp.MustCompile(`"msg":"health endpoint","addr":"([^"]+)"`).FindStringSubmatch(w.log())
	if m == nil {
		t.Fatalf("no health endpoint address in the worker's log:\n%s", w.log())
	}
	if got := metricLine(t, "http://"+m[1]+"/metrics", "berth_build_info"); got != want {
		t.Errorf("berth worker /metrics: %q, want %q", got, want)
	}
}

// metricLine returns the one sample line of a metric without labels beyond its own.
func metricLine(t *testing.T, url, name string) string {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, name+"{") || strings.HasPrefix(l, name+" ") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 {
		t.Fatalf("%s: %d lines of %s, want 1:\n%s", url, len(lines), name, b)
	}
	return lines[0]
}
