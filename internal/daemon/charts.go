package daemon

import (
	"context"
	"time"

	"mailwarden/internal/policy"
	"mailwarden/internal/policy/greylist"
	"mailwarden/internal/policy/latch"
	"mailwarden/internal/series"
	"mailwarden/internal/store"
)

// The dashboard's charts cover one day in ten-minute bars.
const (
	chartStep    = 10 * time.Minute
	chartBuckets = 144
)

// chartKinds names the charts a pipeline decision counts in. Every 5xx
// counts as rejected, and a virus or a new latch counts in its own chart
// as well. A message counts as accepted once: at end of message in the
// milter, at each recipient in the policy server (which sees no
// message).
func chartKinds(req *policy.Request, v policy.Verdict) []string {
	var out []string
	switch {
	case v.Action == policy.Reject:
		out = append(out, series.Rejected)
	case v.Action == policy.Tempfail && v.Check == greylist.Name:
		out = append(out, series.Greylisted)
	case v.Action == policy.Continue || v.Action == policy.Accept:
		if req.Stage == policy.StageEOM || req.Frontend == "policy" && req.Stage == policy.StageRcpt {
			out = append(out, series.Accepted)
		}
	}
	if v.Event == store.EventVirus {
		out = append(out, series.Virus)
	}
	if v.Latched != "" {
		out = append(out, series.Latch)
	}
	return out
}

// eventChartKinds is chartKinds for an event read back from the store, so
// that a restart does not blank the charts of what the event log kept.
// Acceptances are not events and start again from zero. A latch event
// from the check that latched stands beside that check's own event for
// the message, which counts the message; it counts only as a latch. The
// latch check's own latch events are refusals of a sender latched
// before.
func eventChartKinds(e store.Event) []string {
	if e.Kind == store.EventLatch && e.Check != latch.Name {
		return []string{series.Latch}
	}
	var out []string
	switch {
	case e.Action == policy.Reject.String():
		out = append(out, series.Rejected)
	case e.Kind == store.EventGreylist:
		out = append(out, series.Greylisted)
	}
	if e.Kind == store.EventVirus {
		out = append(out, series.Virus)
	}
	return out
}

// seedCharts counts the last day's events into rec.
func seedCharts(ctx context.Context, st store.Events, rec *series.Recorder, now time.Time) error {
	evs, err := st.QueryEvents(ctx, store.EventFilter{Since: now.Add(-chartStep * chartBuckets), Limit: 200000})
	if err != nil {
		return err
	}
	for _, e := range evs {
		countIn(rec, e.Time, eventChartKinds(e)...)
	}
	return nil
}

// countIn counts one in each named chart.
func countIn(rec *series.Recorder, at time.Time, kinds ...string) {
	for _, k := range kinds {
		if k != "" {
			rec.Add(k, at, 1)
		}
	}
}
