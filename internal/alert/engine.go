package alert

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	"mailwarden/internal/config"
	"mailwarden/internal/human"
	"mailwarden/internal/logx"
	"mailwarden/internal/mtaqueue"
	"mailwarden/internal/policy/latch"
	"mailwarden/internal/store"
)

// Engine defaults.
const (
	// DefaultPoll is how often the engine reads new events and sends
	// what is due.
	DefaultPoll = time.Second
	// readBatch is how many events one read takes.
	readBatch = 1000
	// maxDigestItems bounds the items one digest names; the rest are
	// counted. It is far above an outbreak on a small network (500
	// machines), far below what makes a message no one can read.
	maxDigestItems = 5000
	// sendTimeout bounds one delivery attempt.
	sendTimeout = time.Minute
)

// Options configure an Engine.
type Options struct {
	// Store holds the outbox and the engine's place in the event log.
	Store store.Alerts
	// Events returns up to limit events with an ID above after, oldest
	// first: events.Log.After.
	Events func(ctx context.Context, after int64, limit int) ([]store.Event, error)
	// Last returns the newest event's ID: where an engine with no
	// stored place starts, so a new installation is not told about
	// its whole event log.
	Last func(ctx context.Context) (int64, error)
	// Config returns the live configuration (alerts, hostname,
	// internal networks).
	Config func() config.Config
	// Queue returns the queue watcher's last listing (its Latest); nil
	// means no queue alerts.
	Queue func() mtaqueue.Snapshot
	// Receivers builds the receivers of a config; nil means Receivers.
	Receivers func(a config.Alerts, host string) map[string]Receiver
	Metrics   *Metrics
	Now       func() time.Time
	Log       *slog.Logger
	// Poll is how often the engine looks for new events; 0 means
	// DefaultPoll.
	Poll time.Duration
}

// Engine turns events into alerts and delivers them. Run drives it;
// Notify hands it what does not come through the event log.
type Engine struct {
	o      Options
	loaded bool // set by Load, before Run's goroutine starts

	mu      sync.Mutex
	cursor  int64 // the last event read
	saved   int64 // the cursor as stored
	windows map[string]*window
	notes   []trigger // from Notify, for the next tick
	out     []*entry  // the outbox in memory, oldest first
	tempID  int64     // IDs of alerts the store could not take: -1, -2 ...
	// busy marks a receiver with a delivery in flight; next is when a
	// receiver that failed is tried again.
	busy      map[string]bool
	next      map[string]time.Time
	lastQueue mtaqueue.Snapshot
	queueOver bool
	// readFailing is set while reading the event log fails, so the
	// failure is logged once.
	readFailing bool

	sending sync.WaitGroup
}

// window is one kind's aggregation window: it ends at end, and items
// are what arrived in it, the first of them already sent at once when
// sent is 1.
type window struct {
	end   time.Time
	items []string
	sent  int
	more  int // items past maxDigestItems, counted only
}

// trigger is one thing to alert about.
type trigger struct {
	kind, item string
}

// entry is one outbox row in memory.
type entry struct {
	a     store.Alert
	saved bool // the store holds it (a.ID > 0)
	dirty bool // its delivery state changed since the store last took it
}

// New returns an engine; Run starts it.
func New(o Options) *Engine {
	o.Log = logx.Or(o.Log)
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Poll <= 0 {
		o.Poll = DefaultPoll
	}
	if o.Receivers == nil {
		o.Receivers = Receivers
	}
	return &Engine{o: o, windows: map[string]*window{}, busy: map[string]bool{}, next: map[string]time.Time{}}
}

// Notify raises an alert that does not come from the event log: the
// store that cannot write cannot record the event either, and must be
// told of from memory. It takes effect at the next tick.
func (e *Engine) Notify(kind, item string) {
	e.mu.Lock()
	e.notes = append(e.notes, trigger{kind, item})
	e.mu.Unlock()
}

