package adminapi

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"

	"mailwarden/internal/events"
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
	writeList(w, ls, func(l store.Latch) Latch { return LatchFromStore(l, now) })
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

func (s *Server) clearLatch(w http.ResponseWriter, r *http.Request) {
	serveAction(w, r, func(req ClearRequest) (Latch, error) {
		return s.ClearLatch(r.Context(), s.who(r), r.PathValue("id"), req.Note)
	})
}

func (s *Server) listFreezes(w http.ResponseWriter, r *http.Request) {
	fs, err := s.be.ListFreezes(r.Context())
	if err != nil {
		s.storeError(w, "listing freezes", err)
		return
	}
	writeList(w, fs, FreezeFromStore)
}

func (s *Server) setFreeze(w http.ResponseWriter, r *http.Request) {
	serveAction(w, r, func(req FreezeRequest) (Freeze, error) {
		return s.SetFreeze(r.Context(), s.who(r), req)
	})
}

func (s *Server) liftFreeze(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f, err := s.LiftFreeze(r.Context(), s.who(r), q.Get("scope"), q.Get("value"), q.Get("note"))
	if err != nil {
		writeActionError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, f)
}

func (s *Server) allowTriplet(w http.ResponseWriter, r *http.Request) {
	serveAction(w, r, func(req AllowRequest) (AllowRequest, error) {
		return s.AllowTriplet(r.Context(), s.who(r), req)
	})
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
	if f.Kind != "" && !events.KnownKind(f.Kind) {
		bad(fmt.Errorf("unknown event kind %q (want one of %s)", f.Kind, strings.Join(events.Kinds(), ", ")))
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
	writeList(w, evs, EventFromStore)
}
