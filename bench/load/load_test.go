package load

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"
)

// fakePolicy is a policy server that defers the first request for each
// triplet and answers DUNNO to repeats, recording what it saw.
type fakePolicy struct {
	mu       sync.Mutex
	triplets map[string]bool
	clients  map[string]bool
	order    []string // every request's triplet, in arrival order
	conns    int
}

func startFakePolicy(t *testing.T) (string, *fakePolicy) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakePolicy{triplets: map[string]bool{}, clients: map[string]bool{}}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.mu.Lock()
			f.conns++
			f.mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				f.serve(c)
			}()
		}
	}()
	return ln.Addr().String(), f
}

func (f *fakePolicy) serve(c net.Conn) {
	r := bufio.NewReader(c)
	attrs := map[string]string{}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimSuffix(line, "\n")
		if line != "" {
			k, v, _ := strings.Cut(line, "=")
			attrs[k] = v
			continue
		}
		key := attrs["client_address"] + "/" + attrs["sender"] + "/" + attrs["recipient"]
		f.mu.Lock()
		seen := f.triplets[key]
		f.triplets[key] = true
		f.order = append(f.order, key)
		f.clients[attrs["client_address"]] = true
		f.mu.Unlock()
		reply := "action=DUNNO\n\n"
		if !seen {
			reply = "action=451 4.7.1 Greylisted\n\n"
		}
		if _, err := c.Write([]byte(reply)); err != nil {
			return
		}
		attrs = map[string]string{}
	}
}

func TestRunPolicyCountsEveryRequest(t *testing.T) {
	addr, f := startFakePolicy(t)
	// 103 is not a multiple of 4: every request must still be sent once.
	r, err := RunPolicy(context.Background(), PolicyOptions{Common: Common{Addr: addr, N: 103, C: 4, Uniq: 10, Seed: 7}})
	if err != nil {
		t.Fatal(err)
	}
	if r.N != 103 {
		t.Errorf("N = %d, want 103", r.N)
	}
	f.mu.Lock()
	distinct, conns := len(f.triplets), f.conns
	clients := f.clients
	f.mu.Unlock()
	if distinct < 1 || distinct > 10 {
		t.Errorf("server saw %d distinct triplets, want 1..10 (Uniq=10)", distinct)
	}
	if r.Verdicts["451"] != distinct || r.Verdicts["DUNNO"] != 103-distinct || len(r.Verdicts) != 2 {
		t.Errorf("verdicts = %v, want 451:%d DUNNO:%d", r.Verdicts, distinct, 103-distinct)
	}
	// Persistent connections: at most one per worker, never a redial. A
	// worker that starts after the others took all the work never dials.
	if conns < 1 || conns > 4 {
		t.Errorf("server saw %d connections, want 1 to 4 persistent ones", conns)
	}
	for c := range clients {
		a, err := netip.ParseAddr(c)
		if err != nil || !netip.MustParsePrefix("10.0.0.0/8").Contains(a) {
			t.Errorf("client_address %q is not in 10.0.0.0/8", c)
		}
	}
	if r.Rate <= 0 || r.P50 <= 0 || r.P50 > r.P99 || r.P99 > r.Max {
		t.Errorf("rate %v p50 %v p99 %v max %v are not ordered positive figures", r.Rate, r.P50, r.P99, r.Max)
	}
}

