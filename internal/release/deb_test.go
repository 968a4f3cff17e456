package release

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// debFile is one entry of a tar inside a .deb.
type debFile struct {
	hdr  *tar.Header
	body []byte
}

// readDeb reads a .deb (an ar archive of debian-binary, control.tar.gz and data.tar.gz)
// into its members' files.
func readDeb(t *testing.T, path string) (control, data map[string]debFile) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("!<arch>\n")) {
		t.Fatalf("%s is not an ar archive", path)
	}
	members := map[string][]byte{}
	var order []string
	for rest := b[8:]; len(rest) >= 60; {
		hdr := rest[:60]
		name := strings.TrimSuffix(strings.TrimSpace(string(hdr[:16])), "/")
		size, err := strconv.Atoi(strings.TrimSpace(string(hdr[48:58])))
		if err != nil || string(hdr[58:60]) != "`\n" || 60+size > len(rest) {
			t.Fatalf("%s: bad ar header %q", path, hdr)
		}
		members[name] = rest[60 : 60+size]
		order = append(order, name)
		rest = rest[60+size+size%2:]
	}
	if strings.Join(order, " ") != "debian-binary control.tar.gz data.tar.gz" || string(members["debian-binary"]) != "2.0\n" {
		t.Fatalf("%s: members %v, want debian-binary (2.0), control.tar.gz, data.tar.gz", path, order)
	}
	return untgz(t, members["control.tar.gz"]), untgz(t, members["data.tar.gz"])
}

func untgz(t *testing.T, b []byte) map[string]debFile {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	out := map[string]debFile{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out["/"+strings.Trim(strings.TrimPrefix(h.Name, "./"), "/")] = debFile{h, body}
	}
}

// unit is a systemd unit file: section → key → values, in order.
type unit map[string]map[string][]string

func parseUnit(t *testing.T, b []byte) unit {
	t.Helper()
	u := unit{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("unit line %q is no key=value in a section", line)
			}
			u[section][k] = append(u[section][k], v)
		}
	}
	return u
}

// get is the last value of a key ("" when unset).
func (u unit) get(section, key string) string {
	vs := u[section][key]
	if len(vs) == 0 {
		return ""
	}
	return vs[len(vs)-1]
}

// systemdSeconds parses a systemd time span such as 6min, 45s or 1min 30s.
func systemdSeconds(t *testing.T, s string) time.Duration {
	t.Helper()
	var total time.Duration
	for _, f := range strings.Fields(s) {
		m := regexp.MustCompile(`^(\d+)(s|sec|min|m|h)?$`).FindStringSubmatch(f)
		if m == nil {
			t.Fatalf("time span %q: cannot read %q", s, f)
		}
		n, _ := strconv.Atoi(m[1])
		unit := map[string]time.Duration{"": time.Second, "s": time.Second, "sec": time.Second, "min": time.Minute, "m": time.Minute, "h": time.Hour}[m[2]]
		total += time.Duration(n) * unit
	}
	return total
}

