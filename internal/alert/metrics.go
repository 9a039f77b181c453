package alert

import "github.com/prometheus/client_golang/prometheus"

// Metrics count deliveries by receiver. A nil *Metrics counts nothing.
type Metrics struct {
	sentC, failedC, droppedC *prometheus.CounterVec
}

// NewMetrics returns the alert metrics, to be registered with
// Collectors.
func NewMetrics() *Metrics {
	return &Metrics{
		sentC: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailwarden_alerts_sent_total",
			Help: "Alerts delivered, by receiver.",
		}, []string{"receiver"}),
		failedC: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailwarden_alerts_failed_total",
			Help: "Failed alert delivery attempts, by receiver; each is retried with backoff.",
		}, []string{"receiver"}),
		droppedC: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailwarden_alerts_dropped_total",
			Help: "Alerts dropped because the alert queue was full, by receiver.",
		}, []string{"receiver"}),
	}
}

// Collectors returns what to register.
func (m *Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.sentC, m.failedC, m.droppedC}
}

func (m *Metrics) sent(r string) {
	if m != nil {
		m.sentC.WithLabelValues(r).Inc()
	}
}

func (m *Metrics) failed(r string) {
	if m != nil {
		m.failedC.WithLabelValues(r).Inc()
	}
}

func (m *Metrics) dropped(r string) {
	if m != nil {
		m.droppedC.WithLabelValues(r).Inc()
	}
}
