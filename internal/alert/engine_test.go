package alert

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"mailwarden/internal/config"
	"mailwarden/internal/mtaqueue"
	"mailwarden/internal/store"
	"mailwarden/internal/store/memory"
	"mailwarden/internal/store/storetest"
)

// fakeReceiver records what it is sent and fails while down.
type fakeReceiver struct {
	mu    sync.Mutex
	got   []Message
	down  bool
	tries int
}

func (r *fakeReceiver) Send(_ context.Context, m Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tries++
	if r.down {
		return errors.New("connection refused")
	}
	r.got = append(r.got, m)
	return nil
}

func (r *fakeReceiver) setDown(down bool) {
	r.mu.Lock()
	r.down = down
	r.mu.Unlock()
}

func (r *fakeReceiver) messages() []Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// rig is an engine over a memory store, a fake event log, a fake
// clock and fake receivers.
type rig struct {
	t      *testing.T
	st     store.Store
	cfg    config.Config
	now    time.Time
	events []store.Event
	recv   map[string]*fakeReceiver
	e      *Engine
	queue  mtaqueue.Snapshot
	mu     sync.Mutex
}

func newRig(t *testing.T, st store.Store, receivers ...string) *rig {
	r := &rig{t: t, st: st, now: time.UnixMilli(time.Now().UnixMilli()), recv: map[string]*fakeReceiver{}}
	r.cfg = config.Default()
	r.cfg.Hostname = "mw.test"
	r.cfg.InternalNetworks = []config.Prefix{config.MustPrefix("10.0.0.0/8")}
	r.cfg.Alerts.Window = config.Duration(time.Minute)
	r.cfg.Alerts.RetryMin = config.Duration(time.Second)
	r.cfg.Alerts.RetryMax = config.Duration(8 * time.Second)
	for _, name := range receivers {
		r.cfg.Alerts.Receivers = append(r.cfg.Alerts.Receivers, config.AlertReceiver{Name: name,
			Webhook: config.AlertWebhook{URL: "http://127.0.0.1:1/" + name}})
		r.recv[name] = &fakeReceiver{}
	}
	r.e = r.engine()
	return r
}

func (r *rig) engine() *Engine {
	e := New(Options{Store: r.st,
		Events: func(_ context.Context, after int64, limit int) ([]store.Event, error) {
			r.mu.Lock()
			defer r.mu.Unlock()
			var out []store.Event
			for _, ev := range r.events {
				if ev.ID > after && len(out) < limit {
					out = append(out, ev)
				}
			}
			return out, nil
		},
		Last:   func(context.Context) (int64, error) { return 0, nil },
		Config: func() config.Config { return r.cfg },
		Queue:  func() mtaqueue.Snapshot { return r.queue },
		Receivers: func(a config.Alerts, _ string) map[string]Receiver {
			out := map[string]Receiver{}
			for _, rc := range a.Receivers {
				out[rc.Name] = r.recv[rc.Name]
			}
			return out
		},
		Now: func() time.Time { return r.now },
	})
	e.Load(context.Background())
	return e
}

func (r *rig) event(ev store.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ev.ID = int64(len(r.events) + 1)
	r.events = append(r.events, ev)
}

// tick runs one round and waits for its deliveries.
func (r *rig) tick() {
	r.e.Tick(context.Background(), context.Background())
	r.e.sending.Wait()
	// Record what the deliveries did.
	r.e.resave(context.Background())
}

func (r *rig) latch(i int) {
	r.event(store.Event{Kind: store.EventLatch, Check: "sender", Client: fmt.Sprintf("10.0.%d.%d", i/250, i%250+1),
		Site: "lincoln", Reason: fmt.Sprintf("latch L%04d: forged sender", i)})
}

