package integration_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"mailwarden/test/harness"
)

// TestStoreHealthDiskFull fills the filesystem under a running daemon's
// data directory while mail flows through Postfix: /-/ready turns 503,
// `status` shows the store down, the metrics say mailwarden_store_up 0
// and count the lost writes by kind, the log summarises the failures
// instead of one line each, and mail is still decided from memory. Once
// the space is freed the daemon is ready again and the outage is in the
// event log.
func TestStoreHealthDiskFull(t *testing.T) {
	t.Parallel()
	bin := binary(t)
	fs := harness.Tmpfs(t, 8<<20)
	sink := harness.StartSink(t)
	const internal, whitelisted = "127.0.62.20", "127.0.62.30"
	mw := harness.NewMailwarden(t, bin, greylistYAML(greylistDelay, internal+"/32", whitelisted))
	// A data directory that does not exist yet is a new installation.
	mw.DataDir = filepath.Join(fs, "data")
	mw.Start(t)
	s := &stack{mw: mw, sink: sink,
		pf: harness.StartPostfix(t, harness.PostfixConfig{SinkPort: sink.Port, Milter: mw.MilterAddr})}
	s.requireGreylisted(t, s.send(t, "127.0.63.1", "before@ext.test", "user@dest.test", harness.UniqueID(t)),
		"milter", "127.0.63.1")
	if code, body := daemonGet(t, mw, "/-/ready"); code != http.StatusOK {
		t.Fatalf("ready before the disk filled: %d %s", code, body)
	}
	logStart := mw.StderrSize()

	filler := harness.FillUp(t, fs)
	full := time.Now()
	// Watch /-/ready from the moment the disk is full, beside the mail.
	notReadyCh := make(chan time.Time, 1)
	go func() {
		client := &http.Client{Timeout: 5 * time.Second}
		for time.Since(full) < 20*time.Second {
			if resp, err := client.Get("http://" + mw.HTTPAddr + "/-/ready"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusServiceUnavailable {
					notReadyCh <- time.Now()
					return
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
		close(notReadyCh)
	}()
	// Mail goes on while the store cannot write: new senders are still
	// greylisted (from memory), the whitelisted client still delivered.
	const newSenders = 20
	var tempfailed, accepted, other int
	for i := range newSenders {
		res := s.send(t, fmt.Sprintf("127.0.63.%d", 10+i), fmt.Sprintf("during%d@ext.test", i), "user@dest.test", harness.UniqueID(t))
		switch r := res.Reply("RCPT TO"); {
		case strings.HasPrefix(r, "451 4.7.1 "):
			tempfailed++
		case strings.HasPrefix(r, "250 "):
			accepted++
		default:
			other++
			t.Errorf("new sender during the outage got %q", r)
		}
	}
	wlID := harness.UniqueID(t)
	s.send(t, whitelisted, "friend@ext.test", "user@dest.test", wlID).RequireDelivered(t)
	sink.WaitForID(t, wlID, 10*time.Second)

	notReady, ok := <-notReadyCh
	if !ok {
		t.Fatalf("/-/ready never answered 503 within 20s of the disk filling")
	}
	if took := notReady.Sub(full); took > 10*time.Second {
		t.Errorf("/-/ready answered 503 only %v after the disk filled, want within 10s", took)
	}
	_, body := waitReadyCode(t, mw, http.StatusServiceUnavailable, time.Second)
	if !strings.Contains(body, "store cannot write") {
		t.Errorf("/-/ready while the disk is full: %q, want it to name the store", body)
	}
	st := storeStatus(t, mw)
	if st.Up || !strings.Contains(st.LastError, "full") || st.LostWrites == 0 {
		t.Errorf("status --json while the disk is full: store %+v, want down, naming the full disk, with lost writes", st)
	}
	metrics := scrapeMetrics(t, mw)
	if v := metrics["mailwarden_store_up"]; v != "0" {
		t.Errorf("mailwarden_store_up = %q while the disk is full, want 0", v)
	}
	lostTriplets, _ := strconv.Atoi(metrics[`mailwarden_store_write_failures_total{kind="triplet"}`])
	if lostTriplets < newSenders {
		t.Errorf("triplet write failures = %d, want at least the %d new senders'", lostTriplets, newSenders)
	}
	human := mw.CLIWords(t, 1, "status").Stdout
	if !strings.Contains(human, "CANNOT WRITE") {
		t.Errorf("status while the disk is full does not say the store cannot write:\n%s", human)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	freed := time.Now()
	readyAgain, _ := waitReadyCode(t, mw, http.StatusOK, 10*time.Second)
	if st := storeStatus(t, mw); !st.Up {
		t.Errorf("status --json after the space was freed: store %+v, want up", st)
	}
	if v := scrapeMetrics(t, mw)["mailwarden_store_up"]; v != "1" {
		t.Errorf("mailwarden_store_up = %q after the space was freed, want 1", v)
	}
	evs := events(t, mw, "--kind", "store")
	var down, up []string
	for _, e := range evs {
		switch r := field(e, "reason"); {
		case strings.HasPrefix(r, "store could not write from "):
			down = append(down, r)
		case strings.HasPrefix(r, "store writes again after "):
			up = append(up, r)
		}
	}
	if len(down) != 1 || len(up) != 1 || len(evs) != 2 {
		b, _ := json.MarshalIndent(evs, "", "  ")
		t.Fatalf("store events after one outage: %s\nwant one down and one recovery event", b)
	}

	// A sender greylisted during the outage passes on its retry: the
	// daemon kept the triplet in memory although it could not save it.
	time.Sleep(greylistDelay + 500*time.Millisecond)
	retryID := harness.UniqueID(t)
	s.send(t, "127.0.63.10", "during0@ext.test", "user@dest.test", retryID).RequireDelivered(t)
	sink.WaitForID(t, retryID, 10*time.Second)

	var warnLines, errorLines int
	var storeLog strings.Builder
	for line := range strings.Lines(mw.Stderr()[logStart:]) {
		switch {
		case strings.Contains(line, `msg="store write failed`) || strings.Contains(line, `msg="store writes failed`):
			warnLines++
		case strings.Contains(line, "level=ERROR") && strings.Contains(line, "store cannot write"):
			errorLines++
		default:
			continue
		}
		storeLog.WriteString(line)
	}
	if errorLines != 1 {
		t.Errorf("%d \"store cannot write\" errors logged, want 1", errorLines)
	}
	if warnLines > 3 {
		t.Errorf("%d write-failure warnings logged for %d failed triplet writes, want a summary", warnLines, lostTriplets)
	}
	t.Logf("disk full: /-/ready 503 after %v; space freed: 200 after %v", notReady.Sub(full).Round(time.Millisecond),
		readyAgain.Sub(freed).Round(time.Millisecond))
	t.Logf("during the outage: %d new senders tempfailed (greylist), %d accepted, %d other; whitelisted delivered 1; "+
		"greylisted sender's retry after it delivered 1", tempfailed, accepted, other)
	t.Logf("lost writes: %d (%v); write-failure log lines: %d warnings, %d error", st.LostWrites,
		st.WriteFailures, warnLines, errorLines)
	t.Logf("events: %q; %q", down[0], up[0])
	t.Logf("the daemon's store lines:\n%s", storeLog.String())
	t.Logf("mailwarden status while the disk was full:\n%s", human)
}

// storeState is the store part of `mailwarden status --json`.
type storeState struct {
	Backend       string            `json:"backend"`
	Up            bool              `json:"up"`
	LastError     string            `json:"last_error"`
	LostWrites    uint64            `json:"lost_writes"`
	WriteFailures map[string]uint64 `json:"write_failures"`
}

func storeStatus(t *testing.T, mw *harness.Mailwarden) storeState {
	t.Helper()
	res := mw.CLIWords(t, 1, "status", "--json")
	var st struct {
		Store *storeState `json:"store"`
	}
	if err := json.Unmarshal([]byte(res.Stdout), &st); res.ExitCode != 0 || err != nil || st.Store == nil {
		t.Fatalf("status --json: exit %d, %v, no store in:\n%s%s", res.ExitCode, err, res.Stdout, res.Stderr)
	}
	return *st.Store
}

func daemonGet(t *testing.T, mw *harness.Mailwarden, path string) (int, string) {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + mw.HTTPAddr + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode, string(b)
}

// waitReadyCode polls /-/ready until it answers code and returns when it did
// and the body; the test fails after timeout.
func waitReadyCode(t *testing.T, mw *harness.Mailwarden, code int, timeout time.Duration) (time.Time, string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got, body := daemonGet(t, mw, "/-/ready")
		if got == code {
			return time.Now(), body
		}
		if time.Now().After(deadline) {
			t.Fatalf("/-/ready still answers %d %q after %v, want %d", got, body, timeout, code)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// scrapeMetrics returns the metrics' sample lines as series → value.
func scrapeMetrics(t *testing.T, mw *harness.Mailwarden) map[string]string {
	t.Helper()
	_, body := daemonGet(t, mw, "/metrics")
	out := map[string]string{}
	for line := range strings.Lines(body) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if i := strings.LastIndexByte(line, ' '); i > 0 {
			out[line[:i]] = line[i+1:]
		}
	}
	return out
}
