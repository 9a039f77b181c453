package adminapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"mailwarden/internal/events"
	"mailwarden/internal/policy/greylist"
	"mailwarden/internal/store"
)

// The actions below are every change an administrator can make, written
// once for the unix-socket API and the web dashboard. who names the
// administrator (the socket's peer user, or "web:NAME" for a dashboard
// session); each action records an admin event. Errors the caller should
// show as they are are *APIError with the status the API answers.

// userKey is the context key of a dashboard user acting through the API.
type userKey struct{}

// WithUser marks ctx as a request made by the dashboard user name; the
// API then records "web:name" as who made each change instead of the
// socket's peer. The web package calls it only after authenticating.
func WithUser(ctx context.Context, name string) context.Context {
	return context.WithValue(ctx, userKey{}, name)
}

func badInput(err error) error { return &APIError{Status: http.StatusBadRequest, Message: err.Error()} }

// ClearLatch ends a latch. A note is required: the audit trail must say
// why a machine was let back out (PRODUCT.md §3, "remember who cleared
// them and why").
func (s *Server) ClearLatch(ctx context.Context, who, id, note string) (Latch, error) {
	note, err := requiredNote(note, "a note saying why is required to clear a latch")
	if err != nil {
		return Latch{}, err
	}
	now := s.now()
	// The latch is read first so that its record names what it was.
	cur, err := s.be.GetLatch(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return Latch{}, &APIError{Status: http.StatusNotFound, Message: fmt.Sprintf("no latch with id %q (latch list shows them)", id)}
	}
	if err != nil {
		return Latch{}, s.failed("reading latch "+id, err)
	}
	a := events.Admin{Who: who, Action: "latch clear", Site: cur.Site,
		Reason: fmt.Sprintf("cleared latch %s on %s %s (%s): %s", cur.ID, cur.Kind, cur.Key, cur.Rule, note)}
	if cur.Kind == store.LatchClient {
		// So that events --host shows when the machine was let out again.
		a.Client = cur.Key
	}
	var l store.Latch
	err = s.events.Audit(ctx, a, func(ctx context.Context) (err error) {
		l, err = s.be.ClearLatch(ctx, id, who, note, now)
		return err
	})
	switch {
	case errors.Is(err, store.ErrNotFound):
		return Latch{}, &APIError{Status: http.StatusNotFound, Message: fmt.Sprintf("no latch with id %q (latch list shows them)", id)}
	case errors.Is(err, store.ErrNotActive):
		return Latch{}, &APIError{Status: http.StatusConflict, Message: s.notActive(ctx, id, now)}
	case err != nil:
		return Latch{}, s.audited(err, fmt.Sprintf("latch %s was cleared", l.ID), "clearing latch "+id)
	}
	return LatchFromStore(l, now), nil
}

