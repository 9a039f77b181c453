package clamd

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// startClamd runs a clamd of the test's own, with a database holding only
// an EICAR body signature (an .ndb one: clamd decodes MIME parts before
// matching it), and returns its TCP and unix addresses. It is stopped by
// its PID when the test ends. Without clamd the test is skipped, except
// under CI, where clamd must be there.
func startClamd(tb testing.TB) (tcpAddr, unixAddr string) {
	tb.Helper()
	bin, err := exec.LookPath("clamd")
	if err != nil {
		bin, err = exec.LookPath("/usr/sbin/clamd")
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatal("clamd is not installed (Debian: clamav-daemon); CI must run the real-clamd tests")
		}
		tb.Skip("clamd is not installed")
	}
	dir := tb.TempDir()
	db := filepath.Join(dir, "db")
	sig := "Eicar-Test-Signature-Body:0:*:" + hex.EncodeToString([]byte(eicar)) + "\n"
	if err := os.Mkdir(db, 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(db, "test.ndb"), []byte(sig), 0o644); err != nil {
		tb.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	sock := filepath.Join(dir, "clamd.sock")
	conf := filepath.Join(dir, "clamd.conf")
	text := fmt.Sprintf("Foreground yes\nTCPSocket %d\nTCPAddr 127.0.0.1\nLocalSocket %s\n"+
		"DatabaseDirectory %s\nStreamMaxLength 1M\nMaxThreads 4\nLogFile %s\n",
		port, sock, db, filepath.Join(dir, "clamd.log"))
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		tb.Fatal(err)
	}
	out, err := os.Create(filepath.Join(dir, "clamd.out"))
	if err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", conf)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	tb.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		out.Close()
	})

	tcpAddr, unixAddr = fmt.Sprintf("tcp:127.0.0.1:%d", port), "unix:"+sock
	c, err := New(Options{Servers: []string{tcpAddr, unixAddr}, ScanTimeout: time.Second})
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	for end := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		select {
		case err := <-exited:
			log, _ := os.ReadFile(filepath.Join(dir, "clamd.out"))
			tb.Fatalf("clamd exited: %v\n%s", err, log)
		default:
		}
		// Both sockets must answer before any test uses either.
		ctx := context.Background()
		if c.ping(ctx, c.servers[0], time.Second) == nil && c.ping(ctx, c.servers[1], time.Second) == nil {
			return tcpAddr, unixAddr
		}
		if time.Now().After(end) {
			tb.Fatal("clamd did not answer PING within 60s")
		}
	}
}

// mimeMessage builds a multipart message with a base64 attachment, as a
// mail client sends one.
func mimeMessage(attachment []byte) []byte {
	var b bytes.Buffer
	b.WriteString("From: a@example.org\r\nTo: b@example.org\r\nSubject: report\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"XYZ\"\r\n\r\n" +
		"--XYZ\r\nContent-Type: text/plain\r\n\r\nPlease see the attached file.\r\n" +
		"--XYZ\r\nContent-Type: application/octet-stream; name=\"report.com\"\r\n" +
		"Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"report.com\"\r\n\r\n")
	enc := base64.StdEncoding.EncodeToString(attachment)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n--XYZ--\r\n")
	return b.Bytes()
}