// TestFloodIsOneAlertAndOneDigest is the outbreak: 500 latches within a
// window make one alert at once and one digest at the window's end
// naming all 500.
func TestFloodIsOneAlertAndOneDigest(t *testing.T) {
	r := newRig(t, memory.New(), "chat")
	for i := range 500 {
		r.latch(i)
		if i%100 == 0 {
			r.tick()
			r.now = r.now.Add(time.Second)
		}
	}
	r.tick()
	got := r.recv["chat"].messages()
	if len(got) != 1 || got[0].Digest || !strings.Contains(got[0].Text, "10.0.0.1 (lincoln)") {
		t.Fatalf("before the window ends: %d messages %+v, want one immediate alert about 10.0.0.1", len(got), got)
	}
	r.now = r.now.Add(time.Minute)
	r.tick()
	got = r.recv["chat"].messages()
	if len(got) != 2 || !got[1].Digest {
		t.Fatalf("after the window: %d messages, want the alert and one digest", len(got))
	}
	d := got[1]
	if len(d.Items) != 500 || !strings.Contains(d.Subject, "500") {
		t.Errorf("digest names %d items, subject %q; want all 500", len(d.Items), d.Subject)
	}
	for i := range 500 {
		want := fmt.Sprintf("latch L%04d", i)
		if !strings.Contains(d.Items[i], want) {
			t.Fatalf("digest item %d = %q, want %q", i, d.Items[i], want)
		}
	}
	// Nothing new: no more alerts, and the next latch is immediate again
	// once the quiet window has closed.
	r.now = r.now.Add(2 * time.Minute)
	r.tick()
	r.latch(600)
	r.tick()
	if got := r.recv["chat"].messages(); len(got) != 3 || got[2].Digest {
		t.Errorf("after a quiet window: %d messages, want a third, immediate alert", len(got))
	}
	if n := r.e.Pending(); n != 0 {
		t.Errorf("%d alerts still pending", n)
	}
}

// TestRoutingAndSeverity sends each kind to its route's receivers with
// its severity, and a kind without a route to every receiver.
func TestRoutingAndSeverity(t *testing.T) {
	r := newRig(t, memory.New(), "mail", "chat")
	r.cfg.Alerts.Routes = []config.AlertRoute{{Kind: config.AlertLatch, Receivers: []string{"chat"}, Severity: "critical"}}
	r.latch(1)
	r.event(store.Event{Kind: store.EventVirus, Check: "antivirus", Client: "10.9.9.9", Sender: "a@school.test", Reason: "Eicar-Signature"})
	r.tick()
	kinds := func(name string) (out []string) {
		for _, m := range r.recv[name].messages() {
			out = append(out, m.Kind+"/"+m.Severity)
		}
		slices.Sort(out)
		return out
	}
	if got, want := kinds("chat"), []string{"latch/critical", "virus/critical"}; !slices.Equal(got, want) {
		t.Errorf("chat got %v, want %v", got, want)
	}
	if got, want := kinds("mail"), []string{"virus/critical"}; !slices.Equal(got, want) {
		t.Errorf("mail got %v, want %v", got, want)
	}
}

// TestClassify keeps out what is not news: a message refused by a
// latch, a virus from outside, a message held by a freeze; and keeps
// freeze switches and the watchers' events.
func TestClassify(t *testing.T) {
	cfg := config.Default()
	cfg.InternalNetworks = []config.Prefix{config.MustPrefix("10.0.0.0/8")}
	for _, c := range []struct {
		ev   store.Event
		kind string
	}{
		{store.Event{Kind: store.EventLatch, Check: "latch", Client: "10.1.1.1"}, ""},
		{store.Event{Kind: store.EventLatch, Check: "ratelimit", User: "bob"}, config.AlertLatch},
		{store.Event{Kind: store.EventVirus, Client: "192.0.2.1"}, ""},
		{store.Event{Kind: store.EventVirus, Client: "10.1.1.1"}, config.AlertVirus},
		{store.Event{Kind: store.EventVirus, Client: "192.0.2.1", Site: "lincoln"}, config.AlertVirus},
		{store.Event{Kind: store.EventFreeze, Check: "freeze"}, ""},
		{store.Event{Kind: store.EventAdmin, Check: "freeze on", User: "root"}, config.AlertFreeze},
		{store.Event{Kind: store.EventAdmin, Check: "freeze off", User: "root"}, config.AlertFreeze},
		{store.Event{Kind: store.EventAdmin, Check: "latch clear"}, ""},
		{store.Event{Kind: store.EventRateTrip, User: "bob"}, config.AlertRateTrip},
		{store.Event{Kind: store.EventMailbox, Reason: "30 new mailboxes"}, config.AlertMailbox},
		{store.Event{Kind: store.EventSignatures, Reason: "clamd down"}, config.AlertSignatures},
		{store.Event{Kind: store.EventTrap, Client: "10.1.1.9", Reason: "40 direct port-25 connections"}, config.AlertTrap},
		{store.Event{Kind: store.EventReject}, ""},
		{store.Event{Kind: store.EventStore}, ""},
	} {
		tr, ok := classify(cfg, c.ev)
		if ok != (c.kind != "") || tr.kind != c.kind {
			t.Errorf("classify(%+v) = %q, %v; want %q", c.ev, tr.kind, ok, c.kind)
		}
	}
}

