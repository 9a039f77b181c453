package web

import (
	"fmt"
	"time"

	"mailwarden/internal/human"
	"mailwarden/internal/series"
)

// The chart's drawing area, in SVG user units; the page scales it to its
// width.
const (
	chartWidth  = 720.0
	chartTop    = 14.0  // room for the maximum's label
	chartBottom = 120.0 // the baseline
	chartHeight = 140.0 // with the time labels below the baseline
)

// chart is one kind's bar chart, drawn server-side as inline SVG so the
// overview needs no script.
type chart struct {
	Kind       string
	Label      string
	Total      int64
	Max        int64
	Bars       []bar
	Width      float64
	Height     float64
	Baseline   float64
	Top        float64
	LabelY     float64
	Start, End string // time labels under the first and last bar
	Step       string
}

// bar is one bucket's bar; Title is its tooltip.
type bar struct {
	X, Y, W, H string
	Count      int64
	Title      string
}

// kindLabel names a charted kind for people.
func kindLabel(k string) string {
	switch k {
	case series.Accepted:
		return "Accepted"
	case series.Greylisted:
		return "Greylisted"
	case series.Rejected:
		return "Rejected"
	case series.Virus:
		return "Viruses"
	case series.Trap:
		return "Trap hits"
	case series.Latch:
		return "Latches"
	}
	return k
}

// newChart draws s. Empty buckets get no bar, so the SVG stays small on
// a quiet day; each drawn bar carries its count in data-count and in its
// tooltip.
func newChart(s series.Series, step time.Duration) chart {
	c := chart{Kind: s.Kind, Label: kindLabel(s.Kind), Total: s.Total, Width: chartWidth,
		Height: chartHeight, Baseline: chartBottom, Top: chartTop, LabelY: chartHeight - 4, Step: human.Duration(step, " ")}
	for _, b := range s.Buckets {
		c.Max = max(c.Max, b.Count)
	}
	n := len(s.Buckets)
	if n == 0 {
		return c
	}
	c.Start = s.Buckets[0].Start.Local().Format("Jan 2 15:04")
	c.End = s.Buckets[n-1].Start.Add(step).Local().Format("Jan 2 15:04")
	if c.Max == 0 {
		return c
	}
	slot := chartWidth / float64(n)
	w := max(slot*0.8, 1)
	for i, b := range s.Buckets {
		if b.Count == 0 {
			continue
		}
		h := float64(b.Count) / float64(c.Max) * (chartBottom - chartTop)
		h = max(h, 1) // a count of 1 beside 10,000 is still visible
		from := b.Start.Local()
		c.Bars = append(c.Bars, bar{
			X: num(float64(i) * slot), Y: num(chartBottom - h), W: num(w), H: num(h), Count: b.Count,
			Title: fmt.Sprintf("%s–%s: %d %s", from.Format("15:04"), from.Add(step).Format("15:04"),
				b.Count, c.Label),
		})
	}
	return c
}

// num formats an SVG coordinate.
func num(f float64) string { return fmt.Sprintf("%.2f", f) }
