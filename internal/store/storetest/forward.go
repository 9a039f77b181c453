package storetest

import (
	"context"
	"time"

	"mailwarden/internal/store"
)

// The methods below are store.Store's, each forwarding to the wrapped
// store unless a fault says otherwise, and reporting the call to the
// OnCall hook. A call that panics by a fault reports nothing.

func (f *Faulty) GetTriplet(ctx context.Context, client string, sender string, recipient string, now time.Time) (t store.Triplet, err error) {
	err = f.enter("GetTriplet")
	defer func() { f.done("GetTriplet", []any{client, sender, recipient, now}, t, err) }()
	if err != nil {
		return
	}
	t, err = f.s.GetTriplet(f.pass(ctx), client, sender, recipient, now)
	return
}

func (f *Faulty) PutTriplet(ctx context.Context, t store.Triplet) (err error) {
	err = f.enter("PutTriplet")
	defer func() { f.done("PutTriplet", []any{t}, err) }()
	if err != nil {
		return
	}
	err = f.s.PutTriplet(f.pass(ctx), t)
	return
}

func (f *Faulty) DeleteTriplet(ctx context.Context, client string, sender string, recipient string) (err error) {
	err = f.enter("DeleteTriplet")
	defer func() { f.done("DeleteTriplet", []any{client, sender, recipient}, err) }()
	if err != nil {
		return
	}
	err = f.s.DeleteTriplet(f.pass(ctx), client, sender, recipient)
	return
}

func (f *Faulty) ListTriplets(ctx context.Context, flt store.TripletFilter, now time.Time) (ts []store.Triplet, err error) {
	err = f.enter("ListTriplets")
	defer func() { f.done("ListTriplets", []any{flt, now}, ts, err) }()
	if err != nil {
		return
	}
	ts, err = f.s.ListTriplets(f.pass(ctx), flt, now)
	return
}

func (f *Faulty) AddClientPass(ctx context.Context, client string, now time.Time, expires time.Time) (n int, err error) {
	err = f.enter("AddClientPass")
	defer func() { f.done("AddClientPass", []any{client, now, expires}, n, err) }()
	if err != nil {
		return
	}
	n, err = f.s.AddClientPass(f.pass(ctx), client, now, expires)
	return
}

func (f *Faulty) ClientPasses(ctx context.Context, client string, now time.Time) (n int, err error) {
	err = f.enter("ClientPasses")
	defer func() { f.done("ClientPasses", []any{client, now}, n, err) }()
	if err != nil {
		return
	}
	n, err = f.s.ClientPasses(f.pass(ctx), client, now)
	return
}

func (f *Faulty) GreylistStats(ctx context.Context, now time.Time, whitelistAfter int) (st store.GreylistStats, err error) {
	err = f.enter("GreylistStats")
	defer func() { f.done("GreylistStats", []any{now, whitelistAfter}, st, err) }()
	if err != nil {
		return
	}
	st, err = f.s.GreylistStats(f.pass(ctx), now, whitelistAfter)
	return
}

func (f *Faulty) ListClientPasses(ctx context.Context, now time.Time, minPasses int, limit int) (cs []store.ClientPass, err error) {
	err = f.enter("ListClientPasses")
	defer func() { f.done("ListClientPasses", []any{now, minPasses, limit}, cs, err) }()
	if err != nil {
		return
	}
	cs, err = f.s.ListClientPasses(f.pass(ctx), now, minPasses, limit)
	return
}

func (f *Faulty) AddLatch(ctx context.Context, l store.Latch, now time.Time) (out store.Latch, err error) {
	err = f.enter("AddLatch")
	defer func() { f.done("AddLatch", []any{l, now}, out, err) }()
	if err != nil {
		return
	}
	out, err = f.s.AddLatch(f.pass(ctx), l, now)
	return
}

func (f *Faulty) AddLatchRefusal(ctx context.Context, id string, now time.Time) (out store.Latch, err error) {
	err = f.enter("AddLatchRefusal")
	defer func() { f.done("AddLatchRefusal", []any{id, now}, out, err) }()
	if err != nil {
		return
	}
	out, err = f.s.AddLatchRefusal(f.pass(ctx), id, now)
	return
}

