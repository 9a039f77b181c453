package web

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// OpsOptions configures the operational endpoints.
type OpsOptions struct {
	Metrics prometheus.Gatherer
	// Ready reports whether the daemon can serve mail (store reachable,
	// listeners up); nil means ready.
	Ready func(ctx context.Context) error
}

// Ops returns a handler for /metrics, /-/healthy and /-/ready, following
// Prometheus's own endpoint names.
func Ops(o OpsOptions) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(o.Metrics, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /-/healthy", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("mailwarden is healthy.\n"))
	})
	mux.HandleFunc("GET /-/ready", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if o.Ready != nil {
			ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
			defer cancel()
			if err := o.Ready(ctx); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				w.Write([]byte("mailwarden is not ready: " + err.Error() + "\n"))
				return
			}
		}
		w.Write([]byte("mailwarden is ready.\n"))
	})
	return mux
}
