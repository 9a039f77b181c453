// Package redistest starts real redis-server processes for tests: a
// single server (Server) or a Cluster of several (Cluster), each on a
// free loopback port with its own temporary directory, stopped when the
// test ends. Without redis-server on PATH a test is skipped, except
// under CI=true, where a skipped integration test would hide a broken
// setup and fails instead (test/setup.sh installs redis-server).
package redistest

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// reserved are loopback ports other tests and tools on the build
// machines use; a server never takes them (nor a cluster bus port).
var reserved = []int{16379, 13310, 17357, 11332, 10123, 17400}

// Option changes how Server starts redis-server.
type Option func(*settings)

type settings struct {
	appendonly bool
	extra      []string
	tls        *TLSFiles
}

// NoPersistence starts the server without an append-only file, so a
// restart loses everything, as a Redis set up without persistence does.
func NoPersistence() Option { return func(s *settings) { s.appendonly = false } }

// Args passes more redis-server arguments, e.g. "--requirepass", "x".
func Args(args ...string) Option { return func(s *settings) { s.extra = append(s.extra, args...) } }

// TLSFiles are the PEM files of a server that speaks only TLS.
type TLSFiles struct {
	Cert, Key, CA string
}

// WithTLS makes the server speak only TLS on its port, with the
// certificate and key in f; clients need not present a certificate.
func WithTLS(f TLSFiles) Option { return func(s *settings) { s.tls = &f } }

// Instance is one redis-server process.
type Instance struct {
	t    testing.TB
	port int
	dir  string
	args []string
	tls  *tls.Config // for Command, when the server speaks TLS

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// need returns the path of redis-server, or ends the test without it.
func need(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is not installed, and CI=true: a skipped Redis test would hide it (test/setup.sh installs redis-server and redis-tools)", name)
	}
	t.Skipf("%s is not installed", name)
	return ""
}

// Server starts redis-server on a free loopback port, with appendonly
// yes (so Stop and Start keep the data) and no RDB snapshots. It is
// stopped when the test ends.
func Server(t testing.TB, opts ...Option) *Instance {
	t.Helper()
	need(t, "redis-server")
	st := settings{appendonly: true}
	for _, o := range opts {
		o(&st)
	}
	port := freePort(t, false)
	extra := st.extra
	var clientTLS *tls.Config
	if f := st.tls; f != nil {
		extra = append(extra, "--port", "0", "--tls-port", strconv.Itoa(port), "--tls-cert-file", f.Cert,
			"--tls-key-file", f.Key, "--tls-ca-cert-file", f.CA, "--tls-auth-clients", "no")
		pem, err := os.ReadFile(f.CA)
		if err != nil {
			t.Fatalf("redistest: %v", err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		clientTLS = &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
	}
	in := newInstance(t, port, st.appendonly, extra...)
	in.tls = clientTLS
	in.Start()
	return in
}

// Sentinel starts a Redis Sentinel on a free loopback port that
// monitors master under name (quorum 1), and waits until it knows the
// master. It is stopped when the test ends.
func Sentinel(t testing.TB, master *Instance, name string) *Instance {
	t.Helper()
	need(t, "redis-server")
	port := freePort(t, false)
	in := newInstance(t, port, false)
	conf := filepath.Join(in.dir, "sentinel.conf")
	text := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nlogfile %s\nsentinel monitor %s 127.0.0.1 %d 1\n",
		port, in.dir, filepath.Join(in.dir, "redis.log"), name, master.port)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatalf("redistest: %v", err)
	}
	in.args = []string{conf, "--sentinel"}
	in.Start()
	deadline := time.Now().Add(10 * time.Second)
	for {
		reply, _ := in.Command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", name)
		if reply == "*2" {
			return in
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: sentinel on %s does not know master %s: %q", in.Addr(), name, reply)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func newInstance(t testing.TB, port int, appendonly bool, extra ...string) *Instance {
	dir, err := os.MkdirTemp("", "redistest-")
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ao := "no"
	if appendonly {
		ao = "yes"
	}
	args := []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
		"--appendonly", ao, "--save", "", "--daemonize", "no", "--protected-mode", "no",
		"--logfile", filepath.Join(dir, "redis.log")}
	in := &Instance{t: t, port: port, dir: dir, args: append(args, extra...)}
	t.Cleanup(in.Stop)
	return in
}

// Addr returns the server's host:port.
func (in *Instance) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(in.port)) }

