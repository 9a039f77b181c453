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

// chartKinds names the charts a pipeline decision counts in: at most
// two, "" for none. Every 5xx counts as rejected, and a virus or a new
// latch counts in its own chart as well. A message counts as accepted
// once: at end of message in the milter, at each recipient in the policy
// server (which sees no message).
func chartKinds(req *policy.Request, v policy.Verdict) (string, string) {
	also := ownChart(v.Event, v.Check)
	switch {
	case v.Action == policy.Reject:
		return series.Rejected, also
	case v.Action == policy.Tempfail && v.Check == "greylist":
		return series.Greylisted, also
	case v.Action == policy.Continue || v.Action == policy.Accept:
		if req.Stage == policy.StageEOM || req.Frontend == "policy" && req.Stage == policy.StageRcpt {
			return series.Accepted, also
		}
	}
	return also, ""
}

// eventChartKinds is chartKinds for an event read back from the store, so
// that a restart does not blank the charts of what the event log kept.
// Acceptances are not events and start again from zero.
func eventChartKinds(e store.Event) (string, string) {
	also := ownChart(e.Kind, e.Check)
	switch {
	case e.Action == policy.Reject.String():
		return series.Rejected, also
	case e.Kind == store.EventGreylist:
		return series.Greylisted, also
	}
	return also, ""
}

// seedCharts counts the last day's events into rec.
func seedCharts(ctx context.Context, st store.Events, rec *series.Recorder, now time.Time) error {
	evs, err := st.QueryEvents(ctx, store.EventFilter{Since: now.Add(-chartStep * chartBuckets), Limit: 200000})
	if err != nil {
		return err
	}
	for _, e := range evs {
		k1, k2 := eventChartKinds(e)
		countIn(rec, e.Time, k1, k2)
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

// ownChart names the chart of an event kind that has one besides the
// action's: viruses, and latches set now. The latch check's own events
// are refusals of a sender latched before.
func ownChart(event, check string) string {
	switch {
	case event == store.EventVirus:
		return series.Virus
	case event == store.EventLatch && check != "latch":
		return series.Latch
	}
	return ""
}
