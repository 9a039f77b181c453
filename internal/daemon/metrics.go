package daemon

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"mailwarden/internal/accept"
	"mailwarden/internal/policy"
	"mailwarden/internal/policy/antivirus"
	"mailwarden/internal/store"
)

// metrics are the daemon's Prometheus metrics, on a registry of its own.
type metrics struct {
	reg       *prometheus.Registry
	decisions *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	reloads   *prometheus.CounterVec
	// cacheHits and cacheMisses count scanned messages by what the
	// antivirus scan cache knew of them.
	cacheHits   *prometheus.CounterVec
	cacheMisses prometheus.Counter
}

func newMetrics(version string) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailwarden_decisions_total",
			Help: "Pipeline evaluations by front end, SMTP stage, resulting action and deciding check.",
		}, []string{"frontend", "stage", "action", "check"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mailwarden_check_duration_seconds",
			Help:    "Time to run the check pipeline for one request.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .05, .25, 1, 5},
		}, []string{"frontend"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailwarden_config_reloads_total",
			Help: "Configuration reloads by result (success or failure).",
		}, []string{"result"}),
		cacheHits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailwarden_antivirus_cache_hits_total",
			Help: "Messages the antivirus scan cache decided without clamd, by result (infected or clean).",
		}, []string{"result"}),
		cacheMisses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mailwarden_antivirus_cache_misses_total",
			Help: "Messages the antivirus scan cache could not decide, scanned by clamd.",
		}),
	}
	// Both results are exported from the start, so a rate over them
	// works before the first hit.
	m.cacheHits.WithLabelValues(antivirus.CacheHitInfected)
	m.cacheHits.WithLabelValues(antivirus.CacheHitClean)
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "mailwarden_build_info", Help: "Always 1; labels give the build.",
	}, []string{"version"})
	build.WithLabelValues(version).Set(1)
	m.reg.MustRegister(m.decisions, m.duration, m.reloads, m.cacheHits, m.cacheMisses, build,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) observe(req *policy.Request, v policy.Verdict, took time.Duration) {
	m.decisions.WithLabelValues(req.Frontend, req.Stage.String(), v.Action.String(), v.Check).Inc()
	m.duration.WithLabelValues(req.Frontend).Observe(took.Seconds())
}

// countScanCache counts one message's scan cache outcome.
func (m *metrics) countScanCache(outcome string) {
	if outcome == antivirus.CacheMiss {
		m.cacheMisses.Inc()
		return
	}
	m.cacheHits.WithLabelValues(outcome).Inc()
}

// scanCacheEntries reports the scan cache's size at scrape time; 0 when
// it is off.
func scanCacheEntries(cache func() *antivirus.Cache) prometheus.GaugeFunc {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "mailwarden_antivirus_cache_entries",
		Help: "MIME parts whose clamd verdict the antivirus scan cache holds.",
	}, func() float64 {
		if c := cache(); c != nil {
			return float64(c.Len())
		}
		return 0
	})
}

// greylistCollector reports greylist state at scrape time.
type greylistCollector struct {
	st             store.Greylist
	whitelistAfter func() int
	pending        *prometheus.Desc
	passed         *prometheus.Desc
	whitelisted    *prometheus.Desc
	failed         *prometheus.Desc
}

func newGreylistCollector(st store.Greylist, whitelistAfter func() int) *greylistCollector {
	return &greylistCollector{
		st: st, whitelistAfter: whitelistAfter,
		pending:     prometheus.NewDesc("mailwarden_greylist_pending_triplets", "Triplets waiting for a retry.", nil, nil),
		passed:      prometheus.NewDesc("mailwarden_greylist_passed_triplets", "Triplets that passed and are remembered.", nil, nil),
		whitelisted: prometheus.NewDesc("mailwarden_greylist_autowhitelisted_clients", "Clients auto-whitelisted by passes.", nil, nil),
		failed:      prometheus.NewDesc("mailwarden_greylist_stats_up", "1 if greylist state could be read at scrape time.", nil, nil),
	}
}

func (c *greylistCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.pending
	ch <- c.passed
	ch <- c.whitelisted
	ch <- c.failed
}