// The package holds the static binary, the two units and /etc/berth with the right
// modes; the units have the settings operators rely on; the scripts create the berth
// user and are valid sh; and systemd-analyze verify accepts the units.
func TestDeb(t *testing.T) {
	t.Parallel()
	out := t.TempDir()
	path, err := Deb(DebOptions{Meta: testMeta, Binary: releaseBinary(t), Arch: runtime.GOARCH, Repo: repoRoot, Out: out})
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("berth_1.2.3~test_%s.deb", runtime.GOARCH); filepath.Base(path) != want {
		t.Errorf("package %s, want %s", filepath.Base(path), want)
	}
	control, data := readDeb(t, path)

	ctl := string(control["/control"].body)
	for _, want := range []string{"Package: berth\n", "Version: 1.2.3~test\n", "Architecture: " + runtime.GOARCH + "\n", "Depends: adduser\n"} {
		if !strings.Contains(ctl, want) {
			t.Errorf("control has no %q:\n%s", strings.TrimSpace(want), ctl)
		}
	}
	if got := strings.TrimSpace(string(control["/conffiles"].body)); got != "/etc/berth/berth.env" {
		t.Errorf("conffiles %q, want /etc/berth/berth.env", got)
	}

	for p, want := range map[string]struct {
		typ  byte
		mode int64
	}{
		"/usr/bin/berth":                            {tar.TypeReg, 0o755},
		"/lib/systemd/system/berth.service":         {tar.TypeReg, 0o644},
		"/lib/systemd/system/berth-worker@.service": {tar.TypeReg, 0o644},
		"/etc/berth":                                {tar.TypeDir, 0o750},
		"/etc/berth/berth.env":                      {tar.TypeReg, 0o640},
		"/etc/berth/worker.env.example":             {tar.TypeReg, 0o644},
	} {
		f, ok := data[p]
		if !ok {
			t.Errorf("%s is not in the package", p)
			continue
		}
		if f.hdr.Typeflag != want.typ || f.hdr.Mode&0o7777 != want.mode || f.hdr.Uname != "root" {
			t.Errorf("%s: type %c mode %o owner %s, want type %c mode %o owner root", p, f.hdr.Typeflag, f.hdr.Mode, f.hdr.Uname, want.typ, want.mode)
		}
	}
	bin := filepath.Join(t.TempDir(), "berth")
	if err := os.WriteFile(bin, data["/usr/bin/berth"].body, 0o755); err != nil {
		t.Fatal(err)
	}
	wantReleaseVersion(t, bin)

	// The server's unit.
	srv := parseUnit(t, data["/lib/systemd/system/berth.service"].body)
	hardening := map[string]string{
		"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
		"PrivateDevices": "yes", "ProtectKernelTunables": "yes", "ProtectControlGroups": "yes", "CapabilityBoundingSet": "",
	}
	for k, v := range map[string]string{
		"User": "berth", "Group": "berth", "ExecStart": "/usr/bin/berth serve", "StateDirectory": "berth",
		"StateDirectoryMode": "0700", "ExecReload": "/bin/kill -HUP $MAINPID", "EnvironmentFile": "-/etc/berth/berth.env",
		"Environment": "BERTH_ADDR=127.0.0.1:8080 BERTH_DATA_DIR=/var/lib/berth", "MemoryDenyWriteExecute": "yes",
	} {
		hardening[k] = v
	}
	for k, v := range hardening {
		if got := srv.get("Service", k); got != v || srv["Service"][k] == nil {
			t.Errorf("berth.service: %s=%q, want %q", k, got, v)
		}
	}
	if srv.get("Install", "WantedBy") != "multi-user.target" {
		t.Errorf("berth.service: WantedBy=%q", srv.get("Install", "WantedBy"))
	}

	// The worker's template: its drain fits in its stop timeout.
	wk := parseUnit(t, data["/lib/systemd/system/berth-worker@.service"].body)
	for k, v := range map[string]string{
		"User": "berth", "KillMode": "mixed", "KillSignal": "SIGTERM", "EnvironmentFile": "/etc/berth/worker-%i.env",
		"Environment": "BERTH_WORKER_ID=%H-%i", "StateDirectory": "berth-worker/%i", "WorkingDirectory": "%S/berth-worker/%i",
		"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes", "Restart": "on-failure",
	} {
		if got := wk.get("Service", k); got != v {
			t.Errorf("berth-worker@.service: %s=%q, want %q", k, got, v)
		}
	}
	execStart := wk.get("Service", "ExecStart")
	m := regexp.MustCompile(`^/usr/bin/berth worker --drain-timeout (\S+) --kill-grace (\S+)$`).FindStringSubmatch(execStart)
	if m == nil {
		t.Fatalf("berth-worker@.service: ExecStart=%q, want berth worker with --drain-timeout and --kill-grace", execStart)
	}
	drain, err1 := time.ParseDuration(m[1])
	grace, err2 := time.ParseDuration(m[2])
	if err1 != nil || err2 != nil {
		t.Fatalf("ExecStart=%q: %v %v", execStart, err1, err2)
	}
	stop := systemdSeconds(t, wk.get("Service", "TimeoutStopSec"))
	if margin := stop - drain - grace; margin < 10*time.Second {
		t.Errorf("TimeoutStopSec=%v leaves %v after the %v drain and %v kill grace, want at least 10s for the final API calls", stop, margin, drain, grace)
	}

	// The scripts.
	post := string(control["/postinst"].body)
	for _, want := range []string{"adduser --system --ingroup berth --home /var/lib/berth", "addgroup --system berth", "chmod 0750 /etc/berth", "systemctl enable --now berth.service"} {
		if !strings.Contains(post, want) {
			t.Errorf("postinst has no %q:\n%s", want, post)
		}
	}
	for _, s := range []string{"/postinst", "/prerm", "/postrm"} {
		f, ok := control[s]
		if !ok {
			t.Errorf("no %s script", s)
			continue
		}
		if f.hdr.Mode&0o111 == 0 || !bytes.HasPrefix(f.body, []byte("#!/bin/sh\n")) {
			t.Errorf("%s: mode %o, want an executable sh script", s, f.hdr.Mode)
		}
		sh := exec.Command("sh", "-n")
		sh.Stdin = bytes.NewReader(f.body)
		if out, err := sh.CombinedOutput(); err != nil {
			t.Errorf("%s is not valid sh: %v\n%s", s, err, out)
		}
	}
	if !strings.Contains(string(control["/prerm"].body), "systemctl stop 'berth-worker@*.service' berth.service") {
		t.Errorf("prerm does not stop the services:\n%s", control["/prerm"].body)
	}

	verifyUnits(t, bin, map[string][]byte{
		"berth.service":         data["/lib/systemd/system/berth.service"].body,
		"berth-worker@.service": data["/lib/systemd/system/berth-worker@.service"].body,
	})
}

