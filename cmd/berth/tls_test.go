package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-sh/berth/client"
	"github.com/berth-sh/berth/internal/testserver"
)

// testCA is a private CA made for a test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string // its certificate, PEM
	pool *x509.CertPool
}

func newTestCA(t *testing.T, dir string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "berth test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	ca := &testCA{cert: cert, key: key, file: filepath.Join(dir, "ca.pem"), pool: x509.NewCertPool()}
	ca.pool.AddCert(cert)
	writeFileAtomic(t, ca.file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	return ca
}

// issue writes a server certificate for 127.0.0.1 and localhost with the given serial,
// and its key, to certFile and keyFile (each replaced whole, by a rename, as a
// certificate manager does).
func (ca *testCA) issue(t *testing.T, serial int64, certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "berth"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writeFileAtomic(t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}))
	writeFileAtomic(t, certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func writeFileAtomic(t *testing.T, path string, b []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// tlsGet GETs url through tr and returns the answer's status, protocol, the serial of the
// server's certificate and the local address of the connection it went over.
func tlsGet(t *testing.T, tr *http.Transport, url string) (status int, proto string, serial int64, local string) {
	t.Helper()
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) { local = info.Conn.LocalAddr().String() },
	})
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	res.Body.Close()
	if res.TLS == nil {
		t.Fatalf("GET %s: not over TLS", url)
	}
	return res.StatusCode, res.Proto, res.TLS.PeerCertificates[0].SerialNumber.Int64(), local
}

// A real `berth serve --tls-cert --tls-key` speaks HTTP/2 over TLS, and on SIGHUP serves a
// renewed pair to new connections while an open connection goes on; a pair that does not
// load is logged and the previous one kept.
func TestServeTLSReloadsOnSIGHUP(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := newTestCA(t, dir)
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	ca.issue(t, 100, certFile, keyFile)
	p, addrc := launchServe(t, "--data-dir", filepath.Join(dir, "data"), "--tls-cert", certFile, "--tls-key", keyFile)
	awaitServe(t, p, addrc)
	if !strings.Contains(p.log(), `dashboard=https://`) || !strings.Contains(p.log(), "tls=true") {
		t.Errorf("the serving line does not say TLS:\n%s", p.log())
	}
	url := "https://" + p.addr + "/healthz"
	newTransport := func() *http.Transport {
		return &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool}, ForceAttemptHTTP2: true}
	}

	open := newTransport()
	defer open.CloseIdleConnections()
	status, proto, serial, conn := tlsGet(t, open, url)
	if status != 200 || proto != "HTTP/2.0" || serial != 100 {
		t.Fatalf("first answer: %d %s from certificate %d, want 200 HTTP/2.0 from 100", status, proto, serial)
	}

	// Renew in place, then SIGHUP.
	ca.issue(t, 200, certFile, keyFile)
	p.cmd.Process.Signal(syscall.SIGHUP)
	testserver.WaitFor(t, "the reload's log line", func() bool { return strings.Contains(p.log(), `msg="reloaded the TLS certificate"`) })
	if !strings.Contains(p.log(), "serial=200") {
		t.Errorf("the reload's log line does not name the new certificate:\n%s", p.log())
	}

	status, proto, serial, conn2 := tlsGet(t, open, url)
	if status != 200 || proto != "HTTP/2.0" || serial != 100 || conn2 != conn {
		t.Errorf("the open connection after the reload: %d %s from certificate %d on %s, want 200 HTTP/2.0 from 100 on %s (the same connection)",
			status, proto, serial, conn2, conn)
	}
	fresh := newTransport()
	status, proto, serial, conn3 := tlsGet(t, fresh, url)
	fresh.CloseIdleConnections()
	if status != 200 || proto != "HTTP/2.0" || serial != 200 || conn3 == conn {
		t.Errorf("a new connection after the reload: %d %s from certificate %d, want 200 HTTP/2.0 from 200", status, proto, serial)
	}

	// A broken renewal keeps the previous pair.
	writeFileAtomic(t, certFile, []byte("-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n"))
	p.cmd.Process.Signal(syscall.SIGHUP)
	testserver.WaitFor(t, "the failed reload's log line", func() bool {
		return strings.Contains(p.log(), `msg="TLS certificate reload failed; still serving the previous certificate"`)
	})
	fresh = newTransport()
	status, _, serial, _ = tlsGet(t, fresh, url)
	fresh.CloseIdleConnections()
	if status != 200 || serial != 200 {
		t.Errorf("a new connection after a failed reload: %d from certificate %d, want 200 from 200", status, serial)
	}
	if !strings.Contains(p.log(), "level=ERROR") {
		t.Errorf("the failed reload is not logged at ERROR:\n%s", p.log())
	}
}