func TestRealClamd(t *testing.T) {
	tcpAddr, unixAddr := startClamd(t)
	ctx := t.Context()
	infected := mimeMessage([]byte(eicar))
	clean := mimeMessage([]byte("just a harmless report\r\n"))
	if bytes.Contains(infected, []byte("EICAR")) {
		t.Fatal("the EICAR string must only be there base64-encoded")
	}
	for _, addr := range []string{tcpAddr, unixAddr} {
		network, _, _ := strings.Cut(addr, ":")
		t.Run(network, func(t *testing.T) {
			c, lb := newTestClient(t, Options{Servers: []string{addr}, MaxSize: 4 << 20})
			for i := range 3 { // a second and third scan reuse the session
				res, err := c.Scan(ctx, bytes.NewReader(infected), int64(len(infected)))
				if err != nil || !res.Infected || !strings.HasPrefix(res.Virus, "Eicar-Test-Signature-Body") {
					t.Fatalf("EICAR attachment, scan %d: %+v, %v", i, res, err)
				}
				res, err = c.Scan(ctx, bytes.NewReader(clean), int64(len(clean)))
				if err != nil || res.Infected {
					t.Fatalf("clean message, scan %d: %+v, %v", i, res, err)
				}
			}
			if n := c.servers[0].idleCount(); n != 1 {
				t.Errorf("%d pooled sessions after sequential scans, want 1", n)
			}

			// Over clamd's StreamMaxLength 1M but under the client's cap:
			// clamd refuses it.
			big := bytes.Repeat([]byte("0123456789abcdef\r\n"), 2<<20/18)
			_, err := c.Scan(ctx, bytes.NewReader(big), int64(len(big)))
			if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "StreamMaxLength") {
				t.Errorf("2 MB to clamd: err %v, want clamd's size limit", err)
			}
			if !strings.Contains(lb.String(), addr) {
				t.Errorf("no log line naming %s:\n%s", addr, lb)
			}
			// Under the client's own cap of 1M it never reaches clamd.
			c1, _ := newTestClient(t, Options{Servers: []string{addr}, MaxSize: 1 << 20})
			if _, err := c1.Scan(ctx, bytes.NewReader(big), int64(len(big))); !errors.Is(err, ErrTooLarge) {
				t.Errorf("2 MB over the client cap: err %v", err)
			}

			v, err := c.Version(ctx)
			if err != nil || !strings.HasPrefix(v.Engine, "ClamAV ") || v.Server != addr {
				t.Errorf("version: %+v, %v", v, err)
			}
			c.checkAll(ctx)
			if st := c.Status()[0]; !st.Up || st.Version.Engine != v.Engine {
				t.Errorf("status: %+v", st)
			}
		})
	}

	t.Run("concurrent", func(t *testing.T) {
		c, _ := newTestClient(t, Options{Servers: []string{tcpAddr, unixAddr}})
		var wg sync.WaitGroup
		var mu sync.Mutex
		var fails []string
		for g := range 8 {
			wg.Go(func() {
				for i := range 10 {
					msg, want := clean, false
					if (g+i)%3 == 0 {
						msg, want = infected, true
					}
					res, err := c.Scan(ctx, bytes.NewReader(msg), int64(len(msg)))
					if err != nil || res.Infected != want {
						mu.Lock()
						fails = append(fails, fmt.Sprintf("goroutine %d scan %d: %+v, %v", g, i, res, err))
						mu.Unlock()
					}
				}
			})
		}
		wg.Wait()
		for _, f := range fails {
			t.Error(f)
		}
	})
}

// BenchmarkScan measures scans per second against a real clamd, 2 KB
// messages of which one in ten carries EICAR, with IDSESSION connections
// from the pool and with a new connection per scan.
func BenchmarkScan(b *testing.B) {
	tcpAddr, unixAddr := startClamd(b)
	full := mimeMessage(bytes.Repeat([]byte("an ordinary attachment line.\r\n"), 45))
	clean := full[:2048]
	virus := append(bytes.Clone(full[:2048-len(eicar)]), eicar...)
	for _, addr := range []string{tcpAddr, unixAddr} {
		for _, session := range []bool{true, false} {
			network, _, _ := strings.Cut(addr, ":")
			name := fmt.Sprintf("%s/session=%v", network, session)
			b.Run(name, func(b *testing.B) {
				c, err := New(Options{Servers: []string{addr}})
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				c.session = session
				var mu sync.Mutex
				n := 0
				b.SetParallelism(4) // 8 scans in flight on 2 cores
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						mu.Lock()
						n++
						msg, want := clean, false
						if n%10 == 0 {
							msg, want = virus, true
						}
						mu.Unlock()
						res, err := c.Scan(context.Background(), bytes.NewReader(msg), int64(len(msg)))
						if err != nil || res.Infected != want {
							b.Errorf("scan: %+v, %v", res, err)
							return
						}
					}
				})
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "scans/s")
			})
		}
	}
}
