package milter

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"

	"mailwarden/internal/policy"
	"mailwarden/internal/spool"
)

// captureCheck reads the message it is given at end of message.
type captureCheck struct {
	mu      sync.Mutex
	eoms    int
	present bool   // the request at EOM carried a message
	spilled bool   // part of it was on disk
	size    int64  // what Size said
	data    []byte // what Open gave
	rcpts   []string
}

func (c *captureCheck) Name() string { return "capture" }

func (c *captureCheck) Check(ctx context.Context, r *policy.Request) (policy.Verdict, error) {
	if r.Stage != policy.StageEOM {
		return policy.Verdict{}, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.eoms++
	c.rcpts = r.Recipients
	c.present = r.Message != nil
	if r.Message == nil {
		return policy.Verdict{}, nil
	}
	if m, ok := r.Message.(*spool.Message); ok {
		c.spilled = m.Spilled()
	}
	c.size = r.Message.Size()
	rd, err := r.Message.Open()
	if err != nil {
		return policy.Verdict{}, err
	}
	defer rd.Close()
	c.data, err = io.ReadAll(rd)
	return policy.Verdict{}, err
}

func (c *captureCheck) get() captureCheck {
	c.mu.Lock()
	defer c.mu.Unlock()
	return captureCheck{eoms: c.eoms, present: c.present, spilled: c.spilled, size: c.size, data: c.data, rcpts: c.rcpts}
}

// field is one header field as the MTA passes it: name, and the value
// after the colon with one leading space removed.
type field struct{ name, value string }

// openMessage runs a session up to the start of the body.
func openMessage(t *testing.T, addr string, fields []field) *gomilter.ClientSession {
	t.Helper()
	c := gomilter.NewClient("tcp", addr, gomilter.WithAction(gomilter.AllClientSupportedActionMasks))
	macros := gomilter.NewMacroBag()
	macros.Set(gomilter.MacroQueueId, "4XyZ2")
	s, err := c.Session(macros)
	if err != nil {
		t.Fatalf("session: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	steps := []func() (*gomilter.Action, error){
		func() (*gomilter.Action, error) {
			return s.Conn("mail.example.net", gomilter.FamilyInet, 40000, "192.0.2.9")
		},
		func() (*gomilter.Action, error) { return s.Helo("mail.example.net") },
		func() (*gomilter.Action, error) { return s.Mail("<sender@example.net>", "") },
		func() (*gomilter.Action, error) { return s.Rcpt("<bob@dest.test>", "") },
		func() (*gomilter.Action, error) { return s.DataStart() },
	}
	for _, f := range fields {
		steps = append(steps, func() (*gomilter.Action, error) { return s.HeaderField(f.name, f.value, nil) })
	}
	steps = append(steps, s.HeaderEnd)
	for i, step := range steps {
		a, err := step()
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if a.Type != gomilter.ActionContinue {
			t.Fatalf("step %d: action %v, want continue", i, a)
		}
	}
	return s
}

// sendMessage runs one whole message and returns the milter's answer at
// the end of the body.
func sendMessage(t *testing.T, addr string, fields []field, body []byte) *gomilter.Action {
	t.Helper()
	s := openMessage(t, addr, fields)
	_, act, err := s.BodyReadFrom(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("body: %v", err)
	}
	return act
}

func newSpool(t *testing.T, memory int64) *spool.Spool {
	t.Helper()
	sp, err := spool.New(filepath.Join(t.TempDir(), "spool"), memory)
	if err != nil {
		t.Fatal(err)
	}
	return sp
}

func spoolFiles(t *testing.T, sp *spool.Spool) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(sp.Dir(), spool.FilePrefix+"*"))
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func TestMessageRebuiltExactly(t *testing.T) {
	check := &captureCheck{}
	addr, _ := startServerWith(t, check, Options{Spool: newSpool(t, 1<<20)})
	act := sendMessage(t, addr, []field{
		{"From", "Alice <alice@example.net>"},
		{"Subject", "hi"},
		{"X-Folded", "first\r\n\tsecond"},
		// Postfix passes continuation lines with a bare LF.
		{"X-Bare-LF", "one\n two"},
	}, []byte("hello\r\n\r\nworld\r\n"))
	if act == nil || act.Type != gomilter.ActionAccept {
		t.Fatalf("eom = %v, want accept", act)
	}
	want := "From: Alice <alice@example.net>\r\n" +
		"Subject: hi\r\n" +
		"X-Folded: first\r\n\tsecond\r\n" +
		"X-Bare-LF: one\r\n two\r\n" +
		"\r\n" +
		"hello\r\n\r\nworld\r\n"
	got := check.get()
	if !got.present {
		t.Fatal("no message at end of message with a spool configured")
	}
	if string(got.data) != want {
		t.Errorf("message read back as\n%q\nwant\n%q", got.data, want)
	}
	if got.size != int64(len(want)) {
		t.Errorf("Size = %d, want %d", got.size, len(want))
	}
	if len(got.rcpts) != 1 || got.rcpts[0] != "bob@dest.test" {
		t.Errorf("recipients at end of message = %q", got.rcpts)
	}
}

func TestLargeMessageSpillsAndReadsExactly(t *testing.T) {
	check := &captureCheck{}
	sp := newSpool(t, 64<<10)
	addr, _ := startServerWith(t, check, Options{Spool: sp})
	body := make([]byte, 5<<20)
	rand.NewChaCha8([32]byte{7}).Read(body)
	act := sendMessage(t, addr, []field{{"Subject", "big"}}, body)
	if act == nil || act.Type != gomilter.ActionAccept {
		t.Fatalf("eom = %v, want accept", act)
	}
	got := check.get()
	if !got.spilled {
		t.Error("a 5 MB message with a 64 KB threshold was kept in memory")
	}
	want := append([]byte("Subject: big\r\n\r\n"), body...)
	if !bytes.Equal(got.data, want) {
		t.Errorf("read %d bytes back; they differ from the %d sent", len(got.data), len(want))
	}
	if files := spoolFiles(t, sp); len(files) != 0 {
		t.Errorf("spool files left after end of message: %v", files)
	}
}

func TestNoSpoolNoMessage(t *testing.T) {
	check := &captureCheck{}
	addr, _ := startServer(t, check)
	if act := sendMessage(t, addr, []field{{"Subject", "x"}}, []byte("body\r\n")); act.Type != gomilter.ActionAccept {
		t.Fatalf("eom = %v", act)
	}
	if got := check.get(); got.eoms != 1 || got.present {
		t.Errorf("eom requests %d, message present %v; want 1 without a message", got.eoms, got.present)
	}
}

// TestSpoolFailureTempfails removes the spool directory, as a full or
// broken disk would fail: the message is tempfailed, never passed on
// unscanned.
func TestSpoolFailureTempfails(t *testing.T) {
	check := &captureCheck{}
	sp := newSpool(t, 1024)
	addr, logs := startServerWith(t, check, Options{Spool: sp})
	if err := os.RemoveAll(sp.Dir()); err != nil {
		t.Fatal(err)
	}
	act := sendMessage(t, addr, []field{{"Subject", "x"}}, bytes.Repeat([]byte("virus? "), 10000))
	if act == nil || !(act.Type == gomilter.ActionTempFail || act.Type == gomilter.ActionRejectWithCode && act.SMTPCode/100 == 4) {
		t.Fatalf("action = %v, want a temporary failure", act)
	}
	if got := check.get(); got.eoms != 0 {
		t.Errorf("the checks ran %d times on a message that could not be spooled", got.eoms)
	}
	if !strings.Contains(logs.String(), "spooling the message failed") {
		t.Errorf("no log line for the spool failure:\n%s", logs)
	}

	// Once the directory is back, the next message goes through.
	if err := os.MkdirAll(sp.Dir(), 0o700); err != nil {
		t.Fatal(err)
	}
	if act := sendMessage(t, addr, nil, bytes.Repeat([]byte("x"), 5000)); act.Type != gomilter.ActionAccept {
		t.Errorf("after the spool came back: %v, want accept", act)
	}
}

// TestAbortAndDisconnectRemoveSpoolFiles covers a message the client
// gave up on (RSET) and an MTA that went away mid-message.
func TestAbortAndDisconnectRemoveSpoolFiles(t *testing.T) {
	sp := newSpool(t, 16)
	addr, _ := startServerWith(t, &captureCheck{}, Options{Spool: sp})
	big := bytes.Repeat([]byte("y"), 100<<10)

	s := openMessage(t, addr, []field{{"Subject", "abandoned"}})
	if _, err := s.BodyChunk(big[:60000]); err != nil {
		t.Fatal(err)
	}
	// The MTA does not wait for a reply to a body chunk
	// (SMFIP_NR_BODY): the server writes it to the spool a moment later.
	deadline := time.Now().Add(10 * time.Second)
	for len(spoolFiles(t, sp)) != 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if len(spoolFiles(t, sp)) != 1 {
		t.Fatal("no spool file while the body arrives")
	}
	if err := s.Abort(nil); err != nil {
		t.Fatal(err)
	}
	// The reply to the next command shows the abort was handled.
	if _, err := s.Mail("<next@example.net>", ""); err != nil {
		t.Fatal(err)
	}
	if files := spoolFiles(t, sp); len(files) != 0 {
		t.Errorf("spool files left after abort: %v", files)
	}

	s = openMessage(t, addr, []field{{"Subject", "cut off"}})
	if _, err := s.BodyChunk(big[:60000]); err != nil {
		t.Fatal(err)
	}
	s.Close()
	// Cleanup runs in the server's session goroutine after the close.
	deadline = time.Now().Add(10 * time.Second)
	for len(spoolFiles(t, sp)) != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if files := spoolFiles(t, sp); len(files) != 0 {
		t.Errorf("spool files left after the MTA disconnected: %v", files)
	}
}