// The CLI and the worker reach a TLS server signed by a private CA with --ca-cert (or
// BERTH_CA_CERT), and refuse it without: the worker runs an item to the end over HTTPS.
func TestCLIAndWorkerTrustCACert(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := newTestCA(t, dir)
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	ca.issue(t, 7, certFile, keyFile)
	data := filepath.Join(dir, "data")
	p, addrc := launchServe(t, "--data-dir", data, "--tls-cert", certFile, "--tls-key", keyFile)
	awaitServe(t, p, addrc)
	admin := readAdminToken(t, data)
	url := "https://" + p.addr

	r := (&cliRunner{t: t}).with("BERTH_URL="+url, "BERTH_TOKEN="+admin)
	stderr := r.fail(exitServer, "env", "list")
	if !strings.Contains(stderr, "certificate") {
		t.Errorf("env list without the CA: %q, want a certificate error", stderr)
	}
	r.ok("env", "list", "--ca-cert", ca.file)
	var env client.Environment
	r.with("BERTH_CA_CERT="+ca.file).json(&env, "env", "create", "--name", "tls", "--json")
	var tok client.Token
	r.with("BERTH_CA_CERT="+ca.file).json(&tok, "token", "create", "--name", "w", "--role", "worker", "--environment-id", env.ID, "--json")
	if stderr := r.fail(exitLocal, "env", "list", "--ca-cert", filepath.Join(dir, "nope.pem")); !strings.Contains(stderr, "nope.pem") {
		t.Errorf("a missing --ca-cert file: %q, want its name", stderr)
	}

	c, err := client.New(url+"/api/v1/cloud", admin, client.WithCACertFile(ca.file))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := c.CreateSession(ctx, client.CreateSessionParams{Agent: "agent_test", EnvironmentID: env.ID}); err != nil {
		t.Fatal(err)
	}
	cmd := execBerth("worker", "--url", url, "--environment", env.ID, "--log-format", "json", "--ca-cert", ca.file, "--exec", "exit 3")
	cmd.Env = append(cmd.Env, "BERTH_TOKEN="+tok.Secret)
	w := startProc(t, cmd)
	w.waitLog(t, `"msg":"stopped"`)
	w.signal(t, syscall.SIGTERM)
	if code := w.exitCode(t, time.Minute); code != 0 {
		t.Errorf("worker exit code %d:\n%s", code, w.log())
	}
	items, err := c.ListWork(ctx, env.ID, client.ListWorkParams{})
	if err != nil {
		t.Fatal(err)
	}
	if len(items.Data) != 1 || items.Data[0].State != client.StateStopped || items.Data[0].Metadata["exit_code"] != "3" {
		t.Errorf("the item after the worker: %+v, want stopped with exit_code 3", items.Data)
	}
}

// execBerth is a berth command (this test binary as berth), without the BERTH_ variables
// of the test's own environment.
func execBerth(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "BERTH_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "BERTH_TEST_AS_MAIN=1")
	return cmd
}

// --tls-cert and --tls-key go together, and a pair that does not load stops the server
// from starting, with the files named.
func TestServeTLSRefusesBadFlags(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := newTestCA(t, dir)
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	ca.issue(t, 1, certFile, keyFile)
	r := &cliRunner{t: t}
	data := filepath.Join(dir, "data")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--tls-cert", certFile}, "give both or neither"},
		{[]string{"--tls-key", keyFile}, "give both or neither"},
		{[]string{"--tls-cert", certFile, "--tls-key", ca.file}, "tls.crt"},
		{[]string{"--tls-cert", filepath.Join(dir, "nope.crt"), "--tls-key", keyFile}, "nope.crt"},
	} {
		stderr := r.fail(1, append([]string{"serve", "--addr", "127.0.0.1:0", "--data-dir", data}, tc.args...)...)
		if !strings.Contains(stderr, tc.want) {
			t.Errorf("serve %q: %q, want %q in it", tc.args, stderr, tc.want)
		}
	}
	stderr := r.with("BERTH_TLS_CERT="+certFile).fail(1, "serve", "--addr", "127.0.0.1:0", "--data-dir", data)
	if !strings.Contains(stderr, "give both or neither") {
		t.Errorf("BERTH_TLS_CERT alone: %q", stderr)
	}
}