func (c *greylistCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s, err := c.st.GreylistStats(ctx, time.Now(), c.whitelistAfter())
	if err != nil {
		ch <- prometheus.MustNewConstMetric(c.failed, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.failed, prometheus.GaugeValue, 1)
	ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(s.Pending))
	ch <- prometheus.MustNewConstMetric(c.passed, prometheus.GaugeValue, float64(s.Passed))
	ch <- prometheus.MustNewConstMetric(c.whitelisted, prometheus.GaugeValue, float64(s.WhitelistedClients))
}

// outboundCollector reports freezes and active latches at scrape time,
// so an alert can fire while outbound mail is frozen.
type outboundCollector struct {
	st      store.Store
	freezes *prometheus.Desc
	latches *prometheus.Desc
}

func newOutboundCollector(st store.Store) *outboundCollector {
	return &outboundCollector{
		st:      st,
		freezes: prometheus.NewDesc("mailwarden_freezes_active", "Outbound freezes in force, by scope.", []string{"scope"}, nil),
		latches: prometheus.NewDesc("mailwarden_latches_active", "Clients and users latched now, by kind.", []string{"kind"}, nil),
	}
}

func (c *outboundCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.freezes
	ch <- c.latches
}

func (c *outboundCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if fs, err := c.st.ListFreezes(ctx); err == nil {
		n := map[string]int{store.FreezeAll: 0, store.FreezeDomain: 0, store.FreezeUser: 0, store.FreezeNetwork: 0}
		for _, f := range fs {
			n[f.Scope]++
		}
		for scope, k := range n {
			ch <- prometheus.MustNewConstMetric(c.freezes, prometheus.GaugeValue, float64(k), scope)
		}
	}
	if ls, err := c.st.ListLatches(ctx, store.LatchFilter{Active: true}, time.Now()); err == nil {
		n := map[string]int{store.LatchClient: 0, store.LatchUser: 0}
		for _, l := range ls {
			n[l.Kind]++
		}
		for kind, k := range n {
			ch <- prometheus.MustNewConstMetric(c.latches, prometheus.GaugeValue, float64(k), kind)
		}
	}
}

// connCollector reports the connection trackers of the listeners that
// serve clients (policy, milter, trap) at scrape time, so a flood of
// idle connections shows as evictions.
type connCollector struct {
	stats   map[string]func() accept.TrackerStats
	open    *prometheus.Desc
	evicted *prometheus.Desc
	refused *prometheus.Desc
}

func newConnCollector(stats map[string]func() accept.TrackerStats) *connCollector {
	l := []string{"listener"}
	return &connCollector{
		stats:   stats,
		open:    prometheus.NewDesc("mailwarden_connections_open", "Connections open now, by listener.", l, nil),
		evicted: prometheus.NewDesc("mailwarden_connections_evicted_total", "Idle connections closed to admit a new one at a connection cap, by listener.", l, nil),
		refused: prometheus.NewDesc("mailwarden_connections_refused_total", "New connections refused at a connection cap, by listener.", l, nil),
	}
}

func (c *connCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.open
	ch <- c.evicted
	ch <- c.refused
}

func (c *connCollector) Collect(ch chan<- prometheus.Metric) {
	for name, f := range c.stats {
		st := f()
		ch <- prometheus.MustNewConstMetric(c.open, prometheus.GaugeValue, float64(st.Open), name)
		ch <- prometheus.MustNewConstMetric(c.evicted, prometheus.CounterValue, float64(st.Evicted), name)
		ch <- prometheus.MustNewConstMetric(c.refused, prometheus.CounterValue, float64(st.Refused), name)
	}
}

// connStats returns the connection counts of the listeners started.
func (d *Daemon) connStats() map[string]func() accept.TrackerStats {
	m := map[string]func() accept.TrackerStats{}
	if d.policySrv != nil {
		m["policy"] = d.policySrv.ConnStats
	}
	if d.milterSrv != nil {
		m["milter"] = d.milterSrv.ConnStats
	}
	if d.hp.trapSrv != nil {
		m["trap"] = d.hp.trapSrv.ConnStats
	}
	if d.httpConns != nil {
		m["http"] = d.httpConns.Stats
	}
	return m
}
