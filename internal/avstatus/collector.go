package avstatus

import (
	"github.com/prometheus/client_golang/prometheus"
)

// descs are the watcher's metric descriptions. The signature metrics
// are absent for a server whose VERSION answer did not give them, rather
// than reported as 0, which an alert on age would read as fresh.
type descs struct {
	up, version, timestamp, age *prometheus.Desc
}

func newDescs() descs {
	return descs{
		up: prometheus.NewDesc("mailwarden_clamd_up",
			"1 if the clamd server answered its last health check.", []string{"server"}, nil),
		version: prometheus.NewDesc("mailwarden_clamd_signature_version",
			"Signature database version clamd reports (daily.cvd).", []string{"server"}, nil),
		timestamp: prometheus.NewDesc("mailwarden_clamd_signature_timestamp_seconds",
			"Date of clamd's signature database, as a Unix time.", []string{"server"}, nil),
		age: prometheus.NewDesc("mailwarden_clamd_signature_age_seconds",
			"Age of clamd's signature database at scrape time.", []string{"server"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (w *Watcher) Describe(ch chan<- *prometheus.Desc) {
	ch <- w.desc.up
	ch <- w.desc.version
	ch <- w.desc.timestamp
	ch <- w.desc.age
}

// Collect implements prometheus.Collector: each server as the clamd
// client's health checks last saw it. A server not yet checked is
// reported down.
func (w *Watcher) Collect(ch chan<- prometheus.Metric) {
	c, _ := w.current()
	if c == nil {
		return
	}
	now := w.now()
	seen := map[string]bool{}
	for _, st := range c.Status() {
		// Two identical label sets would fail the whole scrape.
		if seen[st.Addr] {
			continue
		}
		seen[st.Addr] = true
		up := 0.0
		if st.Up {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(w.desc.up, prometheus.GaugeValue, up, st.Addr)
		v := st.Version
		if v.DBVersion > 0 {
			ch <- prometheus.MustNewConstMetric(w.desc.version, prometheus.GaugeValue, float64(v.DBVersion), st.Addr)
		}
		if !v.DBTime.IsZero() {
			ch <- prometheus.MustNewConstMetric(w.desc.timestamp, prometheus.GaugeValue,
				float64(v.DBTime.UnixNano())/1e9, st.Addr)
			ch <- prometheus.MustNewConstMetric(w.desc.age, prometheus.GaugeValue, now.Sub(v.DBTime).Seconds(), st.Addr)
		}
	}
}