func (f *Faulty) ActiveLatch(ctx context.Context, kind string, key string, now time.Time) (out store.Latch, err error) {
	err = f.enter("ActiveLatch")
	defer func() { f.done("ActiveLatch", []any{kind, key, now}, out, err) }()
	if err != nil {
		return
	}
	out, err = f.s.ActiveLatch(f.pass(ctx), kind, key, now)
	return
}

func (f *Faulty) GetLatch(ctx context.Context, id string) (out store.Latch, err error) {
	err = f.enter("GetLatch")
	defer func() { f.done("GetLatch", []any{id}, out, err) }()
	if err != nil {
		return
	}
	out, err = f.s.GetLatch(f.pass(ctx), id)
	return
}

func (f *Faulty) ListLatches(ctx context.Context, flt store.LatchFilter, now time.Time) (ls []store.Latch, err error) {
	err = f.enter("ListLatches")
	defer func() { f.done("ListLatches", []any{flt, now}, ls, err) }()
	if err != nil {
		return
	}
	ls, err = f.s.ListLatches(f.pass(ctx), flt, now)
	return
}

func (f *Faulty) ClearLatch(ctx context.Context, id string, by string, note string, now time.Time) (out store.Latch, err error) {
	err = f.enter("ClearLatch")
	defer func() { f.done("ClearLatch", []any{id, by, note, now}, out, err) }()
	if err != nil {
		return
	}
	out, err = f.s.ClearLatch(f.pass(ctx), id, by, note, now)
	return
}

func (f *Faulty) SetFreeze(ctx context.Context, fr store.Freeze) (err error) {
	err = f.enter("SetFreeze")
	defer func() { f.done("SetFreeze", []any{fr}, err) }()
	if err != nil {
		return
	}
	err = f.s.SetFreeze(f.pass(ctx), fr)
	return
}

func (f *Faulty) LiftFreeze(ctx context.Context, scope string, value string) (err error) {
	err = f.enter("LiftFreeze")
	defer func() { f.done("LiftFreeze", []any{scope, value}, err) }()
	if err != nil {
		return
	}
	err = f.s.LiftFreeze(f.pass(ctx), scope, value)
	return
}

func (f *Faulty) ListFreezes(ctx context.Context) (fs []store.Freeze, err error) {
	err = f.enter("ListFreezes")
	defer func() { f.done("ListFreezes", []any{}, fs, err) }()
	if err != nil {
		return
	}
	fs, err = f.s.ListFreezes(f.pass(ctx))
	return
}

func (f *Faulty) TakeRate(ctx context.Context, key string, n int, limit int, period time.Duration, now time.Time) (allowed bool, retryAfter time.Duration, err error) {
	err = f.enter("TakeRate")
	defer func() { f.done("TakeRate", []any{key, n, limit, period, now}, allowed, retryAfter, err) }()
	if err != nil {
		return
	}
	allowed, retryAfter, err = f.s.TakeRate(f.pass(ctx), key, n, limit, period, now)
	return
}

func (f *Faulty) AppendEvents(ctx context.Context, evs ...store.Event) (err error) {
	err = f.enter("AppendEvents")
	defer func() { f.done("AppendEvents", []any{evs}, err) }()
	if err != nil {
		return
	}
	err = f.s.AppendEvents(f.pass(ctx), evs...)
	return
}

func (f *Faulty) QueryEvents(ctx context.Context, flt store.EventFilter) (evs []store.Event, err error) {
	err = f.enter("QueryEvents")
	defer func() { f.done("QueryEvents", []any{flt}, evs, err) }()
	if err != nil {
		return
	}
	evs, err = f.s.QueryEvents(f.pass(ctx), flt)
	return
}

func (f *Faulty) AddTrapHits(ctx context.Context, recs ...store.TrapRecord) (err error) {
	err = f.enter("AddTrapHits")
	defer func() { f.done("AddTrapHits", []any{recs}, err) }()
	if err != nil {
		return
	}
	err = f.s.AddTrapHits(f.pass(ctx), recs...)
	return
}