func TestRunPolicySeedsDoNotShareTriplets(t *testing.T) {
	addr, f := startFakePolicy(t)
	o := PolicyOptions{Common: Common{Addr: addr, N: 50, C: 2, Uniq: 1000, Seed: 1}}
	for _, seed := range []int64{1, 2} {
		o.Seed = seed
		if _, err := RunPolicy(context.Background(), o); err != nil {
			t.Fatal(err)
		}
	}
	f.mu.Lock()
	first := map[string]bool{}
	for _, k := range f.order[:50] {
		first[k] = true
	}
	for _, k := range f.order[50:] {
		if first[k] {
			t.Errorf("seed 2 sent triplet %q of seed 1", k)
		}
	}
	f.mu.Unlock()

	// The same seed again sends the same triplets: all are repeats.
	o.Seed = 1
	again, err := RunPolicy(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if again.Verdicts["DUNNO"] != 50 {
		t.Errorf("seed 1 again: verdicts = %v, want all DUNNO", again.Verdicts)
	}
}

func TestRunPolicyClientPattern(t *testing.T) {
	addr, f := startFakePolicy(t)
	_, err := RunPolicy(context.Background(), PolicyOptions{Common: Common{Addr: addr, N: 20, C: 1, Uniq: 5, Seed: 3, ClientPattern: "2001:db8::x:y:z"}})
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for c := range f.clients {
		if a, err := netip.ParseAddr(c); err != nil || !a.Is6() {
			t.Errorf("client_address %q is not IPv6", c)
		}
	}
}

func TestRunPolicyNobodyListening(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	r, err := RunPolicy(context.Background(), PolicyOptions{Common: Common{Addr: addr, N: 5, C: 2}})
	if !errors.Is(err, ErrAllFailed) {
		t.Fatalf("err = %v, want ErrAllFailed", err)
	}
	if r.Verdicts["error"] != 5 || !strings.Contains(r.FirstError, "connect") {
		t.Errorf("verdicts %v, first error %q", r.Verdicts, r.FirstError)
	}
}

func TestBadOptions(t *testing.T) {
	for _, o := range []Common{
		{Addr: "", N: 1, C: 1},
		{Addr: "127.0.0.1:1", N: 0, C: 1},
		{Addr: "127.0.0.1:1", N: 1, C: 0},
		{Addr: "127.0.0.1:1", N: 1, C: 1, Uniq: -1},
		{Addr: "127.0.0.1:1", N: 1, C: 1, ClientPattern: "host-x"},
	} {
		if _, err := RunPolicy(context.Background(), PolicyOptions{Common: o}); !errors.Is(err, ErrBadOptions) {
			t.Errorf("RunPolicy(%+v) err = %v, want ErrBadOptions", o, err)
		}
		if _, err := RunMilter(context.Background(), MilterOptions{Common: o}); !errors.Is(err, ErrBadOptions) {
			t.Errorf("RunMilter(%+v) err = %v, want ErrBadOptions", o, err)
		}
	}
}

// recordingMilter accepts everything and counts body bytes per message,
// or tempfails at RCPT when tempfail is set.
type recordingMilter struct {
	gomilter.NoOpMilter
	tempfail bool
	body     int
	sizes    chan int
	clients  chan string
}

func (m *recordingMilter) Connect(host, family string, port uint16, addr string, _ gomilter.Modifier) (*gomilter.Response, error) {
	m.clients <- addr
	return gomilter.RespContinue, nil
}

func (m *recordingMilter) RcptTo(string, string, gomilter.Modifier) (*gomilter.Response, error) {
	if m.tempfail {
		return gomilter.RespTempFail, nil
	}
	return gomilter.RespContinue, nil
}

func (m *recordingMilter) BodyChunk(chunk []byte, _ gomilter.Modifier) (*gomilter.Response, error) {
	m.body += len(chunk)
	return gomilter.RespContinue, nil
}

func (m *recordingMilter) EndOfMessage(gomilter.Modifier) (*gomilter.Response, error) {
	m.sizes <- m.body
	return gomilter.RespAccept, nil
}

func startFakeMilter(t *testing.T, tempfail bool, n int) (string, chan int, chan string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sizes, clients := make(chan int, n), make(chan string, n)
	srv := gomilter.NewServer(gomilter.WithMilter(func() gomilter.Milter {
		return &recordingMilter{tempfail: tempfail, sizes: sizes, clients: clients}
	}))
	done := make(chan struct{})
	go func() { srv.Serve(ln); close(done) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return ln.Addr().String(), sizes, clients
}

func TestRunMilterFullTransactions(t *testing.T) {
	addr, sizes, clients := startFakeMilter(t, false, 30)
	r, err := RunMilter(context.Background(), MilterOptions{Common: Common{Addr: addr, N: 30, C: 4, Seed: 1}, Size: 5000})
	if err != nil {
		t.Fatal(err)
	}
	if r.N != 30 || r.Verdicts["accept"] != 30 {
		t.Fatalf("N=%d verdicts=%v, want 30 accepts", r.N, r.Verdicts)
	}
	// Every transaction reached end of message with the whole body, on a
	// connection of its own.
	if len(sizes) != 30 || len(clients) != 30 {
		t.Fatalf("milter saw %d ends of message and %d connects, want 30 each", len(sizes), len(clients))
	}
	for len(sizes) > 0 {
		if s := <-sizes; s != 5000 {
			t.Errorf("body of %d bytes, want 5000", s)
		}
	}
}

func TestRunMilterStopsAtFirstRefusal(t *testing.T) {
	addr, sizes, _ := startFakeMilter(t, true, 10)
	r, err := RunMilter(context.Background(), MilterOptions{Common: Common{Addr: addr, N: 10, C: 2, Seed: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if r.Verdicts["tempfail"] != 10 || len(r.Verdicts) != 1 {
		t.Errorf("verdicts = %v, want 10 tempfail", r.Verdicts)
	}
	if len(sizes) != 0 {
		t.Errorf("%d transactions went on to end of message after a tempfail at RCPT", len(sizes))
	}
}

func TestRunMilterCancelled(t *testing.T) {
	addr, _, _ := startFakeMilter(t, false, 10)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r, err := RunMilter(ctx, MilterOptions{Common: Common{Addr: addr, N: 10, C: 2}})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	if r.N != 0 {
		t.Errorf("N = %d after cancelling first, want 0", r.N)
	}
}

// TestRunPolicyRatePaces checks that a paced run cannot finish before its
// last request is due (a lower bound only; no upper timing is asserted).
func TestRunPolicyRatePaces(t *testing.T) {
	addr, _ := startFakePolicy(t)
	r, err := RunPolicy(context.Background(), PolicyOptions{Common: Common{Addr: addr, N: 50, C: 2, Seed: 9}, Rate: 500})
	if err != nil {
		t.Fatal(err)
	}
	if r.N != 50 {
		t.Fatalf("N = %d, want 50", r.N)
	}
	if due := 49 * time.Second / 500; r.Elapsed < due {
		t.Errorf("paced run of 50 at 500/s took %v, before its last request was due (%v)", r.Elapsed, due)
	}
}

// TestRunMilterVirusFraction checks that -virus sends the EICAR message
// in about that share of transactions and the plain body otherwise.
func TestRunMilterVirusFraction(t *testing.T) {
	const n = 400
	addr, sizes, _ := startFakeMilter(t, false, n)
	if _, err := RunMilter(context.Background(), MilterOptions{Common: Common{Addr: addr, N: n, C: 4, Seed: 3}, Size: 2048, Virus: 0.25}); err != nil {
		t.Fatal(err)
	}
	infected := 0
	for len(sizes) > 0 {
		switch s := <-sizes; s {
		case len(eicarBody()):
			infected++
		case 2048:
		default:
			t.Fatalf("a body of %d bytes is neither the plain body nor the EICAR message", s)
		}
	}
	// 400 draws at 0.25: the count is far inside 60..140 unless broken.
	if infected < 60 || infected > 140 {
		t.Errorf("%d of %d messages carried EICAR, want about 100", infected, n)
	}
	if !strings.Contains(string(eicarBody()), "WDVPIVAlQEFQWzRcUFpYNTQoUF4pN0NDKTd9JEVJQ0FSLVNUQU5EQVJELUFOVElWSVJVUy1URVNULUZJTEUhJEgrSCo=") {
		t.Error("the EICAR attachment is not the standard test string in base64")
	}
	if _, err := RunMilter(context.Background(), MilterOptions{Common: Common{Addr: addr, N: 1, C: 1}, Virus: 1.5}); !errors.Is(err, ErrBadOptions) {
		t.Errorf("Virus=1.5: err = %v, want ErrBadOptions", err)
	}
}