// Run loads the outbox and the stored place in the event log, then
// reads events, makes alerts and delivers them every poll until ctx
// ends. At the end it sends the open windows' digests to the outbox,
// so they are delivered after a restart, and waits for deliveries in
// flight.
func (e *Engine) Run(ctx context.Context) {
	e.Load(ctx)
	t := time.NewTicker(e.o.Poll)
	defer t.Stop()
	sendCtx, cancel := context.WithCancel(context.Background())
	for {
		e.safeTick(ctx, sendCtx)
		select {
		case <-ctx.Done():
			cancel()
			e.sending.Wait()
			fin, done := context.WithTimeout(context.Background(), 5*time.Second)
			e.flush(fin)
			done()
			return
		case <-t.C:
		}
	}
}

// safeTick is Tick for Run: a bug in making or sending alerts is
// logged and the next tick tries again; it never takes the daemon, and
// the mail it decides, down with it.
func (e *Engine) safeTick(ctx, sendCtx context.Context) {
	defer func() {
		if p := recover(); p != nil {
			e.o.Log.Error("alerts: panic in the alert engine; carrying on at the next tick", "panic", p)
		}
	}()
	e.Tick(ctx, sendCtx)
}

// Load reads the stored place in the event log and the pending alerts;
// Run calls it if no one has. A caller that records events right after
// starting the engine calls it first, so those events are not taken for
// the log's history.
func (e *Engine) Load(ctx context.Context) {
	if e.loaded {
		return
	}
	e.loaded = true
	cur, err := e.o.Store.AlertCursor(ctx)
	if err != nil {
		e.o.Log.Error("alerts: reading the place in the event log failed; starting at its end", "err", err)
	}
	e.saved = cur
	if cur == 0 && e.o.Last != nil {
		if cur, err = e.o.Last(ctx); err != nil {
			e.o.Log.Error("alerts: finding the end of the event log failed", "err", err)
		}
	}
	e.cursor = cur
	pending, err := e.o.Store.PendingAlerts(ctx, e.cfg().Alerts.QueueSize)
	if err != nil {
		e.o.Log.Error("alerts: reading the pending alerts failed; they are sent after the next restart", "err", err)
	}
	for _, a := range pending {
		e.out = append(e.out, &entry{a: a, saved: true})
	}
	if len(pending) > 0 {
		e.o.Log.Info("alerts: delivering alerts pending from before the restart", "alerts", len(pending))
	}
}

func (e *Engine) cfg() config.Config { return e.o.Config() }

// Tick does one round: read new events, check the queue, close the
// windows that ended, store the alerts made and start the deliveries
// that are due, on sendCtx. Run calls it every poll; tests call it with
// a fake clock.
func (e *Engine) Tick(ctx, sendCtx context.Context) {
	cfg := e.cfg()
	now := e.o.Now()
	trs, err := e.read(ctx, cfg)
	switch {
	case err != nil && !e.readFailing && ctx.Err() == nil:
		// Once, not every second: the store monitor says the rest.
		e.o.Log.Warn("alerts: reading the event log failed; trying again every poll", "err", err)
		e.readFailing = true
	case err == nil && e.readFailing:
		e.o.Log.Info("alerts: reading the event log again")
		e.readFailing = false
	}
	e.mu.Lock()
	trs = append(trs, e.notes...)
	e.notes = nil
	e.mu.Unlock()
	trs = append(trs, e.queueTriggers(cfg)...)
	var made []store.Alert
	for _, tr := range trs {
		made = append(made, e.add(cfg, tr, now)...)
	}
	made = append(made, e.closeWindows(cfg, now, false)...)
	e.enqueue(ctx, cfg, made)
	e.resave(ctx)
	e.deliver(sendCtx, cfg, now)
}

// flush ends every open window at once, storing its digest for
// delivery after the restart, and stores what is unsaved.
func (e *Engine) flush(ctx context.Context) {
	cfg := e.cfg()
	e.enqueue(ctx, cfg, e.closeWindows(cfg, e.o.Now(), true))
	e.resave(ctx)
}