func (f *Faulty) TrapRecords(ctx context.Context, client string) (recs []store.TrapRecord, err error) {
	err = f.enter("TrapRecords")
	defer func() { f.done("TrapRecords", []any{client}, recs, err) }()
	if err != nil {
		return
	}
	recs, err = f.s.TrapRecords(f.pass(ctx), client)
	return
}

func (f *Faulty) RecordPort(ctx context.Context, p store.PortFinding) (err error) {
	err = f.enter("RecordPort")
	defer func() { f.done("RecordPort", []any{p}, err) }()
	if err != nil {
		return
	}
	err = f.s.RecordPort(f.pass(ctx), p)
	return
}

func (f *Faulty) Ports(ctx context.Context, client string) (ps []store.PortState, err error) {
	err = f.enter("Ports")
	defer func() { f.done("Ports", []any{client}, ps, err) }()
	if err != nil {
		return
	}
	ps, err = f.s.Ports(f.pass(ctx), client)
	return
}

func (f *Faulty) OpenPorts(ctx context.Context, client string) (ps []store.PortState, err error) {
	err = f.enter("OpenPorts")
	defer func() { f.done("OpenPorts", []any{client}, ps, err) }()
	if err != nil {
		return
	}
	ps, err = f.s.OpenPorts(f.pass(ctx), client)
	return
}

func (f *Faulty) RecordLogin(ctx context.Context, l store.MailLogin) (err error) {
	err = f.enter("RecordLogin")
	defer func() { f.done("RecordLogin", []any{l}, err) }()
	if err != nil {
		return
	}
	err = f.s.RecordLogin(f.pass(ctx), l)
	return
}

func (f *Faulty) LastLogin(ctx context.Context, client string) (l store.MailLogin, err error) {
	err = f.enter("LastLogin")
	defer func() { f.done("LastLogin", []any{client}, l, err) }()
	if err != nil {
		return
	}
	l, err = f.s.LastLogin(f.pass(ctx), client)
	return
}

func (f *Faulty) LastLogins(ctx context.Context) (ls []store.MailLogin, err error) {
	err = f.enter("LastLogins")
	defer func() { f.done("LastLogins", []any{}, ls, err) }()
	if err != nil {
		return
	}
	ls, err = f.s.LastLogins(f.pass(ctx))
	return
}

func (f *Faulty) AddHostNote(ctx context.Context, n store.HostNote) (err error) {
	err = f.enter("AddHostNote")
	defer func() { f.done("AddHostNote", []any{n}, err) }()
	if err != nil {
		return
	}
	err = f.s.AddHostNote(f.pass(ctx), n)
	return
}

func (f *Faulty) HostNotes(ctx context.Context, client string) (ns []store.HostNote, err error) {
	err = f.enter("HostNotes")
	defer func() { f.done("HostNotes", []any{client}, ns, err) }()
	if err != nil {
		return
	}
	ns, err = f.s.HostNotes(f.pass(ctx), client)
	return
}

func (f *Faulty) AddDisinfection(ctx context.Context, d store.Disinfection) (err error) {
	err = f.enter("AddDisinfection")
	defer func() { f.done("AddDisinfection", []any{d}, err) }()
	if err != nil {
		return
	}
	err = f.s.AddDisinfection(f.pass(ctx), d)
	return
}

func (f *Faulty) Disinfections(ctx context.Context, client string) (ds []store.Disinfection, err error) {
	err = f.enter("Disinfections")
	defer func() { f.done("Disinfections", []any{client}, ds, err) }()
	if err != nil {
		return
	}
	ds, err = f.s.Disinfections(f.pass(ctx), client)
	return
}

func (f *Faulty) AddUser(ctx context.Context, u store.User) (err error) {
	err = f.enter("AddUser")
	defer func() { f.done("AddUser", []any{u}, err) }()
	if err != nil {
		return
	}
	err = f.s.AddUser(f.pass(ctx), u)
	return
}

