package integration_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
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
	source, err := harness.Program("smtp-source")
	if err != nil {
		b.Fatal(err)
	}
	postqueue, _ := harness.Program("postqueue")
	postsuper, _ := harness.Program("postsuper")
	total := 100000
	if s := os.Getenv("MAILWARDEN_QUEUE_N"); s != "" {
		if total, err = strconv.Atoi(s); err != nil || total < 20 {
			b.Fatalf("MAILWARDEN_QUEUE_N=%q: want a number of at least 20", s)
		}
	}
	for range b.N {
		p := harness.StartPostfix(b, harness.PostfixConfig{
			SinkPort: harness.FreePort(b),
			Extra:    []string{"master_service_disable = qmgr/unix"},
		})
		// Half the queue is one spam run; the rest is nine ordinary
		// senders.
		type run struct {
			from string
			n    int
		}
		runs := []run{{"spam@hijacked.example", total / 2}}
		for i := range 9 {
			runs = append(runs, run{fmt.Sprintf("user%d@school.example", i), (total - total/2) / 9})
		}
		runs[1].n += total - total/2 - 9*((total-total/2)/9)
		start := time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, len(runs))
		for i, r := range runs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sessions := max(2, 20*r.n/total)
				out, err := exec.Command(source, "-m", strconv.Itoa(r.n), "-s", strconv.Itoa(sessions), "-f", r.from,
					"-t", fmt.Sprintf("rcpt%d@dest%d.test", i, i%4), p.Addr).CombinedOutput()
				if err != nil {
					errs <- fmt.Errorf("smtp-source -f %s: %v\n%s", r.from, err, out)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
		b.Logf("queued %d messages in %v", total, time.Since(start).Round(time.Second))

		cfg := filepath.Join(b.TempDir(), "mailwarden.yaml")
		writeFile(b, cfg, fmt.Sprintf("queue:\n  mta: postfix\n  postqueue: %s\n  postsuper: %s\n  config_directory: %s\n",
			postqueue, postsuper, p.ConfigDir))
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
		timed("summary", "queue", "summary")
		timed("purge", "queue", "purge", "--sender", "spam@*", "--apply")
		if n := len(p.Queue(b)); n != total-total/2 {
			b.Fatalf("after the purge the queue holds %d messages, want %d", n, total-total/2)
		}
	}
}
