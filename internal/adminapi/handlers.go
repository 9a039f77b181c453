package adminapi

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"mailwarden/internal/store"
)

func (s *Server) listLatches(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := store.LatchFilter{Kind: q.Get("kind"), Key: q.Get("key")}
	var err error
	if f.Active, err = parseBool(q.Get("active")); err != nil {
		writeError(w, http.StatusBadRequest, "active: "+err.Error())
		return
	}
	if f.Kind != "" && f.Kind != store.LatchClient && f.Kind != store.LatchUser {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("kind %q: want %s or %s", f.Kind, store.LatchClient, store.LatchUser))
		return
	}
	if f.Limit, err = parseLimit(q.Get("limit"), 0, 0); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	now := s.now()
	ls, err := s.be.ListLatches(r.Context(), f, now)
	if err != nil {
		s.storeError(w, "listing latches", err)
		return
	}
	out := make([]Latch, 0, len(ls))
	for _, l := range ls {
		out = append(out, LatchFromStore(l, now))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) getLatch(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	l, err := s.be.GetLatch(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no latch with id %q (latch list shows them)", id))
		return
	}
	if err != nil {
		s.storeError(w, "reading latch "+id, err)
		return
	}
	writeJSON(w, http.StatusOK, LatchFromStore(l, s.now()))
}

// clearLatch ends a latch. A note is required: the audit trail must say
// why a machine was let back out (PRODUCT.md §3, "remember who cleared
// them and why").
func (s *Server) clearLatch(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var req ClearRequest
	if err := decode(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	note, err := checkNote(req.Note)
	if err == nil && note == "" {
		err = errors.New("a note saying why is required to clear a latch")
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	who, now := s.who(r), s.now()
	l, err := s.be.ClearLatch(r.Context(), id, who, note, now)
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, fmt.Sprintf("no latch with id %q (latch list shows them)", id))
		return
	case errors.Is(err, store.ErrNotActive):
		writeError(w, http.StatusConflict, s.notActive(r, id, now))
		return
	case err != nil:
		s.storeError(w, "clearing latch "+id, err)
		return
	}
	ev := store.Event{Check: "latch clear", User: who, Site: l.Site,
		Reason: fmt.Sprintf("cleared latch %s on %s %s (%s): %s", l.ID, l.Kind, l.Key, l.Rule, note)}
	if l.Kind == store.LatchClient {
		// So that events --host shows when the machine was let out again.
		ev.Client = l.Key
	}
	if err := s.audit(r.Context(), now, ev, "latch", l.ID, "kind", l.Kind, "key", l.Key); err != nil {
		writeError(w, http.StatusInternalServerError, fmt.Sprintf("latch %s was cleared, but %v", l.ID, err))
		return
	}
	writeJSON(w, http.StatusOK, LatchFromStore(l, now))
}

// notActive explains why a latch cannot be cleared.
func (s *Server) notActive(r *http.Request, id string, now time.Time) string {
	l, err := s.be.GetLatch(r.Context(), id)
	switch {
	case err != nil:
		return fmt.Sprintf("latch %s is not active", id)
	case !l.ClearedAt.IsZero():
		return fmt.Sprintf("latch %s is not active: cleared %s by %s (%s)", id,
			l.ClearedAt.Format(time.RFC3339), l.ClearedBy, l.ClearNote)
	case !l.Expires.IsZero() && !now.Before(l.Expires):
		return fmt.Sprintf("latch %s is not active: it expired %s", id, l.Expires.Format(time.RFC3339))
	}
	return fmt.Sprintf("latch %s is not active", id)
}

func (s *Server) listFreezes(w http.ResponseWriter, r *http.Request) {
	fs, err := s.be.ListFreezes(r.Context())
	if err != nil {
		s.storeError(w, "listing freezes", err)
		return
	}
	out := make([]Freeze, 0, len(fs))
	for _, f := range fs {
		out = append(out, FreezeFromStore(f))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) setFreeze(w http.ResponseWriter, r *http.Request) {
	var req FreezeRequest
	if err := decode(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	scope, value, err := NormalizeFreeze(req.Scope, req.Value)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	note, err := checkNote(req.Note)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	who, now := s.who(r), s.now()
	f := store.Freeze{Scope: scope, Value: value, Since: now, By: who, Note: note}
	if err := s.be.SetFreeze(r.Context(), f); err != nil {
		s.storeError(w, "setting the freeze on "+DescribeScope(scope, value), err)
		return
	}
	ev := store.Event{Check: "freeze on", User: who,
		Reason: withNote("froze "+DescribeScope(scope, value), note)}
	if err := s.audit(r.Context(), now, ev, "scope", scope, "value", value); err != nil {
		writeError(w, http.StatusInternalServerError, fmt.Sprintf("the freeze is in force, but %v", err))
		return
	}
	writeJSON(w, http.StatusOK, FreezeFromStore(f))
}

func (s *Server) liftFreeze(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	scope, value, err := NormalizeFreeze(q.Get("scope"), q.Get("value"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	note, err := checkNote(q.Get("note"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	what := DescribeScope(scope, value)
	fs, err := s.be.ListFreezes(r.Context())
	if err != nil {
		s.storeError(w, "listing freezes", err)
		return
	}
	var lifted store.Freeze
	found := false
	for _, f := range fs {
		if f.Scope == scope && f.Value == value {
			lifted, found = f, true
		}
	}
	if found {
		err = s.be.LiftFreeze(r.Context(), scope, value)
	}
	if !found || errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no freeze on %s (freeze status lists them)", what))
		return
	}
	if err != nil {
		s.storeError(w, "lifting the freeze on "+what, err)
		return
	}
	who, now := s.who(r), s.now()
	ev := store.Event{Check: "freeze off", User: who, Reason: withNote(fmt.Sprintf(
		"lifted the freeze on %s (set %s by %s)", what, lifted.Since.Format(time.RFC3339), lifted.By), note)}
	if err := s.audit(r.Context(), now, ev, "scope", scope, "value", value); err != nil {
		writeError(w, http.StatusInternalServerError, fmt.Sprintf("the freeze is lifted, but %v", err))
		return
	}
	writeJSON(w, http.StatusOK, FreezeFromStore(lifted))
}

func (s *Server) listEvents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := store.EventFilter{Kind: q.Get("kind"), User: q.Get("user")}
	var err error
	bad := func(err error) { writeError(w, http.StatusBadRequest, err.Error()) }
	if f.Since, err = parseTime("since", q.Get("since")); err != nil {
		bad(err)
		return
	}
	if f.Until, err = parseTime("until", q.Get("until")); err != nil {
		bad(err)
		return
	}
	if f.Kind != "" && !knownKind(f.Kind) {
		bad(fmt.Errorf("unknown event kind %q (want one of %s)", f.Kind, strings.Join(eventKinds(), ", ")))
		return
	}
	if c := q.Get("client"); c != "" {
		a, err := netip.ParseAddr(c)
		if err != nil {
			bad(fmt.Errorf("client %q is not an IP address", c))
			return
		}
		f.Client = a.Unmap().String()
	}
	if f.Limit, err = parseLimit(q.Get("limit"), DefaultEventLimit, MaxEventLimit); err != nil {
		bad(err)
		return
	}
	evs, err := s.be.QueryEvents(r.Context(), f)
	if err != nil {
		s.storeError(w, "querying events", err)
		return
	}
	out := make([]Event, 0, len(evs))
	for _, e := range evs {
		out = append(out, EventFromStore(e))
	}
	writeJSON(w, http.StatusOK, out)
}
