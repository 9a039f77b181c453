package storetest

import (
	"context"
	"fmt"
	"reflect"
	"sync"

	"mailwarden/internal/store"
)

// Faulty wraps a store.Store and makes chosen methods fail, for tests of
// what the daemon, the admin API and the checks do when the store
// breaks: a disk that fills up for one write, a database locked for a
// while, a store that dies under load. Faults are set by method name
// ("AppendEvents", "ListFreezes" ...) and a method with no fault forwards
// to the wrapped store, so the rest keeps the real contract. It counts
// every call, so a test can also check how often a method was used. It
// is safe for concurrent use.
type Faulty struct {
	s store.Store

	mu     sync.Mutex
	calls  map[string]int
	faults []fault
	onCall func(Call)
	// dropAudits hides the audit of store.WithAudit from the wrapped
	// store; see DropAudits.
	dropAudits bool
}

// Call is one call a Faulty saw: the method's name, its arguments after
// the context, and what it returned, the error last (the injected one
// for a failed call).
type Call struct {
	Method  string
	Args    []any
	Results []any
}

// Err returns the error the call returned.
func (c Call) Err() error {
	err, _ := c.Results[len(c.Results)-1].(error)
	return err
}

// fault fails the calls of method numbered from through to, counted
// from the wrapping; to 0 means with no end. An empty method is every
// method.
type fault struct {
	method   string
	from, to int
	err      error
	panicV   any
}

// WithFaults wraps s; until a fault is set, every call goes through.
func WithFaults(s store.Store) *Faulty {
	return &Faulty{s: s, calls: make(map[string]int)}
}

var _ store.Store = (*Faulty)(nil)

// methodExists reports whether store.Store has a method named m, so a
// misspelt name fails the test that set it instead of never firing.
func methodExists(m string) bool {
	_, ok := reflect.TypeFor[store.Store]().MethodByName(m)
	return ok
}

func (f *Faulty) add(ft fault) {
	if ft.method != "" && !methodExists(ft.method) {
		panic(fmt.Sprintf("storetest: store.Store has no method %q", ft.method))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults = append(f.faults, ft)
}

// FailOn makes every later call of method return err, until Heal.
func (f *Faulty) FailOn(method string, err error) {
	f.mu.Lock()
	n := f.calls[method]
	f.mu.Unlock()
	f.add(fault{method: method, from: n + 1, err: err})
}

// FailCall makes the nth call of method (counting from 1 since the
// store was wrapped) return err, and no other.
func (f *Faulty) FailCall(method string, n int, err error) {
	f.add(fault{method: method, from: n, to: n, err: err})
}

// FailAfter lets the next n calls of method through and makes every
// call after them return err, until Heal: a store that breaks partway
// through a run.
func (f *Faulty) FailAfter(method string, n int, err error) {
	f.mu.Lock()
	done := f.calls[method]
	f.mu.Unlock()
	f.add(fault{method: method, from: done + n + 1, err: err})
}

// FailAll makes every later call of every method return err, until
// Heal: the store is down.
func (f *Faulty) FailAll(err error) {
	f.add(fault{from: 1, err: err})
}

// PanicOn makes every later call of method panic with v, until Heal, as
// a bug in a backend would. A nil v panics with a message instead.
func (f *Faulty) PanicOn(method string, v any) {
	if v == nil {
		v = "storetest: panic injected into " + method
	}
	f.mu.Lock()
	n := f.calls[method]
	f.mu.Unlock()
	f.add(fault{method: method, from: n + 1, panicV: v})
}

// DropAudits hides from the wrapped store the audit a context carries
// (store.WithAudit), until Heal: the store then acts as a backend that
// does not record admin events with their change, which leaves
// recording them to the event log (events.Log.Audit) and lets a test
// reach that path.
func (f *Faulty) DropAudits() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dropAudits = true
}

// Heal removes every fault; calls go through again.
func (f *Faulty) Heal() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults = nil
	f.dropAudits = false
}

// pass returns the context to hand the wrapped store.
func (f *Faulty) pass(ctx context.Context) context.Context {
	f.mu.Lock()
	drop := f.dropAudits
	f.mu.Unlock()
	if drop {
		return store.WithAudit(ctx, nil)
	}
	return ctx
}

// Calls returns how many times method was called since the wrapping,
// failed calls included.
func (f *Faulty) Calls(method string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[method]
}

// OnCall has fn called with every call once it returns, failed calls
// included, from the calling goroutine: a test can spy on what code
// asked of the store (units a rate limiter charged, the time an expiry
// runner passed) or pace a goroutine it does not control by blocking in
// fn. nil removes it.
func (f *Faulty) OnCall(fn func(Call)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.onCall = fn
}

// Unwrap returns the wrapped store.
func (f *Faulty) Unwrap() store.Store { return f.s }

// enter counts a call of method and returns the error to fail it with,
// or panics as a fault says; nil lets the call through.
func (f *Faulty) enter(method string) error {
	f.mu.Lock()
	f.calls[method]++
	n := f.calls[method]
	var hit *fault
	for i := range f.faults {
		ft := &f.faults[i]
		if (ft.method == "" || ft.method == method) && n >= ft.from && (ft.to == 0 || n <= ft.to) {
			hit = ft
			break
		}
	}
	var ft fault
	if hit != nil {
		ft = *hit
	}
	f.mu.Unlock()
	if hit == nil {
		return nil
	}
	if ft.panicV != nil {
		panic(ft.panicV)
	}
	return ft.err
}

// done reports a returned call to the OnCall hook, if one is set.
func (f *Faulty) done(method string, args []any, results ...any) {
	f.mu.Lock()
	hook := f.onCall
	f.mu.Unlock()
	if hook != nil {
		hook(Call{Method: method, Args: args, Results: results})
	}
}
