package adminapi

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"mailwarden/internal/adminapi/adminapitest"
	"mailwarden/internal/store"
)

// peerClientEnv makes the test binary, run again as another user, a
// client of the socket it names: TestPeerGateHelper does one GET and
// prints the status.
const peerClientEnv = "MAILWARDEN_TEST_PEER_SOCKET"

func TestPeerGateHelper(t *testing.T) {
	path := os.Getenv(peerClientEnv)
	if path == "" {
		return
	}
	c := http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", path)
	}}}
	resp, err := c.Get("http://admin/v1/freezes")
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(0)
	}
	body, _ := io.ReadAll(resp.Body)
	fmt.Printf("status %d %s\n", resp.StatusCode, strings.TrimSpace(string(body)))
	os.Exit(0)
}

// TestPeerGateRefusesOthers: a socket whose mode lets everyone connect
// (set too wide, or reached in a window on an older build) still serves
// only root, the daemon's user and the socket's group. The test runs its
// own binary as nobody against a 0666 socket, which needs root.
func TestPeerGateRefusesOthers(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("this test needs root, and CI runs as root")
		}
		t.Skip("needs root to run a client as another user")
	}
	dir, err := os.MkdirTemp("", "mw-peergate-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// A copy of the test binary nobody may run.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "client.test")
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "admin.sock")
	s := newServer()
	ln, err := s.Listen(path, 0o666, "", "")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	defer s.Shutdown(context.Background())

	run := func(uid, gid uint32) string {
		cmd := exec.Command(bin, "-test.run=^TestPeerGateHelper$")
		cmd.Env = append(os.Environ(), peerClientEnv+"="+path)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("client as uid %d: %v\n%s", uid, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if got := run(65534, 65534); !strings.HasPrefix(got, "status 403") || !strings.Contains(got, "admin.group") {
		t.Errorf("nobody on a 0666 admin socket: %q, want 403 naming admin.group", got)
	}
	if got := run(0, 0); !strings.HasPrefix(got, "status 200") {
		t.Errorf("root: %q, want 200", got)
	}
	// A member of the socket's group (here root's group 0, by primary
	// group) is let in.
	if got := run(65534, 0); !strings.HasPrefix(got, "status 200") {
		t.Errorf("nobody with the socket's group: %q, want 200", got)
	}
}

// TestPeerGateCoversEveryRoute: every route the API serves, taken from
// the server so that a new one is covered at once, refuses a peer that
// is not root, the daemon's user or the socket's owner or group, and
// lets root through. A refused change must leave no admin event.
func TestPeerGateCoversEveryRoute(t *testing.T) {
	st := adminapitest.New()
	s := NewServer(Options{Backend: st})
	s.owners.Store(&socketOwners{uid: os.Geteuid(), gid: os.Getegid()})
	stranger := peer{uid: 65534, gid: 65534}
	if os.Geteuid() == stranger.uid || os.Getegid() == stranger.gid {
		t.Skip("running as nobody")
	}
	gate := s.peerGate(s.Handler())
	routes := s.Routes()
	if len(routes) == 0 {
		t.Fatal("the API lists no routes")
	}
	for _, route := range routes {
		method, pattern, _ := strings.Cut(route, " ")
		path := strings.NewReplacer("{ip}", "192.0.2.1", "{id}", "L1").Replace(pattern)
		for _, p := range []peer{stranger, {uid: 0, gid: 0}} {
			before, err := st.QueryEvents(context.Background(), store.EventFilter{Kind: store.EventAdmin})
			if err != nil {
				t.Fatal(err)
			}
			req := httptest.NewRequest(method, path, strings.NewReader("{}"))
			req = req.WithContext(context.WithValue(req.Context(), peerKey{}, p))
			rec := httptest.NewRecorder()
			gate.ServeHTTP(rec, req)
			after, _ := st.QueryEvents(context.Background(), store.EventFilter{Kind: store.EventAdmin})
			switch {
			case p.uid != 0 && (rec.Code != http.StatusForbidden || len(after) != len(before)):
				t.Errorf("%s as uid %d: %d, admin events %d to %d; want 403 and none", route, p.uid, rec.Code, len(before), len(after))
			case p.uid == 0 && rec.Code == http.StatusForbidden:
				t.Errorf("%s as root: 403 %s", route, rec.Body)
			}
		}
	}
}