// read returns the triggers in the events after the cursor, moving it.
func (e *Engine) read(ctx context.Context, cfg config.Config) ([]trigger, error) {
	var out []trigger
	for {
		evs, err := e.o.Events(ctx, e.cursor, readBatch)
		if err != nil {
			return out, err
		}
		for _, ev := range evs {
			if tr, ok := classify(cfg, ev); ok {
				out = append(out, tr)
			}
			e.cursor = ev.ID
		}
		if len(evs) < readBatch {
			return out, nil
		}
	}
}

// classify says whether ev is something to alert about, and what.
func classify(cfg config.Config, ev store.Event) (trigger, bool) {
	who := ev.Client
	if who == "" {
		who = ev.User
	}
	if ev.Site != "" {
		who += " (" + ev.Site + ")"
	}
	switch ev.Kind {
	case store.EventLatch:
		// From the latch check, a latch event is a message refused by a
		// latch already alerted about.
		if ev.Check == latch.Name {
			return trigger{}, false
		}
		return trigger{config.AlertLatch, fmt.Sprintf("%s latched by %s: %s", who, ev.Check, ev.Reason)}, true
	case store.EventVirus:
		if ev.Site == "" && !internal(cfg, ev.Client) {
			return trigger{}, false
		}
		return trigger{config.AlertVirus, fmt.Sprintf("virus from inside, %s, sender %s: %s", who, orNone(ev.Sender), ev.Reason)}, true
	case store.EventTrap:
		return trigger{config.AlertTrap, fmt.Sprintf("suspect host %s: %s", who, ev.Reason)}, true
	case store.EventRateTrip:
		return trigger{config.AlertRateTrip, fmt.Sprintf("%s, sender %s: %s", who, orNone(ev.Sender), ev.Reason)}, true
	case store.EventMailbox:
		return trigger{config.AlertMailbox, ev.Reason}, true
	case store.EventSignatures:
		return trigger{config.AlertSignatures, ev.Reason}, true
	case store.EventAdmin:
		if ev.Check == "freeze on" || ev.Check == "freeze off" {
			return trigger{config.AlertFreeze, fmt.Sprintf("%s by %s: %s", ev.Check, orNone(ev.User), ev.Reason)}, true
		}
	}
	// Store events are recorded only once the store writes again; the
	// daemon's store monitor tells the engine at once through Notify.
	return trigger{}, false
}

func orNone(s string) string {
	if s == "" {
		return "<>"
	}
	return s
}

