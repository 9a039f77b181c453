package harness

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// EICAR is the 68-byte EICAR anti-virus test file (eicar.org): harmless,
// and detected by every scanner that is set up to detect it.
const EICAR = `X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`

// EICARSignature is the name of the only signature in the harness's
// clamd database. clamd reports it with ".UNOFFICIAL" appended, as it
// does for every signature not signed by ClamAV.
const EICARSignature = "Eicar-Test-Signature-Body"

// clamdReadyTimeout bounds clamd's start: loading even one signature
// initialises the whole engine, which is slow on a loaded machine.
const clamdReadyTimeout = 60 * time.Second

// ClamdConfig tunes one clamd instance.
type ClamdConfig struct {
	// StreamMaxLength is clamd's cap on an INSTREAM scan, in clamd.conf
	// syntax ("10M", "1M"); default "10M".
	StreamMaxLength string
	// MaxThreads is clamd's scanning thread count; default 4.
	MaxThreads int
}

// Clamd is a running clamd with a database holding only an EICAR body
// signature (.ndb: a bare md5 .hdb would miss EICAR inside a MIME part).
// It listens on a loopback TCP port and on a unix socket.
type Clamd struct {
	// Addr is the TCP listener's host:port; Socket the unix socket path.
	Addr   string
	Socket string
	// ConfFile is clamd.conf; LogFile clamd's own log.
	ConfFile string
	LogFile  string

	dir     string
	outFile string
	bin     string
	proc    *proc
}

// RequireClamd skips (or fails under CI) unless clamd is installed.
func RequireClamd(t testing.TB) {
	t.Helper()
	if _, err := Program("clamd"); err != nil {
		SkipOrFail(t, "%v", err)
	}
}

// StartClamd starts clamd with the default config and stops it when the
// test ends, showing its log if the test failed.
func StartClamd(t testing.TB) *Clamd {
	t.Helper()
	return StartClamdConfig(t, ClamdConfig{})
}

// StartClamdConfig is StartClamd with cfg.
func StartClamdConfig(t testing.TB, cfg ClamdConfig) *Clamd {
	t.Helper()
	RequireClamd(t)
	c, err := LaunchClamd(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("clamd log (%s):\n%s", c.LogFile, tail(c.Log(), 4000))
		}
		if err := c.Close(); err != nil {
			t.Errorf("stopping clamd: %v", err)
		}
	})
	return c
}

// LaunchClamd starts a clamd that outlives any one test, for a test
// package to share; the caller must Close it. StartClamd is the form
// for one test.
func LaunchClamd(cfg ClamdConfig) (*Clamd, error) {
	bin, err := Program("clamd")
	if err != nil {
		return nil, err
	}
	if cfg.StreamMaxLength == "" {
		cfg.StreamMaxLength = "10M"
	}
	if cfg.MaxThreads <= 0 {
		cfg.MaxThreads = 4
	}
	dir, err := os.MkdirTemp("", "mwclamd-")
	if err != nil {
		return nil, fmt.Errorf("harness: creating clamd directory: %w", err)
	}
	c := &Clamd{
		Socket:   filepath.Join(dir, "clamd.sock"),
		ConfFile: filepath.Join(dir, "clamd.conf"),
		LogFile:  filepath.Join(dir, "clamd.log"),
		dir:      dir,
		outFile:  filepath.Join(dir, "clamd.out"),
		bin:      bin,
	}
	if err := c.writeConfig(cfg); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	for attempt := 0; attempt < 3; attempt++ {
		if err = c.Start(); err == nil {
			return c, nil
		}
		if !errors.Is(err, errClamdExited) {
			break
		}
		// Most likely the port was taken meanwhile: try another.
		if err := c.writeConfig(cfg); err != nil {
			break
		}
	}
	c.Close()
	return nil, err
}

// errClamdExited marks a clamd that exited before it answered PING.
var errClamdExited = errors.New("harness: clamd exited before it was ready")