// notActive explains why a latch cannot be cleared.
func (s *Server) notActive(ctx context.Context, id string, now time.Time) string {
	l, err := s.be.GetLatch(ctx, id)
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

// SetFreeze puts an outbound freeze in force.
func (s *Server) SetFreeze(ctx context.Context, who string, req FreezeRequest) (Freeze, error) {
	scope, value, err := NormalizeFreeze(req.Scope, req.Value)
	if err != nil {
		return Freeze{}, badInput(err)
	}
	note, err := checkNote(req.Note)
	if err != nil {
		return Freeze{}, badInput(err)
	}
	now := s.now()
	f := store.Freeze{Scope: scope, Value: value, Since: now, By: who, Note: note}
	err = s.events.Audit(ctx, events.Admin{Who: who, Action: "freeze on",
		Reason: withNote("froze "+DescribeScope(scope, value), note)},
		func(ctx context.Context) error { return s.be.SetFreeze(ctx, f) })
	if err := s.audited(err, "the freeze is in force", "setting the freeze on "+DescribeScope(scope, value)); err != nil {
		return Freeze{}, err
	}
	return FreezeFromStore(f), nil
}

// LiftFreeze lifts the freeze on scope and value.
func (s *Server) LiftFreeze(ctx context.Context, who, scope, value, note string) (Freeze, error) {
	scope, value, err := NormalizeFreeze(scope, value)
	if err != nil {
		return Freeze{}, badInput(err)
	}
	if note, err = checkNote(note); err != nil {
		return Freeze{}, badInput(err)
	}
	what := DescribeScope(scope, value)
	fs, err := s.be.ListFreezes(ctx)
	if err != nil {
		return Freeze{}, s.failed("listing freezes", err)
	}
	var lifted store.Freeze
	found := false
	for _, f := range fs {
		if f.Scope == scope && f.Value == value {
			lifted, found = f, true
		}
	}
	if found {
		err = s.events.Audit(ctx, events.Admin{Who: who, Action: "freeze off", Reason: withNote(fmt.Sprintf(
			"lifted the freeze on %s (set %s by %s)", what, lifted.Since.Format(time.RFC3339), lifted.By), note)},
			func(ctx context.Context) error { return s.be.LiftFreeze(ctx, scope, value) })
	}
	switch {
	case !found || errors.Is(err, store.ErrNotFound):
		return Freeze{}, &APIError{Status: http.StatusNotFound, Message: fmt.Sprintf("no freeze on %s (freeze status lists them)", what)}
	case err != nil:
		return Freeze{}, s.audited(err, "the freeze is lifted", "lifting the freeze on "+what)
	}
	return FreezeFromStore(lifted), nil
}

// NoteHost adds a note to a host; it may have no evidence yet (an
// administrator noting a machine they were told about).
func (s *Server) NoteHost(ctx context.Context, who string, ip netip.Addr, text string) (HostNote, error) {
	text, err := s.hostNote(text, "the note text is empty")
	if err != nil {
		return HostNote{}, err
	}
	now := s.now()
	err = s.events.Audit(ctx, events.Admin{Who: who, Action: "hosts note", Client: ip.String(),
		Reason: "noted " + ip.String() + ": " + text},
		func(ctx context.Context) error { return s.hosts.Note(ctx, ip, who, text) })
	if err := s.audited(err, fmt.Sprintf("the note on %s is saved", ip), "noting host "+ip.String()); err != nil {
		return HostNote{}, err
	}
	return HostNote{By: who, Text: text, Time: now}, nil
}

// DisinfectHost declares a host clean and clears its latches. A note is
// required: the audit trail must say what was done to the machine.
func (s *Server) DisinfectHost(ctx context.Context, who string, ip netip.Addr, note string) (DisinfectResult, error) {
	note, err := s.hostNote(note, "a note saying what was done is required to disinfect a host")
	if err != nil {
		return DisinfectResult{}, err
	}
	// The registry completes the record's reason with the latches it
	// clears, before its first write.
	var cleared []store.Latch
	err = s.events.Audit(ctx, events.Admin{Who: who, Action: "hosts disinfect", Client: ip.String(),
		Reason: withNote("disinfected", note)},
		func(ctx context.Context) (err error) {
			cleared, err = s.hosts.Disinfect(ctx, ip, who, note)
			return err
		})
	if err := s.audited(err, fmt.Sprintf("%s is disinfected", ip), "disinfecting host "+ip.String()); err != nil {
		return DisinfectResult{}, err
	}
	now := s.now()
	out := DisinfectResult{IP: ip.String(), Cleared: []Latch{}}
	for _, l := range cleared {
		out.Cleared = append(out.Cleared, LatchFromStore(l, now))
	}
	return out, nil
}

// AllowRequest is the body of POST /v1/greylist/allow. Client is the
// triplet's netblock as listed, or an IP address; Sender "" or "<>" is
// the null sender.
type AllowRequest struct {
	Client    string `json:"client"`
	Sender    string `json:"sender"`
	Recipient string `json:"recipient"`
}

// AllowTriplet lets a greylisted triplet through from now on, as if its
// retry had come.
func (s *Server) AllowTriplet(ctx context.Context, who string, req AllowRequest) (AllowRequest, error) {
	client, err := s.clientKey(strings.TrimSpace(req.Client))
	if err != nil {
		return AllowRequest{}, badInput(err)
	}
	sender := strings.ToLower(strings.TrimSpace(req.Sender))
	if sender == "<>" {
		sender = ""
	}
	rcpt := strings.ToLower(strings.TrimSpace(req.Recipient))
	if rcpt == "" || hasControlOrSpace(sender) || hasControlOrSpace(rcpt) || len(sender) > 320 || len(rcpt) > 320 {
		return AllowRequest{}, badInput(errors.New("want a recipient address and a sender address (\"<>\" for the null sender) without spaces, at most 320 bytes each"))
	}
	if s.greylist == nil {
		return AllowRequest{}, &APIError{Status: http.StatusServiceUnavailable, Message: "greylisting is not configured in this daemon"}
	}
	now := s.now()
	out := AllowRequest{Client: client, Sender: sender, Recipient: rcpt}
	err = s.events.Audit(ctx, events.Admin{Who: who, Action: "greylist allow",
		Reason: fmt.Sprintf("let %s %s -> %s through greylisting", client, displaySender(sender), rcpt)},
		func(ctx context.Context) error {
			return greylist.Allow(ctx, s.greylist, client, sender, rcpt, now, s.config().Greylist.PassedLifetime.D())
		})
	switch {
	case errors.Is(err, store.ErrNotFound):
		return AllowRequest{}, &APIError{Status: http.StatusNotFound, Message: fmt.Sprintf(
			"no greylisted triplet %s %s -> %s (greylist list shows them)", client, displaySender(sender), rcpt)}
	case err != nil:
		return AllowRequest{}, s.audited(err, "the triplet is allowed", "allowing the triplet")
	}
	return out, nil
}

// clientKey turns an IP address into its greylist netblock; a netblock
// as listed is taken as it is.
func (s *Server) clientKey(c string) (string, error) {
	if a, err := netip.ParseAddr(c); err == nil && a.Zone() == "" {
		g := s.config().Greylist
		return greylist.Netblock(a.Unmap(), g.IPv4Prefix, g.IPv6Prefix), nil
	}
	if p, err := netip.ParsePrefix(c); err == nil {
		return p.Masked().String(), nil
	}
	if c == "unknown" {
		return c, nil
	}
	return "", fmt.Errorf("client %q is neither an IP address nor a netblock", c)
}

func displaySender(s string) string {
	if s == "" {
		return "<>"
	}
	return s
}

func hasControlOrSpace(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f })
}

