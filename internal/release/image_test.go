package release

import (
	"archive/tar"
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// testImage builds the image of the release binary and writes it as a docker load-able
// tarball, returning the tarball's path, its tag and the CA bundle put in it.
func testImage(t *testing.T) (built v1.Image, path, ref string, bundle []byte) {
	t.Helper()
	dir := t.TempDir()
	bundle = []byte("-----BEGIN CERTIFICATE-----\n(a test bundle)\n-----END CERTIFICATE-----\n")
	caFile := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caFile, bundle, 0o644); err != nil {
		t.Fatal(err)
	}
	img, err := Image(ImageOptions{Meta: testMeta, Binary: releaseBinary(t), OS: "linux", Arch: runtime.GOARCH, CABundle: caFile})
	if err != nil {
		t.Fatal(err)
	}
	path, ref = filepath.Join(dir, "berth-image.tar"), "berth:"+testMeta.Version
	if err := WriteImageTarball(path, ref, img); err != nil {
		t.Fatal(err)
	}
	return img, path, ref, bundle
}

// The image, read back from its tarball: an OCI image of one layer that runs berth serve
// as user 65532 with /data as its volume, port 8080, the OCI labels, and in its only
// layer the static binary (which runs and reports the release's version), /data owned
// by the user, and no shell.
func TestImage(t *testing.T) {
	t.Parallel()
	built, path, ref, bundle := testImage(t)
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(path, &tag)
	if err != nil {
		t.Fatalf("read the tarball back: %v", err)
	}
	if m, err := img.Manifest(); err != nil || len(m.Layers) != 1 {
		t.Errorf("manifest %+v (%v): want one layer", m, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	if cf.OS != "linux" || cf.Architecture != runtime.GOARCH {
		t.Errorf("platform %s/%s, want linux/%s", cf.OS, cf.Architecture, runtime.GOARCH)
	}
	if c.User != "65532:65532" {
		t.Errorf("User %q, want 65532:65532", c.User)
	}
	if cmd := append(append([]string{}, c.Entrypoint...), c.Cmd...); !reflect.DeepEqual(cmd, []string{"/usr/bin/berth", "serve", "--addr", "0.0.0.0:8080", "--data-dir", "/data"}) {
		t.Errorf("Entrypoint %q + Cmd %q, want berth serve --addr 0.0.0.0:8080 --data-dir /data", c.Entrypoint, c.Cmd)
	}
	if !reflect.DeepEqual(c.ExposedPorts, map[string]struct{}{"8080/tcp": {}}) || !reflect.DeepEqual(c.Volumes, map[string]struct{}{"/data": {}}) {
		t.Errorf("ExposedPorts %v, Volumes %v; want 8080/tcp and /data", c.ExposedPorts, c.Volumes)
	}
	for k, v := range map[string]string{
		"org.opencontainers.image.source":   "https://github.com/berth-sh/berth",
		"org.opencontainers.image.version":  testMeta.Version,
		"org.opencontainers.image.revision": testMeta.Revision,
		"org.opencontainers.image.created":  testMeta.Date,
	} {
		if c.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, c.Labels[k], v)
		}
	}

	// The filesystem.
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	seen := map[string]*tar.Header{}
	bin := filepath.Join(t.TempDir(), "berth")
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		seen[strings.TrimSuffix(h.Name, "/")] = h
		switch h.Name {
		case "usr/bin/berth":
			f, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(f, tr); err != nil {
				t.Fatal(err)
			}
			f.Close()
		case "etc/ssl/certs/ca-certificates.crt":
			if b, _ := io.ReadAll(tr); string(b) != string(bundle) {
				t.Errorf("the image's CA bundle is %q, want %q", b, bundle)
			}
		case "etc/passwd":
			if b, _ := io.ReadAll(tr); !strings.Contains(string(b), "nonroot:x:65532:65532:") {
				t.Errorf("/etc/passwd has no user 65532:\n%s", b)
			}
		}
	}
	for p, want := range map[string]struct {
		typ  byte
		mode int64
		uid  int
	}{
		"usr/bin/berth":                     {tar.TypeReg, 0o755, 0},
		"data":                              {tar.TypeDir, 0o700, 65532},
		"tmp":                               {tar.TypeDir, 0o1777, 0},
		"etc/passwd":                        {tar.TypeReg, 0o644, 0},
		"etc/ssl/certs/ca-certificates.crt": {tar.TypeReg, 0o644, 0},
	} {
		h := seen[p]
		if h == nil {
			t.Errorf("/%s is not in the image", p)
			continue
		}
		if h.Typeflag != want.typ || h.Mode != want.mode || h.Uid != want.uid || h.Gid != want.uid {
			t.Errorf("/%s: type %c mode %o uid %d gid %d, want type %c mode %o owner %d", p, h.Typeflag, h.Mode, h.Uid, h.Gid, want.typ, want.mode, want.uid)
		}
	}
	for _, p := range []string{"bin/sh", "bin", "usr/bin/sh"} {
		if seen[p] != nil {
			t.Errorf("the image has /%s: it should have no shell", p)
		}
	}
	wantReleaseVersion(t, bin)

	// The OCI layout of the same image: an index naming its platform.
	dir := filepath.Join(t.TempDir(), "oci")
	if err := WriteImageLayout(dir, built); err != nil {
		t.Fatal(err)
	}
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 || im.Manifests[0].Platform == nil ||
		!im.Manifests[0].Platform.Equals(v1.Platform{OS: "linux", Architecture: runtime.GOARCH}) {
		t.Errorf("OCI layout index %+v: want one manifest for linux/%s", im.Manifests, runtime.GOARCH)
	}
	// The layout keeps the OCI media types (a docker load-able tarball has Docker's).
	limg, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	m, err := limg.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.MediaType != types.OCIManifestSchema1 || m.Config.MediaType != types.OCIConfigJSON || len(m.Layers) != 1 || m.Layers[0].MediaType != types.OCILayer {
		t.Errorf("manifest %+v: want an OCI manifest of one OCI layer", m)
	}
}

