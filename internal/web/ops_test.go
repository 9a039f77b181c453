package web

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	b, _ := io.ReadAll(rec.Body)
	return rec.Code, string(b)
}

func TestReadyFollowsTheStore(t *testing.T) {
	var storeErr error
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "mailwarden_test_total", Help: "test"})
	reg.MustRegister(c)
	c.Inc()
	h := Ops(OpsOptions{Metrics: reg, Ready: func(context.Context) error { return storeErr }})

	if code, _ := get(t, h, "/-/ready"); code != 200 {
		t.Errorf("ready with a working store: %d", code)
	}
	storeErr = errors.New("database is locked")
	if code, body := get(t, h, "/-/ready"); code != 503 || !strings.Contains(body, "database is locked") {
		t.Errorf("ready with a broken store: %d %q", code, body)
	}
	// Health is about the process, not its dependencies.
	if code, _ := get(t, h, "/-/healthy"); code != 200 {
		t.Errorf("healthy: %d", code)
	}
	if code, body := get(t, h, "/metrics"); code != 200 || !strings.Contains(body, "mailwarden_test_total 1") {
		t.Errorf("metrics: %d %q", code, body)
	}
	if code, _ := get(t, h, "/nowhere"); code != 404 {
		t.Errorf("unknown path: %d", code)
	}
}
