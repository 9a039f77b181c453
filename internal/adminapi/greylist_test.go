package adminapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"mailwarden/internal/store"
	"mailwarden/internal/store/sqlite"
)

// TestGreylistAllow lets a pending triplet through by the client's
// address, refuses what does not exist or is malformed, and audits it.
func TestGreylistAllow(t *testing.T) {
	st, err := sqlite.Open(t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx := context.Background()
	// The store judges events' expiry by the real clock.
	t0 := time.UnixMilli(time.Now().UnixMilli())
	pending := store.Triplet{Client: "192.0.2.0/24", Sender: "news@example.org", Recipient: "pat@school.test",
		FirstSeen: t0.Add(-time.Minute), LastSeen: t0.Add(-time.Minute), Attempts: 1, Expires: t0.Add(48 * time.Hour)}
	if err := st.PutTriplet(ctx, pending); err != nil {
		t.Fatal(err)
	}
	c, _ := start(t, Options{Now: func() time.Time { return t0 }, Backend: st, Greylist: st})
	allow := func(req AllowRequest) (AllowRequest, error) {
		var out AllowRequest
		return out, c.do(ctx, http.MethodPost, "/v1/greylist/allow", nil, req, &out)
	}

	// An address, not the netblock, and mixed case: as an administrator
	// copies them from a bounce.
	got, err := allow(AllowRequest{Client: "192.0.2.77", Sender: "News@Example.org", Recipient: "PAT@school.test"})
	if err != nil {
		t.Fatalf("allow: %v", err)
	}
	if got.Client != "192.0.2.0/24" || got.Sender != "news@example.org" || got.Recipient != "pat@school.test" {
		t.Errorf("allow answered %+v", got)
	}
	tr, err := st.GetTriplet(ctx, pending.Client, pending.Sender, pending.Recipient, t0)
	if err != nil || !tr.Passed() || !tr.Expires.Equal(t0.Add(35*24*time.Hour)) {
		t.Errorf("triplet after allow = %+v, %v; want passed, kept 35 days", tr, err)
	}
	evs, err := st.QueryEvents(ctx, store.EventFilter{Kind: store.EventAdmin})
	if err != nil || len(evs) != 1 || evs[0].Check != "greylist allow" || evs[0].User != me(t) ||
		!strings.Contains(evs[0].Reason, "news@example.org -> pat@school.test") {
		t.Errorf("admin events = %+v, %v; want one greylist allow by %s", evs, err, me(t))
	}

	for _, bad := range []struct {
		req    AllowRequest
		status int
	}{
		{AllowRequest{Client: "192.0.2.77", Sender: "other@example.org", Recipient: "pat@school.test"}, http.StatusNotFound},
		{AllowRequest{Client: "not-an-address", Sender: "a@b", Recipient: "pat@school.test"}, http.StatusBadRequest},
		{AllowRequest{Client: "192.0.2.77", Sender: "a@b", Recipient: ""}, http.StatusBadRequest},
		{AllowRequest{Client: "192.0.2.77", Sender: "a b@c", Recipient: "pat@school.test"}, http.StatusBadRequest},
		{AllowRequest{Client: "192.0.2.77", Sender: "a@b", Recipient: "pat@school.test\r\nX"}, http.StatusBadRequest},
	} {
		_, err := allow(bad.req)
		var ae *APIError
		if !errors.As(err, &ae) || ae.Status != bad.status {
			t.Errorf("allow %+v: err = %v, want status %d", bad.req, err, bad.status)
		}
	}
	if evs, _ := st.QueryEvents(ctx, store.EventFilter{Kind: store.EventAdmin}); len(evs) != 1 {
		t.Errorf("refused allows were audited: %d admin events", len(evs))
	}
}
