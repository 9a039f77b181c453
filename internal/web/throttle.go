package web

import (
	"sync"
	"time"
)

// maxThrottleEntries bounds each of the throttle's tables, so a flood of
// made-up names from made-up addresses cannot grow memory without end.
const maxThrottleEntries = 10000

// limits are the login throttle's settings (web.login_max_failures and
// web.login_lockout), read from the live configuration per attempt.
type limits struct {
	max     int
	lockout time.Duration
}

// strike counts one name's or address's failed logins. A failure within
// lockout of the previous one adds to the count; a longer pause starts it
// again. Once the count reaches the limit, logins are refused until
// lockout has passed since the last failure.
type strike struct {
	count int
	last  time.Time
}

func (st strike) locked(now time.Time, lim limits) bool {
	return st.count >= lim.max && now.Sub(st.last) < lim.lockout
}

// throttle counts failed logins per lowercased user name and per client
// address.
type throttle struct {
	mu    sync.Mutex
	max   int
	names map[string]strike
	addrs map[string]strike
}

func newThrottle(max int) *throttle {
	return &throttle{max: max, names: make(map[string]strike), addrs: make(map[string]strike)}
}

// reserve counts a login attempt as failed before its password is
// compared, or refuses it when the name or the address is locked. The
// check and the count are one step under the lock, so attempts arriving
// together cannot all pass the check while the first one's comparison
// runs: at most lim.max passwords are ever compared per name and per
// address within a lockout. last reports that this attempt took the
// final one, so its failure is what locks.
func (t *throttle) reserve(name, addr string, now time.Time, lim limits) (ok, last bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.names[name].locked(now, lim) || t.addrs[addr].locked(now, lim) {
		return false, false
	}
	a := t.add(t.names, name, now, lim)
	b := t.add(t.addrs, addr, now, lim)
	return true, a || b
}

// refund takes back a reservation whose password was never compared
// (the password checks were all busy).
func (t *throttle) refund(name, addr string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	uncount(t.names, name)
	uncount(t.addrs, addr)
}

// succeed forgets the name's failures and takes back the address's
// reservation for this attempt. The address's earlier failures stay: one
// account the attacker owns must not reset the count of their guesses at
// others.
func (t *throttle) succeed(name, addr string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.names, name)
	uncount(t.addrs, addr)
}

// uncount takes one attempt off key's count.
func uncount(m map[string]strike, key string) {
	if st, ok := m[key]; ok && st.count > 0 {
		st.count--
		m[key] = st
	}
}

func (t *throttle) add(m map[string]strike, key string, now time.Time, lim limits) bool {
	st, ok := m[key]
	if !ok && len(m) >= t.max {
		t.evict(m, now, lim)
	}
	if now.Sub(st.last) >= lim.lockout {
		st.count = 0
	}
	st.count++
	st.last = now
	m[key] = st
	return st.locked(now, lim)
}

// evict makes room in a full table: every entry whose failures no longer
// count goes, and if none did, the oldest entry that is not locked (or,
// with every entry locked, the oldest of all).
func (t *throttle) evict(m map[string]strike, now time.Time, lim limits) {
	for k, st := range m {
		if now.Sub(st.last) >= lim.lockout {
			delete(m, k)
		}
	}
	if len(m) < t.max {
		return
	}
	var victim string
	var victimLocked, found bool
	var at time.Time
	for k, st := range m {
		l := st.locked(now, lim)
		better := !found || (victimLocked && !l) || (victimLocked == l && st.last.Before(at))
		if better {
			victim, victimLocked, at, found = k, l, st.last, true
		}
	}
	delete(m, victim)
}

// size returns the number of names and addresses held, for tests.
func (t *throttle) size() (names, addrs int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.names), len(t.addrs)
}