// writeConfig picks a free port and writes the database and clamd.conf.
func (c *Clamd) writeConfig(cfg ClamdConfig) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("harness: finding a port for clamd: %w", err)
	}
	c.Addr = ln.Addr().String()
	ln.Close()
	db := filepath.Join(c.dir, "db")
	if err := os.MkdirAll(db, 0o755); err != nil {
		return fmt.Errorf("harness: creating clamd database directory: %w", err)
	}
	// An .ndb body signature: name, target 0 (any file), offset * (any).
	sig := fmt.Sprintf("%s:0:*:%s\n", EICARSignature, hex.EncodeToString([]byte(EICAR)))
	if err := os.WriteFile(filepath.Join(db, "test.ndb"), []byte(sig), 0o644); err != nil {
		return fmt.Errorf("harness: writing clamd database: %w", err)
	}
	_, port, _ := net.SplitHostPort(c.Addr)
	conf := strings.Join([]string{
		"DatabaseDirectory " + db,
		"TCPAddr 127.0.0.1",
		"TCPSocket " + port,
		"LocalSocket " + c.Socket,
		"LocalSocketMode 666",
		"Foreground yes",
		"LogFile " + c.LogFile,
		"LogTime yes",
		"MaxThreads " + strconv.Itoa(cfg.MaxThreads),
		"StreamMaxLength " + cfg.StreamMaxLength,
		// The database never changes under a test.
		"SelfCheck 0",
	}, "\n") + "\n"
	if err := os.WriteFile(c.ConfFile, []byte(conf), 0o644); err != nil {
		return fmt.Errorf("harness: writing clamd.conf: %w", err)
	}
	return nil
}

// Start runs clamd and waits until it answers PING with PONG. Start after
// Stop brings the same clamd back on the same port and socket.
func (c *Clamd) Start() error {
	if c.proc != nil && c.proc.running() {
		return fmt.Errorf("harness: clamd already running as pid %d", c.proc.pid())
	}
	appendFile(c.outFile, fmt.Sprintf("# harness: start at %s\n", time.Now().Format(time.RFC3339Nano)))
	var err error
	c.proc, err = startProc(c.outFile, c.bin, "-c", c.ConfFile)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(clamdReadyTimeout)
	var last error
	for time.Now().Before(deadline) {
		if !c.proc.running() {
			return fmt.Errorf("%w (%v):\n%s\n%s", errClamdExited, c.proc.err, tail(readFile(c.outFile), 2000), tail(c.Log(), 2000))
		}
		var reply string
		if reply, last = ClamdCommand(c.Addr, "PING", 2*time.Second); last == nil {
			if reply == "PONG" {
				return nil
			}
			last = fmt.Errorf("PING answered %q", reply)
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.proc.stop(5 * time.Second)
	return fmt.Errorf("harness: clamd not answering PING on %s after %v: %v\n%s", c.Addr, clamdReadyTimeout, last, tail(c.Log(), 2000))
}

// Stop sends SIGTERM to clamd's PID and waits for it to exit, as an
// outage of the scanner would look to mailwarden.
func (c *Clamd) Stop() error {
	if c.proc == nil {
		return nil
	}
	if err := c.proc.stop(10 * time.Second); err != nil {
		return fmt.Errorf("harness: stopping clamd: %w", err)
	}
	return nil
}

// Close stops clamd and removes its directory (unless HARNESS_KEEP).
func (c *Clamd) Close() error {
	err := c.Stop()
	if os.Getenv("HARNESS_KEEP") == "" {
		os.RemoveAll(c.dir)
	}
	return err
}

// Running reports whether the clamd process is alive.
func (c *Clamd) Running() bool { return c.proc != nil && c.proc.running() }

// PID returns clamd's process ID (of the last start).
func (c *Clamd) PID() int { return c.proc.pid() }

// TCPServer is the TCP listener in mailwarden's antivirus.servers form.
func (c *Clamd) TCPServer() string { return "tcp:" + c.Addr }

// UnixServer is the unix socket in mailwarden's antivirus.servers form.
func (c *Clamd) UnixServer() string { return "unix:" + c.Socket }

// Log returns clamd's log file so far.
func (c *Clamd) Log() string { return readFile(c.LogFile) }

// ClamdCommand sends one z-command ("PING", "VERSION") to the clamd at
// addr (host:port) and returns its reply without the trailing NUL.
func ClamdCommand(addr, cmd string, timeout time.Duration) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(timeout))
	if _, err := conn.Write([]byte("z" + cmd + "\x00")); err != nil {
		return "", fmt.Errorf("sending %s: %w", cmd, err)
	}
	var buf []byte
	b := make([]byte, 512)
	for {
		n, err := conn.Read(b)
		buf = append(buf, b[:n]...)
		if i := strings.IndexByte(string(buf), 0); i >= 0 {
			return string(buf[:i]), nil
		}
		if err != nil {
			return string(buf), fmt.Errorf("reading the reply to %s: %w", cmd, err)
		}
	}
}