// The Dockerfile builds the image `make image` builds: the same user, entrypoint and
// command, port, volume, working directory and source label, and the same ldflags.
func TestDockerfileMatchesImage(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	// The final stage's instructions, continuation lines joined.
	text := strings.ReplaceAll(string(b), "\\\n", " ")
	var final []string
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "FROM ") {
			final = nil
		}
		final = append(final, line)
	}
	want := []string{
		"USER 65532:65532",
		"WORKDIR /data",
		"VOLUME /data",
		"EXPOSE 8080/tcp",
		`ENTRYPOINT ["/usr/bin/berth"]`,
		`CMD ["serve", "--addr", "0.0.0.0:8080", "--data-dir", "/data"]`,
		"COPY --from=build /out/berth /usr/bin/berth",
		"COPY --from=build --chown=65532:65532 /out/data /data",
	}
	for _, w := range want {
		found := false
		for _, l := range final {
			found = found || l == w
		}
		if !found {
			t.Errorf("the Dockerfile's final stage has no %q:\n%s", w, strings.Join(final, "\n"))
		}
	}
	wantJSON, _ := json.Marshal(ImageEntrypoint)
	if !strings.Contains(text, "ENTRYPOINT "+string(wantJSON)) {
		t.Errorf("the Dockerfile's ENTRYPOINT is not %s", wantJSON)
	}
	if !strings.Contains(text, `org.opencontainers.image.source="`+Source+`"`) {
		t.Errorf("the Dockerfile has no source label %s", Source)
	}
	ld := Meta{Version: "${VERSION}", Revision: "${REVISION}", Date: "${DATE}"}.LDFlags()
	if !strings.Contains(text, `-ldflags "`+ld+`"`) || !strings.Contains(text, "CGO_ENABLED=0") {
		t.Errorf("the Dockerfile does not build with CGO_ENABLED=0 and -ldflags %q", ld)
	}
}

// The image runs under podman (installed with apt-get when missing): the container
// serves /healthz on its published port 8080, as user 65532 writing to its /data volume.
// Where podman cannot run containers here, the test says why and skips.
func TestImageRunsUnderPodman(t *testing.T) {
	t.Parallel()
	// runc rather than crun, which refuses hosts with hybrid cgroups; and no default
	// ulimits, which podman raises as root and a host without CAP_SYS_RESOURCE refuses.
	if err := aptInstall(t, []string{"podman", "runc"}, "podman", "runc"); err != nil {
		t.Skipf("podman cannot be installed here: %v", err)
	}
	_, path, ref, _ := testImage(t)
	conf := filepath.Join(t.TempDir(), "containers.conf")
	if err := os.WriteFile(conf, []byte("[containers]\ndefault_ulimits = []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	podman := func(args ...string) (string, error) {
		cmd := exec.Command("podman", append([]string{"--runtime", "runc"}, args...)...)
		cmd.Env = append(os.Environ(), "CONTAINERS_CONF="+conf)
		out, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	if out, err := podman("load", "-i", path); err != nil {
		t.Skipf("podman cannot load images here: %v: %s", err, out)
	}
	t.Cleanup(func() { podman("rmi", "-f", ref) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	ctr := fmt.Sprintf("berth-test-%d", os.Getpid())
	out, err := podman("run", "-d", "--name", ctr, "-p", fmt.Sprintf("127.0.0.1:%d:8080", port), ref)
	t.Cleanup(func() { podman("rm", "-f", "-t", "5", ctr) })
	if err != nil {
		t.Skipf("podman cannot run containers here: %v: %s", err, out)
	}
	logs := func() string { s, _ := podman("logs", ctr); return s }
	url := fmt.Sprintf("http://127.0.0.1:%d/healthz", port)
	guard := time.Now().Add(2 * time.Minute)
	for {
		res, err := http.Get(url)
		if err == nil {
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != 200 || strings.TrimSpace(string(body)) != `{"status":"ok"}` {
				t.Fatalf("GET /healthz: %d %s", res.StatusCode, body)
			}
			break
		}
		if state, _ := podman("inspect", "-f", "{{.State.Status}}", ctr); state == "exited" {
			t.Fatalf("the container exited:\n%s", logs())
		}
		if time.Now().After(guard) {
			t.Fatalf("GET /healthz: %v\n%s", err, logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
	sc := bufio.NewScanner(strings.NewReader(logs()))
	var sawToken bool
	for sc.Scan() {
		sawToken = sawToken || strings.Contains(sc.Text(), `msg="created the first admin token" path=/data/admin-token`)
	}
	if !sawToken {
		t.Errorf("the server did not write its admin token to /data:\n%s", logs())
	}
	if uid, err := podman("exec", ctr, "/usr/bin/berth", "version"); err == nil && !strings.Contains(uid, testMeta.Version) {
		t.Errorf("berth version in the container: %s", uid)
	}
}