func (f *Faulty) UpdateUser(ctx context.Context, u store.User) (err error) {
	err = f.enter("UpdateUser")
	defer func() { f.done("UpdateUser", []any{u}, err) }()
	if err != nil {
		return
	}
	err = f.s.UpdateUser(f.pass(ctx), u)
	return
}

func (f *Faulty) GetUser(ctx context.Context, name string) (u store.User, err error) {
	err = f.enter("GetUser")
	defer func() { f.done("GetUser", []any{name}, u, err) }()
	if err != nil {
		return
	}
	u, err = f.s.GetUser(f.pass(ctx), name)
	return
}

func (f *Faulty) DeleteUser(ctx context.Context, name string) (err error) {
	err = f.enter("DeleteUser")
	defer func() { f.done("DeleteUser", []any{name}, err) }()
	if err != nil {
		return
	}
	err = f.s.DeleteUser(f.pass(ctx), name)
	return
}

func (f *Faulty) ListUsers(ctx context.Context) (us []store.User, err error) {
	err = f.enter("ListUsers")
	defer func() { f.done("ListUsers", []any{}, us, err) }()
	if err != nil {
		return
	}
	us, err = f.s.ListUsers(f.pass(ctx))
	return
}

func (f *Faulty) AddAlerts(ctx context.Context, alerts []store.Alert, cursor int64) (ids []int64, err error) {
	err = f.enter("AddAlerts")
	defer func() { f.done("AddAlerts", []any{alerts, cursor}, ids, err) }()
	if err != nil {
		return
	}
	ids, err = f.s.AddAlerts(f.pass(ctx), alerts, cursor)
	return
}

func (f *Faulty) AlertCursor(ctx context.Context) (id int64, err error) {
	err = f.enter("AlertCursor")
	defer func() { f.done("AlertCursor", []any{}, id, err) }()
	if err != nil {
		return
	}
	id, err = f.s.AlertCursor(f.pass(ctx))
	return
}

func (f *Faulty) PendingAlerts(ctx context.Context, limit int) (as []store.Alert, err error) {
	err = f.enter("PendingAlerts")
	defer func() { f.done("PendingAlerts", []any{limit}, as, err) }()
	if err != nil {
		return
	}
	as, err = f.s.PendingAlerts(f.pass(ctx), limit)
	return
}

func (f *Faulty) MarkAlert(ctx context.Context, u store.AlertUpdate) (err error) {
	err = f.enter("MarkAlert")
	defer func() { f.done("MarkAlert", []any{u}, err) }()
	if err != nil {
		return
	}
	err = f.s.MarkAlert(f.pass(ctx), u)
	return
}

func (f *Faulty) RecentAlerts(ctx context.Context, limit int) (as []store.Alert, err error) {
	err = f.enter("RecentAlerts")
	defer func() { f.done("RecentAlerts", []any{limit}, as, err) }()
	if err != nil {
		return
	}
	as, err = f.s.RecentAlerts(f.pass(ctx), limit)
	return
}

func (f *Faulty) Expire(ctx context.Context, now time.Time) (n int, err error) {
	err = f.enter("Expire")
	defer func() { f.done("Expire", []any{now}, n, err) }()
	if err != nil {
		return
	}
	n, err = f.s.Expire(f.pass(ctx), now)
	return
}

func (f *Faulty) Ping(ctx context.Context) (err error) {
	err = f.enter("Ping")
	defer func() { f.done("Ping", []any{}, err) }()
	if err != nil {
		return
	}
	err = f.s.Ping(f.pass(ctx))
	return
}

func (f *Faulty) Probe(ctx context.Context) (err error) {
	err = f.enter("Probe")
	defer func() { f.done("Probe", []any{}, err) }()
	if err != nil {
		return
	}
	err = f.s.Probe(f.pass(ctx))
	return
}

// Close closes the wrapped store unless a fault says otherwise.
func (f *Faulty) Close() (err error) {
	err = f.enter("Close")
	defer func() { f.done("Close", nil, err) }()
	if err != nil {
		return err
	}
	err = f.s.Close()
	return err
}
