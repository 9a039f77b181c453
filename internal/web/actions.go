package web

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"mailwarden/internal/adminapi"
)

// The form actions below change state through adminapi's actions, which
// validate, change and record the audit event; each answers 303 back to
// the page with a flash message saying what happened.

// done flashes the outcome of an action and sends the browser to to.
// Errors the admin API explains are shown as they are; others are logged
// and summarised.
func (s *Server) done(w http.ResponseWriter, to, okMsg string, err error) {
	if err != nil {
		var ae *adminapi.APIError
		msg := "The change failed; the daemon's log has the details."
		if errors.As(err, &ae) && ae.Message != "" {
			msg = ae.Message
		} else {
			s.log.Error("web: action failed", "err", err)
		}
		s.setFlash(w, "error", msg)
	} else {
		s.setFlash(w, "ok", okMsg)
	}
	redirect(w, to)
}

// oneLine joins the lines of a textarea: audit notes are one line, so
// that they do not garble the log, and a note typed over several lines
// is still welcome.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// backTo is the local page a form asks to return to, or def.
func backTo(r *http.Request, def string) string {
	if b := r.PostForm.Get("back"); b != "" && safeNext(b) == b {
		return b
	}
	return def
}

// pathIP parses the {ip} of a host action; when it is not an IP address
// it answers the request and reports false.
func (s *Server) pathIP(w http.ResponseWriter, r *http.Request) (netip.Addr, bool) {
	ip, err := netip.ParseAddr(r.PathValue("ip"))
	if err != nil || ip.Zone() != "" {
		s.done(w, "/hosts", "", &adminapi.APIError{Status: http.StatusBadRequest,
			Message: fmt.Sprintf("%q is not an IP address", r.PathValue("ip"))})
		return netip.Addr{}, false
	}
	return ip.Unmap(), true
}

func hostPath(ip netip.Addr) string { return "/hosts/" + url.PathEscape(ip.String()) }

func (s *Server) noteHost(w http.ResponseWriter, r *http.Request, u *sessionUser) {
	ip, ok := s.pathIP(w, r)
	if !ok {
		return
	}
	_, err := s.admin.NoteHost(r.Context(), who(u), ip, oneLine(r.PostForm.Get("text")))
	s.done(w, hostPath(ip), "Note added to "+ip.String()+".", err)
}

func (s *Server) disinfectHost(w http.ResponseWriter, r *http.Request, u *sessionUser) {
	ip, ok := s.pathIP(w, r)
	if !ok {
		return
	}
	res, err := s.admin.DisinfectHost(r.Context(), who(u), ip, oneLine(r.PostForm.Get("note")))
	msg := fmt.Sprintf("%s is marked disinfected; %d active latch(es) cleared.", ip, len(res.Cleared))
	s.done(w, hostPath(ip), msg, err)
}

func (s *Server) clearLatch(w http.ResponseWriter, r *http.Request, u *sessionUser) {
	id := r.PathValue("id")
	l, err := s.admin.ClearLatch(r.Context(), who(u), id, oneLine(r.PostForm.Get("note")))
	msg := fmt.Sprintf("Latch %s on %s %s is cleared.", l.ID, l.Kind, l.Key)
	s.done(w, backTo(r, "/latches"), msg, err)
}

func (s *Server) allowTriplet(w http.ResponseWriter, r *http.Request, u *sessionUser) {
	req := adminapi.AllowRequest{Client: r.PostForm.Get("client"), Sender: r.PostForm.Get("sender"),
		Recipient: r.PostForm.Get("recipient")}
	out, err := s.admin.AllowTriplet(r.Context(), who(u), req)
	sender := out.Sender
	if sender == "" {
		sender = "<>"
	}
	msg := fmt.Sprintf("%s %s -> %s is let through greylisting.", out.Client, sender, out.Recipient)
	s.done(w, "/greylist", msg, err)
}

func (s *Server) setFreeze(w http.ResponseWriter, r *http.Request, u *sessionUser) {
	req := adminapi.FreezeRequest{Scope: r.PostForm.Get("scope"), Value: r.PostForm.Get("value"),
		Note: oneLine(r.PostForm.Get("note"))}
	f, err := s.admin.SetFreeze(r.Context(), who(u), req)
	msg := "Outbound freeze in force on " + adminapi.DescribeScope(f.Scope, f.Value) + "."
	s.done(w, "/freeze", msg, err)
}

func (s *Server) liftFreeze(w http.ResponseWriter, r *http.Request, u *sessionUser) {
	f, err := s.admin.LiftFreeze(r.Context(), who(u), r.PostForm.Get("scope"), r.PostForm.Get("value"),
		oneLine(r.PostForm.Get("note")))
	msg := "Outbound freeze on " + adminapi.DescribeScope(f.Scope, f.Value) + " lifted."
	s.done(w, "/freeze", msg, err)
}
