package load

import (
	"context"
	"testing"
)

// The benchmarks start mailwarden in-process with greylisting on and its
// defaults, and drive it with b.N new triplets: the greylisting path that
// writes the store, the heaviest one a new sender takes. The load
// generator shares the machine's cores with the daemon, so the figures
// compare only with figures taken the same way (bench/run.sh drives the
// built binary and the reference systems with one client).
//
//	go test -run '^$' -bench . -benchtime 4000x ./bench/load/
//
// Each reports tx/s (or req/s) and p99-ms beside ns/op.

// BenchmarkMilterGreylist runs full milter transactions over 8 sessions
// with 2 KB bodies, as bench/run.sh does.
func BenchmarkMilterGreylist(b *testing.B) {
	_, milterAddr := startDaemon(b, true)
	b.ResetTimer()
	r, err := RunMilter(context.Background(), MilterOptions{
		Common: Common{Addr: milterAddr, N: b.N, C: 8},
		Size:   2048,
	})
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	report(b, r, "tx/s")
}

// BenchmarkPolicyGreylist sends policy requests over 4 persistent
// connections, as bench/run.sh does.
func BenchmarkPolicyGreylist(b *testing.B) {
	policyAddr, _ := startDaemon(b, true)
	b.ResetTimer()
	r, err := RunPolicy(context.Background(), PolicyOptions{Common: Common{Addr: policyAddr, N: b.N, C: 4}})
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	report(b, r, "req/s")
}

func report(b *testing.B, r Result, unit string) {
	b.Helper()
	if n := r.Verdicts["error"]; n > 0 {
		b.Fatalf("%d of %d failed, first: %s", n, r.N, r.FirstError)
	}
	b.ReportMetric(r.Rate, unit)
	b.ReportMetric(float64(r.P99.Microseconds())/1000, "p99-ms")
}
