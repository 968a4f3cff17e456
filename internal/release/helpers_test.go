package release

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

// testMeta is what the release build of these tests says about itself.
var testMeta = Meta{Version: "v1.2.3-test", Revision: "0123456789abcdef0123456789abcdef01234567", Date: "2026-01-02T03:04:05Z"}

// repoRoot is the repository, two levels up from this package.
const repoRoot = "../.."

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

// releaseBinary builds berth for this machine's platform as a release does (static,
// testMeta's ldflags), once for all the tests of the package.
func releaseBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "berth-release-test-")
		if binErr == nil {
			binErr = BuildBinary(context.Background(), repoRoot, runtime.GOOS, runtime.GOARCH, filepath.Join(binDir, "berth"), testMeta)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return filepath.Join(binDir, "berth")
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// versionOf runs `bin version --json`.
func versionOf(t *testing.T, bin string) map[string]any {
	t.Helper()
	out, err := exec.Command(bin, "version", "--json").Output()
	if err != nil {
		t.Fatalf("%s version --json: %v", bin, err)
	}
	var v map[string]any
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("%s version --json: %v\n%s", bin, err, out)
	}
	return v
}

// wantReleaseVersion checks that a binary reports testMeta, as -ldflags -X set it.
func wantReleaseVersion(t *testing.T, bin string) {
	t.Helper()
	v := versionOf(t, bin)
	if v["version"] != testMeta.Version || v["revision"] != testMeta.Revision || v["date"] != testMeta.Date || v["modified"] != false {
		t.Errorf("%s version --json = %v, want version %s, revision %s, date %s", bin, v, testMeta.Version, testMeta.Revision, testMeta.Date)
	}
	if v["go_version"] != runtime.Version() || v["os"] != runtime.GOOS || v["arch"] != runtime.GOARCH {
		t.Errorf("%s version --json = %v, want %s on %s/%s", bin, v, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	}
}

// aptInstall makes sure the commands exist, installing the Debian packages that hold
// them with apt-get when they do not, as scripts/with-postgres does (as root, or with
// sudo). It returns why it could not.
func aptInstall(t *testing.T, commands []string, packages ...string) error {
	t.Helper()
	missing := false
	for _, c := range commands {
		if _, err := exec.LookPath(c); err != nil {
			missing = true
		}
	}
	if !missing {
		return nil
	}
	asRoot := func(args ...string) *exec.Cmd {
		if os.Geteuid() == 0 {
			return exec.Command(args[0], args[1:]...)
		}
		return exec.Command("sudo", append([]string{"-n"}, args...)...)
	}
	if out, err := asRoot("apt-get", "update", "-qq").CombinedOutput(); err != nil {
		return &aptError{"apt-get update", err, out}
	}
	install := asRoot(append([]string{"apt-get", "install", "-y", "-qq", "--no-install-recommends"}, packages...)...)
	install.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := install.CombinedOutput(); err != nil {
		return &aptError{"apt-get install", err, out}
	}
	for _, c := range commands {
		if _, err := exec.LookPath(c); err != nil {
			return err
		}
	}
	return nil
}

type aptError struct {
	what string
	err  error
	out  []byte
}

func (e *aptError) Error() string { return e.what + ": " + e.err.Error() + "\n" + string(e.out) }