var errNoHosts = &APIError{Status: http.StatusServiceUnavailable, Message: "the host registry is not configured in this daemon"}

// failed logs a backend failure and returns it for the caller. The caller
// is an administrator, so the store's own message is passed on.
func (s *Server) failed(what string, err error) error {
	s.log.Error("admin: "+what+" failed", "err", err)
	return &APIError{Status: http.StatusInternalServerError, Message: fmt.Sprintf("%s: %v", what, err)}
}

// writeActionError answers an action's error.
func writeActionError(w http.ResponseWriter, err error) {
	var ae *APIError
	if errors.As(err, &ae) {
		writeError(w, ae.Status, ae.Message)
		return
	}
	writeError(w, http.StatusInternalServerError, err.Error())
}

// unrecorded answers a change that was made but whose audit entry could
// not be stored: the caller must know both.
// audited turns the error of an audited change into the action's: nil,
// the change done but its record lost (unrecorded), or the change failed
// while doing what.
func (s *Server) audited(err error, done, doing string) error {
	switch {
	case errors.Is(err, events.ErrUnrecorded):
		return unrecorded(done, err)
	case err != nil:
		return s.failed(doing, err)
	}
	return nil
}

// hostNote checks what a host action needs: the host registry, and a
// note that is not empty (ifEmpty says why it must not be).
func (s *Server) hostNote(note, ifEmpty string) (string, error) {
	if s.hosts == nil {
		return "", errNoHosts
	}
	return requiredNote(note, ifEmpty)
}

// requiredNote checks a note that must not be empty; ifEmpty says why.
func requiredNote(note, ifEmpty string) (string, error) {
	note, err := checkNote(note)
	if err == nil && note == "" {
		err = errors.New(ifEmpty)
	}
	if err != nil {
		return "", badInput(err)
	}
	return note, nil
}

func unrecorded(done string, err error) error {
	return &APIError{Status: http.StatusInternalServerError,
		Message: done + ", but " + strings.TrimPrefix(err.Error(), "events: ")}
}
