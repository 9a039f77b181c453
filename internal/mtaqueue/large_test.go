package mtaqueue

import (
	"fmt"
	"io"
	"runtime"
	"testing"
	"time"
)

// TestLargeQueueBoundedMemory streams 100,000 messages through the parser
// and a summary, and checks that the heap stays far below the 200 MB the
// queue tools may use: the listing is never held whole.
func TestLargeQueueBoundedMemory(t *testing.T) {
	const n = 100_000
	pr, pw := io.Pipe()
	go func() {
		for i := range n {
			fmt.Fprintf(pw, `{"queue_name": "deferred", "queue_id": "%011X", "arrival_time": %d, "message_size": 2048, "forced_expire": false, "sender": "spam%d@victim%d.example", "recipients": [{"address": "r%d@dest%d.example", "delay_reason": "connect to 127.0.0.1[127.0.0.1]:9: Connection refused"}]}`+"\n",
				i+1, 1796590000+i, i%5000, i%40, i, i%300)
		}
		pw.Close()
	}()
	s := NewSummarizer(time.Unix(1796700000, 0))
	var peak uint64
	var ms runtime.MemStats
	count := 0
	err := ParsePostqueue(pr, func(m Message) error {
		s.Add(m)
		if count++; count%10000 == 0 {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapAlloc)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sum := s.Summary(10)
	if sum.Messages != n || sum.DistinctSenders != 5000 || sum.DistinctRecipientDomains != 300 {
		t.Errorf("summary %+v", sum)
	}
	t.Logf("%d messages, peak heap %.1f MB", n, float64(peak)/(1<<20))
	if peak > 100<<20 {
		t.Errorf("peak heap %d MB, want well under 200 MB", peak>>20)
	}
}
