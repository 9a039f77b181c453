package web

import (
	"net/http"
	"time"

	"mailwarden/internal/adminapi"
	"mailwarden/internal/store"
)

// listLimit bounds each table the latches and greylist pages show, so a
// page stays readable and quick on the day there are a million triplets;
// the CSV export and the JSON API give the rest.
const listLimit = 500

// latchesView is the latches page's data.
type latchesView struct {
	All     bool // cleared and expired latches too
	Latches []adminapi.Latch
	Limit   int
	Capped  bool
}

// CSVURL is the CSV export of the same list.
func (v latchesView) CSVURL() string {
	if v.All {
		return "/latches.csv?all=1"
	}
	return "/latches.csv"
}

func (s *Server) latchesPage(w http.ResponseWriter, r *http.Request, u *sessionUser) {
	all := r.URL.Query().Get("all") == "1"
	ls, err := s.listLatches(r, all, listLimit)
	if err != nil {
		s.serverError(w, r, u, "listing latches", err)
		return
	}
	v := latchesView{All: all, Latches: ls, Limit: listLimit, Capped: len(ls) >= listLimit}
	s.render(w, r, http.StatusOK, "latches.html", "Latches", "latches", u, v)
}

// listLatches returns the active latches, or all of them, newest first.
func (s *Server) listLatches(r *http.Request, all bool, limit int) ([]adminapi.Latch, error) {
	now := s.now()
	ls, err := s.store.ListLatches(r.Context(), store.LatchFilter{Active: !all, Limit: limit}, now)
	if err != nil {
		return nil, err
	}
	out := make([]adminapi.Latch, 0, len(ls))
	for _, l := range ls {
		out = append(out, adminapi.LatchFromStore(l, now))
	}
	return out, nil
}

// greylistView is the greylist page's data.
type greylistView struct {
	Enabled   bool
	Delay     time.Duration
	Stats     store.GreylistStats
	Pending   []store.Triplet
	Passed    []store.Triplet
	Limit     int
	PassesOff bool // this store cannot list auto-whitelisted clients
	AutoOff   bool // auto_whitelist_after is 0
	MinPasses int
	Whitelist []store.ClientPass

	StaticClients, ClientFiles       []string
	StaticRecipients, RecipientFiles []string
}

// Capped reports whether a table shows only the newest Limit rows.
func (v greylistView) Capped(n int) bool { return n >= v.Limit }

func (s *Server) greylistPage(w http.ResponseWriter, r *http.Request, u *sessionUser) {
	ctx, now, g := r.Context(), s.now(), s.config().Greylist
	v := greylistView{Enabled: g.Enabled, Delay: g.Delay.D(), Limit: listLimit,
		MinPasses: g.AutoWhitelistAfter, AutoOff: g.AutoWhitelistAfter <= 0, PassesOff: s.passes == nil,
		StaticClients: g.WhitelistClients, ClientFiles: g.WhitelistClientFiles,
		StaticRecipients: g.WhitelistRecipients, RecipientFiles: g.WhitelistRecipientFiles}
	var err error
	if v.Stats, err = s.store.GreylistStats(ctx, now, max(g.AutoWhitelistAfter, 1)); err != nil {
		s.serverError(w, r, u, "counting greylist triplets", err)
		return
	}
	if v.Pending, err = s.store.ListTriplets(ctx, store.TripletFilter{Pending: true, Limit: listLimit}, now); err != nil {
		s.serverError(w, r, u, "listing pending triplets", err)
		return
	}
	if v.Passed, err = s.store.ListTriplets(ctx, store.TripletFilter{Passed: true, Limit: listLimit}, now); err != nil {
		s.serverError(w, r, u, "listing passed triplets", err)
		return
	}
	if !v.PassesOff && !v.AutoOff {
		if v.Whitelist, err = s.passes.ListClientPasses(ctx, now, g.AutoWhitelistAfter, listLimit); err != nil {
			s.serverError(w, r, u, "listing auto-whitelisted clients", err)
			return
		}
	}
	s.render(w, r, http.StatusOK, "greylist.html", "Greylist", "greylist", u, v)
}

// freezeView is the freeze page's data.
type freezeView struct {
	Freezes []store.Freeze
	Scopes  []string
}

func (s *Server) freezePage(w http.ResponseWriter, r *http.Request, u *sessionUser) {
	fs, err := s.store.ListFreezes(r.Context())
	if err != nil {
		s.serverError(w, r, u, "listing freezes", err)
		return
	}
	v := freezeView{Freezes: fs,
		Scopes: []string{store.FreezeAll, store.FreezeDomain, store.FreezeUser, store.FreezeNetwork}}
	s.render(w, r, http.StatusOK, "freeze.html", "Freeze", "freeze", u, v)
}
