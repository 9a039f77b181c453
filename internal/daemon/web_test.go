package daemon

import (
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
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeCert writes a self-signed certificate for 127.0.0.1 and its key.
func writeCert(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mailwarden test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(c)
	return certFile, keyFile, pool
}

// TestDashboardTLS serves the dashboard over TLS: the login page answers
// over https only, and the metrics stay reachable beside it.
func TestDashboardTLS(t *testing.T) {
	cfg := testConfig(t)
	var pool *x509.CertPool
	cfg.Web.TLSCert, cfg.Web.TLSKey, pool = writeCert(t, t.TempDir())
	if err := Validate(cfg); err != nil {
		t.Fatalf("config check of a good certificate: %v", err)
	}
	start(t, cfg, "")
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get("https://" + cfg.Listen.HTTP + "/login")
	if err != nil {
		t.Fatalf("GET /login over TLS: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Errorf("GET /login over TLS: %s, CSP %q", resp.Status, resp.Header.Get("Content-Security-Policy"))
	}
	if resp, err = c.Get("https://" + cfg.Listen.HTTP + "/hosts"); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/login") {
		t.Errorf("GET /hosts without a session: %s to %q, want 303 to /login", resp.Status, resp.Header.Get("Location"))
	}
	if resp, err = c.Get("https://" + cfg.Listen.HTTP + "/-/healthy"); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("health over TLS: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	// Plain HTTP to a TLS listener gets no dashboard.
	plain := &http.Client{Timeout: 5 * time.Second}
	if resp, err := plain.Get("http://" + cfg.Listen.HTTP + "/login"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("the dashboard answered plain HTTP on its TLS listener")
		}
	}
}

// TestDashboardBadCertificate: a certificate that cannot be loaded fails
// config check and the start, naming the file, before any listener serves.
func TestDashboardBadCertificate(t *testing.T) {
	cfg := testConfig(t)
	dir := t.TempDir()
	cfg.Web.TLSCert, cfg.Web.TLSKey = filepath.Join(dir, "missing.pem"), filepath.Join(dir, "missing.key")
	if err := Validate(cfg); err == nil || !strings.Contains(err.Error(), "missing.pem") {
		t.Errorf("config check: err = %v, want it to name missing.pem", err)
	}
	d, err := Start(cfg, Options{Stderr: &syncBuf{}, Stdout: &syncBuf{}, Version: "test"})
	if err == nil {
		d.Shutdown(t.Context())
		t.Fatal("Start with a missing certificate succeeded")
	}
	if !strings.Contains(err.Error(), "web.tls_cert") {
		t.Errorf("Start error %q does not name web.tls_cert", err)
	}
	// Every listener was closed again: the policy port is free.
	ln, lerr := net.Listen("tcp", cfg.Listen.Policy)
	if lerr != nil {
		t.Errorf("policy port still held after the failed start: %v", lerr)
	} else {
		ln.Close()
	}
}

// TestDashboardOff: with web.enabled false only the ops endpoints answer.
func TestDashboardOff(t *testing.T) {
	cfg := testConfig(t)
	cfg.Web.Enabled = false
	start(t, cfg, "")
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + cfg.Listen.HTTP + "/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /login with the dashboard off: %s, want 404", resp.Status)
	}
	if resp, err = c.Get("http://" + cfg.Listen.HTTP + "/metrics"); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("metrics with the dashboard off: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
}
