package mailbox

import (
	"io"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"mailwarden/internal/mailbox/mailboxtest"
)

// benchScale returns the benchmark tree's size: 10,000 domains of 100
// mailboxes unless MAILBOX_BENCH_DOMAINS says otherwise.
func benchScale() int {
	if n, err := strconv.Atoi(os.Getenv("MAILBOX_BENCH_DOMAINS")); err == nil && n > 0 {
		return n
	}
	return 10000
}

// BenchmarkAudit reads and audits a generated DirectAdmin tree of
// 1,000,000 mailboxes on 10,000 domains (with 900 planted ones), stat'ing
// every mail directory, and writes the JSON audit. Generating the tree
// takes minutes and is not timed; set MAILBOX_BENCH_DIR to generate it
// somewhere other than the default temporary directory (a tmpfs is much
// faster to fill).
func BenchmarkAudit(b *testing.B) {
	dir := b.TempDir()
	if d := os.Getenv("MAILBOX_BENCH_DIR"); d != "" {
		var err error
		if dir, err = os.MkdirTemp(d, "mailbox-bench-"); err != nil {
			b.Fatal(err)
		}
		defer os.RemoveAll(dir)
	}
	domains := benchScale()
	start := time.Now()
	tr, err := mailboxtest.Generate(dir, mailboxtest.Options{Domains: domains, MinBoxes: 100, MaxBoxes: 100,
		MailDirs: true, Seed: 1, UID: -1})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := tr.Attack(mailboxtest.AttackOptions{Count: 900}); err != nil {
		b.Fatal(err)
	}
	b.Logf("generated %d mailboxes on %d domains in %v", len(tr.Legit)+len(tr.Bogus), domains, time.Since(start))
	src := Source{Layout: LayoutDirectAdmin, Root: tr.Root, Home: tr.Home}
	o := auditOptions(nil)
	var peak uint64
	b.ReportAllocs()
	for b.Loop() {
		inv, err := Read(src, nil)
		if err != nil {
			b.Fatal(err)
		}
		r := Audit(inv, o)
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		peak = max(peak, ms.HeapAlloc)
		if r.Len() != len(tr.Legit)+len(tr.Bogus) || r.Suspect < 900 {
			b.Fatalf("audited %d mailboxes, %d suspect", r.Len(), r.Suspect)
		}
		if err := WriteJSON(io.Discard, r, "", time.Now()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(tr.Legit)+len(tr.Bogus)), "mailboxes")
	b.ReportMetric(float64(peak)/(1<<20), "heap-MB")
}
