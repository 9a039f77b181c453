package daemon

import (
	"context"
	"time"

	"mailwarden/internal/policy"
	"mailwarden/internal/series"
	"mailwarden/internal/store"
)

// The dashboard's charts cover one day in ten-minute bars.
const (
	chartStep    = 10 * time.Minute
	chartBuckets = 144
)

// chartKind names the chart a pipeline decision counts in, or "" for
// none. A message counts as accepted once: at end of message in the
// milter, at each recipient in the policy server (which sees no message).
func chartKind(req *policy.Request, v policy.Verdict) string {
	switch {
	case v.Event == store.EventVirus:
		return series.Virus
	case v.Event == store.EventLatch && v.Check != "latch":
		// A check latched the sender now; the latch check's own events
		// are refusals of a sender latched before.
		return series.Latch
	case v.Action == policy.Reject:
		return series.Rejected
	case v.Action == policy.Tempfail && v.Check == "greylist":
		return series.Greylisted
	case v.Action == policy.Continue || v.Action == policy.Accept:
		if req.Stage == policy.StageEOM || req.Frontend == "policy" && req.Stage == policy.StageRcpt {
			return series.Accepted
		}
	}
	return ""
}

// eventChartKind is chartKind for an event read back from the store, so
// that a restart does not blank the charts of what the event log kept.
// Acceptances are not events and start again from zero.
func eventChartKind(e store.Event) string {
	switch {
	case e.Kind == store.EventVirus:
		return series.Virus
	case e.Kind == store.EventLatch && e.Check != "latch":
		return series.Latch
	case e.Action == policy.Reject.String():
		return series.Rejected
	case e.Kind == store.EventGreylist:
		return series.Greylisted
	}
	return ""
}

// seedCharts counts the last day's events into rec.
func seedCharts(ctx context.Context, st store.Events, rec *series.Recorder, now time.Time) error {
	evs, err := st.QueryEvents(ctx, store.EventFilter{Since: now.Add(-chartStep * chartBuckets), Limit: 200000})
	if err != nil {
		return err
	}
	for _, e := range evs {
		if k := eventChartKind(e); k != "" {
			rec.Add(k, e.Time, 1)
		}
	}
	return nil
}