func TestBackoff(t *testing.T) {
	a := config.Alerts{RetryMin: config.Duration(10 * time.Second), RetryMax: config.Duration(time.Minute)}
	want := []time.Duration{10 * time.Second, 20 * time.Second, 40 * time.Second, time.Minute, time.Minute}
	for i, w := range want {
		if got := Backoff(a, i+1); got != w {
			t.Errorf("Backoff(%d) = %v, want %v", i+1, got, w)
		}
	}
	if got := Backoff(a, 1000); got != time.Minute {
		t.Errorf("Backoff(1000) = %v, want the cap", got)
	}
}

// TestRetryWithBackoff: a receiver that is down is tried again after
// the backoff, not before, and gets each alert once when it is back.
func TestRetryWithBackoff(t *testing.T) {
	r := newRig(t, memory.New(), "chat")
	chat := r.recv["chat"]
	chat.setDown(true)
	r.latch(1)
	r.tick()
	if chat.tries != 1 {
		t.Fatalf("tries = %d, want 1", chat.tries)
	}
	r.now = r.now.Add(500 * time.Millisecond)
	r.tick()
	if chat.tries != 1 {
		t.Errorf("tried again after 0.5s, before the 1s backoff")
	}
	r.now = r.now.Add(600 * time.Millisecond)
	r.tick()
	if chat.tries != 2 {
		t.Errorf("tries = %d after the backoff, want 2", chat.tries)
	}
	// The second failure waits 2s.
	r.now = r.now.Add(1500 * time.Millisecond)
	r.tick()
	if chat.tries != 2 {
		t.Errorf("tried again before the doubled backoff")
	}
	chat.setDown(false)
	r.now = r.now.Add(time.Second)
	r.tick()
	r.now = r.now.Add(10 * time.Second)
	r.tick()
	if got := chat.messages(); len(got) != 1 {
		t.Fatalf("delivered %d times, want once", len(got))
	}
	as, err := r.st.RecentAlerts(context.Background(), 0)
	if err != nil || len(as) != 1 || as[0].State != store.AlertSent || as[0].Attempts != 3 {
		t.Errorf("outbox = %+v, %v; want one sent alert after 3 attempts", as, err)
	}
}

// TestGiveUp marks an alert failed once it is older than give_up_after.
func TestGiveUp(t *testing.T) {
	r := newRig(t, memory.New(), "chat")
	r.cfg.Alerts.GiveUpAfter = config.Duration(time.Minute)
	r.recv["chat"].setDown(true)
	r.latch(1)
	r.tick()
	r.now = r.now.Add(2 * time.Minute)
	r.tick()
	as, _ := r.st.RecentAlerts(context.Background(), 0)
	if len(as) != 1 || as[0].State != store.AlertFailed || !strings.Contains(as[0].Error, "connection refused") {
		t.Errorf("outbox = %+v, want the alert failed with its last error", as)
	}
}

