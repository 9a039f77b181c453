package integration_test

import (
	"bytes"
	binenc "encoding/binary"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"mailwarden/test/harness"
)

// TestDashboardScreenshots takes a full-page PNG of each main page of
// the dashboard, with Day A's evidence in it, for the README. They go to
// $MAILWARDEN_SCREENSHOTS when set (`make screenshots` sets it to
// docs/screenshots), else to the test's temporary directory. Each page
// must load with 200 and show its main element, so a broken page fails
// here before it reaches the README.
func TestDashboardScreenshots(t *testing.T) {
	t.Parallel()
	dir := os.Getenv("MAILWARDEN_SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("creating the screenshot directory: %v", err)
	}
	w := startWorld(t, "127.0.83", "127.0.84.7")

	// The login page, as a visitor without a session sees it.
	anon := w.page(t)
	anon.Navigate(t, w.url("/login"))
	shoot(t, anon, "#login-form", filepath.Join(dir, "login.png"))

	for _, s := range []struct{ name, path, main string }{
		{"overview", "/", "#overview-counts"},
		{"hosts", "/hosts", "table#hosts-table"},
		{"host", "/hosts/" + w.forger, "h1#host-ip"},
		{"latches", "/latches", "table#latches-table"},
		{"greylist", "/greylist", "table#greylist-pending"},
		{"events", "/events", "table#events-table"},
		{"freeze", "/freeze", "#freeze-state"},
		{"audit", "/audit", "table#audit-table"},
	} {
		if st := w.admin.Navigate(t, w.url(s.path)); st != http.StatusOK {
			t.Errorf("GET %s: status %d, want 200", s.path, st)
		}
		shoot(t, w.admin, s.main, filepath.Join(dir, s.name+".png"))
	}
	requireNoDialogs(t, anon, w.admin)
	t.Logf("screenshots in %s", dir)
}

// shoot waits for the page's main element and writes a full-page PNG,
// checking that it is one the width of the browser window.
func shoot(t *testing.T, p *harness.Page, main, path string) {
	t.Helper()
	p.WaitVisible(t, main)
	p.Screenshot(t, path)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading the screenshot: %v", err)
	}
	// A PNG starts with its signature and the IHDR chunk: width and
	// height as big-endian uint32s at bytes 16 and 20 (RFC 2083 §3.2,
	// §4.1.1).
	if len(b) < 24 || !bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) {
		t.Fatalf("%s is not a PNG", path)
	}
	if wd, ht := binenc.BigEndian.Uint32(b[16:]), binenc.BigEndian.Uint32(b[20:]); wd != 1280 || ht < 200 {
		t.Errorf("%s is %dx%d, want 1280 wide and a page tall", path, wd, ht)
	}
}