// verifyUnits runs systemd-analyze verify (installing Debian's systemd with apt-get when
// it is missing) on the units and on an instance of the template, with /usr/bin/berth
// pointed at bin (verify checks that ExecStart's program exists). A warning fails the
// test: systemd-analyze exits 0 on unknown keys, printing them.
func verifyUnits(t *testing.T, bin string, units map[string][]byte) {
	t.Helper()
	if err := aptInstall(t, []string{"systemd-analyze"}, "systemd"); err != nil {
		t.Skipf("systemd-analyze is missing and cannot be installed: %v", err)
	}
	dir := t.TempDir()
	// A unit that cannot be wrong: if it does not verify cleanly, systemd-analyze cannot
	// run here (no systemd units to load, say), and that is no fault of berth's units.
	probe := "[Unit]\nDescription=probe\n\n[Service]\nExecStart=" + bin + " version\n"
	if err := os.WriteFile(filepath.Join(dir, "probe.service"), []byte(probe), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("systemd-analyze", "verify", "./probe.service")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Skipf("systemd-analyze verify cannot run here (it fails on a trivial unit): %v\n%s", err, out)
	}
	var names []string
	for name, body := range units {
		body = bytes.ReplaceAll(body, []byte("/usr/bin/berth"), []byte(bin))
		if err := os.WriteFile(filepath.Join(dir, name), body, 0o644); err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(name, "@.service") {
			// An instance, so that %i is expanded as systemd would.
			name = strings.TrimSuffix(name, "@.service") + "@agents.service"
			if err := os.WriteFile(filepath.Join(dir, name), body, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		names = append(names, name)
	}
	for _, name := range names {
		cmd := exec.Command("systemd-analyze", "verify", "./"+name)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil || len(bytes.TrimSpace(out)) > 0 {
			t.Errorf("systemd-analyze verify %s: %v\n%s", name, err, out)
		}
	}
}
