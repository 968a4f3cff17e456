package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"
)

// certReloader serves the TLS certificate of berth serve --tls-cert/--tls-key: the pair
// read at start, then the latest pair that reloaded well. A reload reads both files
// again; if they do not make a valid pair (a half-written file, a key that does not match
// its certificate), the previous pair stays and the error is returned. Connections open
// at a reload keep the certificate they were made with; new handshakes get the new one.
type certReloader struct {
	certFile, keyFile string
	cert              atomic.Pointer[tls.Certificate]
}

// newCertReloader reads the pair, or fails saying what is wrong with it.
func newCertReloader(certFile, keyFile string) (*certReloader, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile}
	if err := r.reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// reload reads the pair again and serves it from now on when it is valid.
func (r *certReloader) reload() error {
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("TLS certificate %s and key %s: %w", r.certFile, r.keyFile, err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return fmt.Errorf("TLS certificate %s: %w", r.certFile, err)
		}
	}
	r.cert.Store(&cert)
	return nil
}

// getCertificate is the tls.Config's GetCertificate.
func (r *certReloader) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.cert.Load(), nil
}

// certAttrs describes the pair served now, for the log.
func (r *certReloader) certAttrs() []any {
	leaf := r.cert.Load().Leaf
	return []any{"cert", r.certFile, "subject", leaf.Subject.String(), "serial", leaf.SerialNumber.String(),
		"not_after", leaf.NotAfter.UTC().Format(time.RFC3339)}
}

// tlsConfig is the server's TLS configuration: the reloader's certificate, TLS 1.2 at
// least, and ALPN left to net/http, which offers h2 and http/1.1 (HTTP/2 is on by
// default over TLS; nothing here may set NextProtos or TLSNextProto, which would turn it
// off).
func (r *certReloader) tlsConfig() *tls.Config {
	return &tls.Config{GetCertificate: r.getCertificate, MinVersion: tls.VersionTLS12}
}

// tlsFiles checks --tls-cert and --tls-key: both or neither.
func tlsFiles(cert, key string) (bool, error) {
	switch {
	case cert == "" && key == "":
		return false, nil
	case cert == "" || key == "":
		return false, errors.New("--tls-cert and --tls-key (or BERTH_TLS_CERT and BERTH_TLS_KEY) go together: give both or neither")
	}
	return true, nil
}

// reloadOnSIGHUP reloads r (when not nil) on every SIGHUP until stop is called: a
// certificate renewed in place (certbot, cert-manager, a Secret update) is served to new
// connections without a restart. Without TLS, SIGHUP is logged and ignored, rather than
// ending the server as its default action would.
func reloadOnSIGHUP(r *certReloader, log *slog.Logger) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-hup:
			case <-done:
				return
			}
			if r == nil {
				log.Info("SIGHUP: nothing to reload (no --tls-cert)")
				continue
			}
			if err := r.reload(); err != nil {
				log.Error("TLS certificate reload failed; still serving the previous certificate", append([]any{"err", err}, r.certAttrs()...)...)
				continue
			}
			log.Info("reloaded the TLS certificate", r.certAttrs()...)
		}
	}()
	return func() {
		signal.Stop(hup)
		close(done)
	}
}