// TestRestartDeliversPendingOnce: alerts pending when the engine stops
// are delivered by the next engine over the same store, once.
func TestRestartDeliversPendingOnce(t *testing.T) {
	st := memory.New()
	r := newRig(t, st, "chat")
	r.recv["chat"].setDown(true)
	r.latch(1)
	r.event(store.Event{Kind: store.EventAdmin, Check: "freeze on", User: "root", Reason: "spam run"})
	r.tick()
	if n := r.e.Pending(); n != 2 {
		t.Fatalf("pending = %d, want 2", n)
	}
	// A new engine: the receiver is back.
	r.recv["chat"] = &fakeReceiver{}
	r.e = r.engine()
	r.tick()
	if n := len(r.recv["chat"].messages()); n != 0 {
		t.Errorf("delivered %d before the first alert's backoff ended, want none: alerts go out in order", n)
	}
	r.now = r.now.Add(2 * time.Second)
	r.tick()
	got := r.recv["chat"].messages()
	if len(got) != 2 || got[0].Kind != "latch" || got[1].Kind != "freeze" {
		t.Fatalf("after restart delivered %+v, want the latch then the freeze alert", got)
	}
	// The new engine does not read the events again.
	r.now = r.now.Add(time.Hour)
	r.tick()
	if n := len(r.recv["chat"].messages()); n != 2 {
		t.Errorf("delivered %d after more ticks, want still 2", n)
	}
}

// TestStoreDownDeliversFromMemory: when the store cannot take alerts
// they are delivered all the same, and stored once it can again.
func TestStoreDownDeliversFromMemory(t *testing.T) {
	f := storetest.WithFaults(memory.New())
	r := newRig(t, f, "chat")
	f.FailOn("AddAlerts", errors.New("disk full"))
	f.FailOn("MarkAlert", errors.New("disk full"))
	r.e.Notify(config.AlertStore, "store cannot write: disk full")
	r.tick()
	got := r.recv["chat"].messages()
	if len(got) != 1 || got[0].Kind != config.AlertStore || got[0].ID != 0 {
		t.Fatalf("delivered %+v, want the store alert from memory", got)
	}
	f.Heal()
	r.tick()
	as, err := f.RecentAlerts(context.Background(), 0)
	if err != nil || len(as) != 1 || as[0].State != store.AlertSent || as[0].Kind != config.AlertStore {
		t.Errorf("outbox after the store heals = %+v, %v; want the store alert, sent", as, err)
	}
	if n := len(r.recv["chat"].messages()); n != 1 {
		t.Errorf("delivered %d times, want once", n)
	}
}

// TestQueueThresholds alerts once when the queue goes over its size,
// again only after it dropped back, and when it grows fast.
func TestQueueThresholds(t *testing.T) {
	r := newRig(t, memory.New(), "chat")
	r.cfg.Alerts.Window = config.Duration(time.Second)
	r.cfg.Alerts.Queue = config.AlertQueue{Messages: 1000, Growth: 500}
	sizes := []int{100, 1200, 1300, 200, 900}
	for _, n := range sizes {
		r.queue = mtaqueue.Snapshot{Time: r.now, Summary: mtaqueue.Summary{Messages: n}}
		r.tick()
		r.now = r.now.Add(time.Minute)
		r.tick()
	}
	var texts []string
	for _, m := range r.recv["chat"].messages() {
		texts = append(texts, m.Items...)
	}
	joined := strings.Join(texts, "\n")
	for _, want := range []string{"grew by 1100 messages", "holds 1200 messages", "grew by 700 messages"} {
		if !strings.Contains(joined, want) {
			t.Errorf("queue alerts lack %q:\n%s", want, joined)
		}
	}
	if strings.Contains(joined, "holds 1300") || strings.Contains(joined, "holds 900") {
		t.Errorf("queue alerted twice for one stay over the threshold:\n%s", joined)
	}
}

// TestRunFlushesOpenWindows: a clean stop closes the open windows into
// digests in the outbox, delivered by the next run.
func TestRunFlushesOpenWindows(t *testing.T) {
	st := memory.New()
	r := newRig(t, st, "chat")
	r.cfg.Alerts.Window = config.Duration(time.Hour)
	for i := range 3 {
		r.latch(i)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		r.e.Run(ctx)
		close(done)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for len(r.recv["chat"].messages()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no immediate alert")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	p, err := st.PendingAlerts(context.Background(), 0)
	if err != nil || len(p) != 1 || !p[0].Digest || len(p[0].Items) != 3 {
		t.Fatalf("pending after stop = %+v, %v; want the digest of the 3 latches", p, err)
	}
}
