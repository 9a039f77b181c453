package integration_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"mailwarden/test/harness"
)

// BenchmarkQueueLarge is issue 13's large-queue figure: a real Postfix
// queue of MAILWARDEN_QUEUE_N messages (default 100,000; queue manager
// off, so nothing moves) from ten senders, half of them one spam run;
// then the built binary's "queue summary" and a pattern "queue purge
// --apply" of that half, each timed with its peak memory (max RSS).
// Not part of make test; run as root:
//
//	go test ./test/integration -run '^$' -bench BenchmarkQueueLarge -benchtime 1x -timeout 60m
func BenchmarkQueueLarge(b *testing.B) {
	bin := binary(b)
	total := 100000
	if s := os.Getenv("MAILWARDEN_QUEUE_N"); s != "" {
		var err error
		if total, err = strconv.Atoi(s); err != nil || total < 20 {
			b.Fatalf("MAILWARDEN_QUEUE_N=%q: want a number of at least 20", s)
		}
	}
	for range b.N {
		// Half the queue is one spam run; the rest is nine ordinary
		// senders.
		senders := []queueSender{{"spam@hijacked.example", "rcpt0@dest0.test", total / 2}}
		for i := range 9 {
			senders = append(senders, queueSender{fmt.Sprintf("user%d@school.example", i), fmt.Sprintf("rcpt%d@dest%d.test", i+1, (i+1)%4), (total - total/2) / 9})
		}
		senders[1].n += total - total/2 - 9*((total-total/2)/9)
		p, queueConfig := queuedPostfix(b, senders, func(n int) int { return max(2, 20*n/total) })
		cfg := filepath.Join(b.TempDir(), "mailwarden.yaml")
		writeFile(b, cfg, queueConfig+"\n")
		timed := func(what string, args ...string) {
			cmd := exec.Command(bin, append(args, "--config", cfg)...)
			t0 := time.Now()
			out, err := cmd.CombinedOutput()
			took := time.Since(t0)
			if err != nil {
				b.Fatalf("%s: %v\n%s", what, err, out)
			}
			rss := cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss // kB
			b.Logf("%s: %v, peak RSS %.1f MB", what, took.Round(10*time.Millisecond), float64(rss)/1024)
			b.ReportMetric(took.Seconds(), what+"_s")
			b.ReportMetric(float64(rss)/1024, what+"_MB")
		}
		// The reference: Postfix's own listing, which every summary
		// includes, timed in the same run.
		postqueue, _ := harness.Program("postqueue")
		ref := exec.Command(postqueue, "-c", p.ConfigDir, "-j")
		t0 := time.Now()
		if out, err := ref.Output(); err != nil {
			b.Fatalf("postqueue -j: %v", err)
		} else {
			b.Logf("postqueue -j alone: %v (%d bytes of JSON)", time.Since(t0).Round(10*time.Millisecond), len(out))
		}
		b.ReportMetric(time.Since(t0).Seconds(), "postqueue_s")
		timed("summary", "queue", "summary")
		timed("purge", "queue", "purge", "--sender", "spam@*", "--apply")
		if n := len(p.Queue(b)); n != total-total/2 {
			b.Fatalf("after the purge the queue holds %d messages, want %d", n, total-total/2)
		}
	}
}