// internal reports whether ip is in the internal networks.
func internal(cfg config.Config, ip string) bool {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, p := range cfg.InternalNetworks {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// queueTriggers compares the queue watcher's newest listing with the
// thresholds: over the message count (once, until it drops back), and
// grown by more than the growth since the previous listing.
func (e *Engine) queueTriggers(cfg config.Config) []trigger {
	if e.o.Queue == nil {
		return nil
	}
	s := e.o.Queue()
	if s.Time.IsZero() || s.Err != "" || s.Time.Equal(e.lastQueue.Time) {
		return nil
	}
	prev := e.lastQueue
	e.lastQueue = s
	q := cfg.Alerts.Queue
	n := s.Summary.Messages
	var out []trigger
	if q.Messages > 0 {
		over := n > q.Messages
		if over && !e.queueOver {
			out = append(out, trigger{config.AlertQueueKind,
				fmt.Sprintf("the mail queue holds %d messages, over the threshold of %d", n, q.Messages)})
		}
		e.queueOver = over
	}
	if q.Growth > 0 && !prev.Time.IsZero() && prev.Err == "" {
		if grew := n - prev.Summary.Messages; grew > q.Growth {
			out = append(out, trigger{config.AlertQueueKind, fmt.Sprintf("the mail queue grew by %d messages in %s, to %d",
				grew, human.Setting(s.Time.Sub(prev.Time)), n)})
		}
	}
	return out
}

// add aggregates one trigger: the first of its kind makes an alert at
// once and opens a window; later ones wait in the window for its digest.
func (e *Engine) add(cfg config.Config, tr trigger, now time.Time) []store.Alert {
	if w := e.windows[tr.kind]; w != nil && now.Before(w.end) {
		if len(w.items) < maxDigestItems {
			w.items = append(w.items, tr.item)
		} else {
			w.more++
		}
		return nil
	}
	e.windows[tr.kind] = &window{end: now.Add(cfg.Alerts.Window.D()), items: []string{tr.item}, sent: 1}
	subject := fmt.Sprintf("mailwarden %s on %s: %s", tr.kind, host(cfg), clean(tr.item))
	return rows(cfg, tr.kind, false, subject, tr.item, []string{tr.item}, now)
}

// closeWindows makes the digests of the windows that ended (all of
// them with all): one alert naming every item that came in the window,
// the one sent at once included, so the digest alone is the whole
// list. A window with a digest opens the next one, so a flood goes on
// as one digest a window; a window with nothing new closes.
func (e *Engine) closeWindows(cfg config.Config, now time.Time, all bool) []store.Alert {
	var out []store.Alert
	for _, kind := range config.AlertKinds() {
		w := e.windows[kind]
		if w == nil || (!all && now.Before(w.end)) {
			continue
		}
		if len(w.items)+w.more <= w.sent {
			delete(e.windows, kind)
			continue
		}
		n := len(w.items) + w.more
		subject := fmt.Sprintf("mailwarden %s on %s: %d in %s", kind, host(cfg), n, human.Setting(cfg.Alerts.Window.D()))
		text := fmt.Sprintf("%d %s alerts within %s, gathered into this digest", n, kind, human.Setting(cfg.Alerts.Window.D()))
		if w.sent > 0 {
			text += " (the first was sent at once)"
		}
		text += ":"
		if w.more > 0 {
			text += fmt.Sprintf(" the first %d are listed, %d more are in the event log (mailwarden events --kind %s).",
				len(w.items), w.more, kind)
		}
		out = append(out, rows(cfg, kind, true, subject, text, w.items, now)...)
		e.windows[kind] = &window{end: now.Add(cfg.Alerts.Window.D())}
	}
	return out
}

// rows is one alert for each receiver of kind's route.
func rows(cfg config.Config, kind string, digest bool, subject, text string, items []string, now time.Time) []store.Alert {
	receivers, severity := cfg.Alerts.Route(kind)
	out := make([]store.Alert, 0, len(receivers))
	for _, r := range receivers {
		out = append(out, store.Alert{Created: now, Kind: kind, Severity: severity, Receiver: r, Digest: digest,
			Subject: subject, Text: text, Items: items, State: store.AlertPending,
			Expires: now.Add(max(cfg.Events.Retention.D(), cfg.Alerts.GiveUpAfter.D()))})
	}
	return out
}

func host(cfg config.Config) string {
	if cfg.Hostname != "" {
		return cfg.Hostname
	}
	return "this host"
}

// enqueue stores alerts with the cursor and puts them in the memory
// outbox. When the store cannot take them they are delivered from
// memory all the same, and stored when it can again (resave). Past the
// queue size, an alert is dropped and counted.
func (e *Engine) enqueue(ctx context.Context, cfg config.Config, alerts []store.Alert) {
	e.mu.Lock()
	defer e.mu.Unlock()
	room := cfg.Alerts.QueueSize - len(e.out)
	var keep, drop []store.Alert
	for _, a := range alerts {
		if room > 0 {
			keep = append(keep, a)
			room--
			continue
		}
		a.State, a.Error = store.AlertFailed, "dropped: the alert queue is full"
		drop = append(drop, a)
		e.o.Metrics.dropped(a.Receiver)
	}
	if len(drop) > 0 {
		e.o.Log.Error("alerts: the alert queue is full; alerts dropped", "dropped", len(drop), "queue_size", cfg.Alerts.QueueSize)
	}
	all := append(keep, drop...)
	if len(all) == 0 && e.cursor == e.saved {
		return
	}
	ids, err := e.o.Store.AddAlerts(ctx, all, e.cursor)
	if err != nil {
		if len(keep) > 0 {
			e.o.Log.Error("alerts: storing alerts failed; delivering them from memory", "alerts", len(keep), "err", err)
		}
		for _, a := range keep {
			e.tempID--
			a.ID = e.tempID
			e.out = append(e.out, &entry{a: a})
		}
		return
	}
	e.saved = max(e.saved, e.cursor)
	for i, a := range keep {
		a.ID = ids[i]
		e.out = append(e.out, &entry{a: a, saved: true})
	}
}

// resave stores the alerts the store could not take before, with what
// happened to them since, and delivery states it could not record.
func (e *Engine) resave(ctx context.Context) {
	e.mu.Lock()
	defer e.mu.Unlock()
	var unsaved []*entry
	for _, en := range e.out {
		if !en.saved && !isBusy(e, en) {
			unsaved = append(unsaved, en)
		}
	}
	if len(unsaved) > 0 {
		as := make([]store.Alert, len(unsaved))
		for i, en := range unsaved {
			as[i] = en.a
		}
		if ids, err := e.o.Store.AddAlerts(ctx, as, e.cursor); err == nil {
			e.saved = max(e.saved, e.cursor)
			for i, en := range unsaved {
				en.a.ID, en.saved, en.dirty = ids[i], true, false
			}
			e.o.Log.Info("alerts: alerts made while the store could not write are stored now", "alerts", len(unsaved))
		}
	}
	for _, en := range e.out {
		if en.saved && en.dirty && !isBusy(e, en) {
			if err := e.o.Store.MarkAlert(ctx, update(en.a)); err == nil {
				en.dirty = false
			}
		}
	}
	// What is done and stored leaves memory.
	kept := e.out[:0]
	for _, en := range e.out {
		if en.a.State == store.AlertPending || !en.saved || en.dirty {
			kept = append(kept, en)
		}
	}
	clear(e.out[len(kept):])
	e.out = kept
}

// isBusy reports whether en is being delivered; the caller holds e.mu.
func isBusy(e *Engine, en *entry) bool {
	return en.a.State == store.AlertPending && e.busy[en.a.Receiver]
}

func update(a store.Alert) store.AlertUpdate {
	return store.AlertUpdate{ID: a.ID, State: a.State, Attempts: a.Attempts, NextTry: a.NextTry, SentAt: a.SentAt, Error: a.Error}
}

// Backoff is the wait after the attempts-th failed delivery: RetryMin,
// doubled with each further failure, at most RetryMax.
func Backoff(a config.Alerts, attempts int) time.Duration {
	d, limit := a.RetryMin.D(), a.RetryMax.D()
	for i := 1; i < attempts && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}

// deliver starts, for each receiver with no delivery in flight and not
// waiting out a failure, one goroutine that sends its due alerts oldest
// first, stopping at the first failure: alerts reach a receiver in the
// order they were made, and one that is down is not hammered.
func (e *Engine) deliver(ctx context.Context, cfg config.Config, now time.Time) {
	receivers := e.o.Receivers(cfg.Alerts, host(cfg))
	e.mu.Lock()
	defer e.mu.Unlock()
	due := map[string][]*entry{}
	blocked := map[string]bool{}
	var order []string
	for _, en := range e.out {
		a := &en.a
		if a.State != store.AlertPending || e.busy[a.Receiver] {
			continue
		}
		if _, ok := receivers[a.Receiver]; !ok {
			a.State, a.Error, en.dirty = store.AlertFailed, "receiver "+a.Receiver+" is no longer configured", true
			continue
		}
		if now.Sub(a.Created) >= cfg.Alerts.GiveUpAfter.D() {
			a.State, en.dirty = store.AlertFailed, true
			a.Error = strings.TrimSpace("gave up after " + human.Setting(cfg.Alerts.GiveUpAfter.D()) + "; last error: " + a.Error)
			continue
		}
		// An alert waiting out its backoff holds back the later ones to
		// the same receiver, which then gets them in order.
		if blocked[a.Receiver] || now.Before(a.NextTry) || now.Before(e.next[a.Receiver]) {
			blocked[a.Receiver] = true
			continue
		}
		if due[a.Receiver] == nil {
			order = append(order, a.Receiver)
		}
		due[a.Receiver] = append(due[a.Receiver], en)
	}
	for _, name := range order {
		e.busy[name] = true
		e.sending.Add(1)
		go e.sendAll(ctx, cfg, name, receivers[name], due[name])
	}
}

// sendAll sends ens to r in order until one fails.
func (e *Engine) sendAll(ctx context.Context, cfg config.Config, name string, r Receiver, ens []*entry) {
	defer e.sending.Done()
	defer func() {
		e.mu.Lock()
		e.busy[name] = false
		e.mu.Unlock()
	}()
	for _, en := range ens {
		e.mu.Lock()
		m := message(cfg, en.a)
		e.mu.Unlock()
		sctx, cancel := context.WithTimeout(ctx, sendTimeout)
		err := e.sendOne(sctx, r, m)
		cancel()
		if ctx.Err() != nil {
			// Shutting down: the alert stays pending for the restart.
			return
		}
		now := e.o.Now()
		e.mu.Lock()
		a := &en.a
		a.Attempts++
		if err == nil {
			a.State, a.SentAt, a.NextTry, a.Error = store.AlertSent, now, time.Time{}, ""
			e.next[name] = time.Time{}
			e.o.Metrics.sent(name)
		} else {
			wait := Backoff(cfg.Alerts, a.Attempts)
			a.NextTry, a.Error = now.Add(wait), err.Error()
			e.next[name] = a.NextTry
			e.o.Metrics.failed(name)
			e.o.Log.Warn("alerts: delivery failed; trying again", "receiver", name, "alert", a.ID, "kind", a.Kind,
				"attempts", a.Attempts, "retry_in", wait, "err", err)
		}
		en.dirty = true
		saved, u := en.saved, update(*a)
		e.mu.Unlock()
		if saved {
			// Recorded at once, so a restart does not send it again;
			// resave retries a record that fails.
			if merr := e.o.Store.MarkAlert(context.Background(), u); merr == nil {
				e.mu.Lock()
				if en.a.Attempts == u.Attempts {
					en.dirty = false
				}
				e.mu.Unlock()
			}
		}
		if err != nil {
			return
		}
	}
}

// sendOne sends m, turning a receiver's panic into an error.
func (e *Engine) sendOne(ctx context.Context, r Receiver, m Message) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("alert: receiver panicked: %v", p)
		}
	}()
	return r.Send(ctx, m)
}

func message(cfg config.Config, a store.Alert) Message {
	id := a.ID
	if id < 0 {
		id = 0
	}
	return Message{ID: id, Kind: a.Kind, Severity: a.Severity, Digest: a.Digest, Subject: a.Subject, Text: a.Text,
		Items: a.Items, Time: a.Created, Host: host(cfg)}
}

// Pending returns how many alerts wait for delivery in memory.
func (e *Engine) Pending() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, en := range e.out {
		if en.a.State == store.AlertPending {
			n++
		}
	}
	return n
}

// Test sends a test alert to every receiver of a and returns each
// one's outcome by name (nil: delivered).
func Test(ctx context.Context, a config.Alerts, hostname string, now time.Time) map[string]error {
	if hostname == "" {
		hostname = "this host"
	}
	m := Message{Kind: "test", Severity: config.SeverityInfo, Time: now, Host: hostname,
		Subject: "mailwarden test alert from " + hostname,
		Text:    "This is a test alert sent by `mailwarden alerts test`. If you read it, this receiver works."}
	out := map[string]error{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for name, r := range Receivers(a, hostname) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := r.Send(ctx, m)
			mu.Lock()
			out[name] = err
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}