// URL returns redis://Addr.
func (in *Instance) URL() string { return "redis://" + in.Addr() }

// Dir returns the server's directory (append-only file, log).
func (in *Instance) Dir() string { return in.dir }

// PID returns the process id, 0 while stopped.
func (in *Instance) PID() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.cmd == nil {
		return 0
	}
	return in.cmd.Process.Pid
}

// Start starts the server again on the same port and directory, and
// waits until it answers PING (after loading its data).
func (in *Instance) Start() {
	in.t.Helper()
	in.mu.Lock()
	if in.cmd != nil {
		in.mu.Unlock()
		return
	}
	cmd := exec.Command("redis-server", in.args...)
	if err := cmd.Start(); err != nil {
		in.mu.Unlock()
		in.t.Fatalf("redistest: starting redis-server: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	in.cmd, in.done = cmd, done
	in.mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for {
		reply, err := in.Command("PING")
		if err == nil && reply == "+PONG" {
			return
		}
		select {
		case <-done:
			in.t.Fatalf("redistest: redis-server on %s exited at start: %s", in.Addr(), in.log())
		default:
		}
		if time.Now().After(deadline) {
			in.t.Fatalf("redistest: redis-server on %s not ready after 10s (%v %q): %s", in.Addr(), err, reply, in.log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop stops the server with SIGTERM (which writes the append-only
// file) and waits for it to exit; stopping a stopped server does
// nothing.
func (in *Instance) Stop() {
	in.mu.Lock()
	cmd, done := in.cmd, in.done
	in.cmd = nil
	in.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

// log returns the tail of the server's log, for a failure message.
func (in *Instance) log() string {
	b, _ := os.ReadFile(filepath.Join(in.dir, "redis.log"))
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// Command sends one inline command and returns the first line of the
// reply, for checks that need no client library.
func (in *Instance) Command(args ...string) (string, error) {
	var c net.Conn
	var err error
	if in.tls != nil {
		c, err = tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", in.Addr(), in.tls)
	} else {
		c, err = net.DialTimeout("tcp", in.Addr(), time.Second)
	}
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.Write([]byte(b.String())); err != nil {
		return "", err
	}
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	line = strings.TrimRight(line, "\r\n")
	if err != nil {
		return line, err
	}
	if strings.HasPrefix(line, "$") {
		n, _ := strconv.Atoi(line[1:])
		if n < 0 {
			return "", nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
	return line, nil
}

// Cluster starts n cluster-enabled servers (no persistence), joins them
// with `redis-cli --cluster create` (no replicas) and waits until every
// node reports cluster_state:ok. It returns their addresses.
func Cluster(t testing.TB, n int) []string {
	t.Helper()
	need(t, "redis-server")
	need(t, "redis-cli")
	var addrs []string
	var nodes []*Instance
	for range n {
		in := newInstance(t, freePort(t, true), false,
			"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000")
		in.Start()
		nodes = append(nodes, in)
		addrs = append(addrs, in.Addr())
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("redistest: redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, in := range nodes {
		for {
			info, _ := in.clusterInfo()
			if strings.Contains(info, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("redistest: cluster node %s not ok after 20s: %s", in.Addr(), info)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return addrs
}

func (in *Instance) clusterInfo() (string, error) {
	out, err := exec.Command("redis-cli", "-h", "127.0.0.1", "-p", strconv.Itoa(in.port), "CLUSTER", "INFO").Output()
	return string(out), err
}

// freePort returns a loopback port nothing listens on, outside the
// reserved ones; for a cluster node, its bus port (+10000) too.
func freePort(t testing.TB, bus bool) int {
	t.Helper()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("redistest: finding a free port: %v", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if slices.Contains(reserved, port) {
			continue
		}
		if bus {
			if port+10000 > 65535 || slices.Contains(reserved, port+10000) {
				continue
			}
			bl, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port+10000)))
			if err != nil {
				continue
			}
			bl.Close()
		}
		return port
	}
	t.Fatalf("redistest: no free loopback port found")
	return 0
}
