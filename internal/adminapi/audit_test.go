package adminapi

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"mailwarden/internal/adminapi/adminapitest"
	"mailwarden/internal/hosts"
	"mailwarden/internal/scan"
	"mailwarden/internal/sites"
	"mailwarden/internal/store"
	"mailwarden/internal/store/sqlite"
)

// TestEveryChangeIsAudited runs every route of the API that is not a
// read, taken from the server's own list, and requires an admin event
// from each. A new route without a row here fails the test, so no
// change can be added without its audit entry being checked.
func TestEveryChangeIsAudited(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	st, err := sqlite.OpenWith(t.TempDir(), log, sqlite.Options{Mirror: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	ctx := context.Background()
	now := time.UnixMilli(time.Now().UnixMilli()) // the store expires events by the real clock
	sr, _ := sites.New([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, nil)
	reg, err := hosts.New(hosts.Options{Store: st, Sites: func() *sites.Registry { return sr }, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	l, err := st.AddLatch(ctx, store.Latch{Kind: store.LatchClient, Key: "10.1.2.3", Rule: "sender_domain", Reason: "x"}, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.AddLatch(ctx, store.Latch{Kind: store.LatchClient, Key: "10.1.2.4", Rule: "sender_domain", Reason: "y"}, now); err != nil {
		t.Fatal(err)
	}
	if err := st.PutTriplet(ctx, store.Triplet{Client: "192.0.2.0/24", Sender: "a@example.org", Recipient: "b@school.test",
		FirstSeen: now, LastSeen: now, Attempts: 1, Expires: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	scanFn := func(context.Context, []netip.Prefix) (scan.Summary, []scan.Finding, error) {
		return scan.Summary{Probed: 1}, nil, nil
	}
	q := (&adminapitest.Queue{}).Add(now, "office@victim.example", "x@gmail.test", 3)
	srv := NewServer(Options{Backend: st, Hosts: reg, Scan: scanFn, Greylist: st, Now: func() time.Time { return now },
		Queue: QueueOptions{Open: q.Open}})

	calls := map[string]struct {
		path   string
		body   any
		action string
	}{
		"POST /v1/latches/{id}/clear":   {"/v1/latches/" + l.ID + "/clear", map[string]string{"note": "reimaged"}, "latch clear"},
		"POST /v1/freezes":              {"/v1/freezes", FreezeRequest{Scope: store.FreezeAll}, "freeze on"},
		"DELETE /v1/freezes":            {"/v1/freezes?scope=all", nil, "freeze off"},
		"POST /v1/hosts/{ip}/note":      {"/v1/hosts/10.1.2.4/note", map[string]string{"text": "in the lab"}, "hosts note"},
		"POST /v1/hosts/{ip}/disinfect": {"/v1/hosts/10.1.2.4/disinfect", map[string]string{"note": "reimaged"}, "hosts disinfect"},
		"POST /v1/scan":                 {"/v1/scan", ScanRequest{}, "scan"},
		"POST /v1/greylist/allow":       {"/v1/greylist/allow", AllowRequest{Client: "192.0.2.9", Sender: "a@example.org", Recipient: "b@school.test"}, "greylist allow"},
		"POST /v1/queue/purge":          {"/v1/queue/purge", QueuePurgeRequest{QueueFilter: QueueFilter{Sender: "office@*"}, Apply: true}, "queue purge"},
	}
	changes := 0
	for _, route := range srv.Routes() {
		method, _, _ := strings.Cut(route, " ")
		if method == http.MethodGet {
			continue
		}
		changes++
		c, ok := calls[route]
		if !ok {
			t.Errorf("route %s changes state but has no row in this test: add one, with the admin event it must record", route)
			continue
		}
		var body bytes.Buffer
		if c.body != nil {
			json.NewEncoder(&body).Encode(c.body)
		}
		before := adminEvents(t, st)
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(method, c.path, &body)
		srv.Handler().ServeHTTP(rec, req.WithContext(WithUser(req.Context(), "auditor")))
		if rec.Code/100 != 2 {
			t.Errorf("%s: %d %s", route, rec.Code, rec.Body)
			continue
		}
		after := adminEvents(t, st)
		if len(after) != len(before)+1 || after[0].Check != c.action || after[0].User != "web:auditor" {
			t.Errorf("%s: admin events went from %d to %d, newest %+v; want one %q by web:auditor", route, len(before), len(after), after, c.action)
		}
	}
	if changes != len(calls) {
		t.Errorf("%d state-changing routes, %d rows: a row names a route that no longer exists", changes, len(calls))
	}
}

func adminEvents(t *testing.T, st store.Events) []store.Event {
	t.Helper()
	evs, err := st.QueryEvents(context.Background(), store.EventFilter{Kind: store.EventAdmin})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}
