package sqlite

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"mailwarden/internal/store"
)

// parallel runs body under b.RunParallel twice: with one goroutine per
// CPU, and with eight, which is closer to a mail server with many SMTP
// sessions in flight; group commit gains when writes arrive together.
func parallel(b *testing.B, setup func(b *testing.B) func(pb *testing.PB)) {
	for _, p := range []int{1, 8} {
		b.Run(fmt.Sprintf("goroutines=%dxCPU", p), func(b *testing.B) {
			body := setup(b)
			b.SetParallelism(p)
			b.ResetTimer()
			b.RunParallel(body)
		})
	}
}

func benchStore(b *testing.B) *Store {
	b.Helper()
	s, err := Open(b.TempDir(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	return s
}

func benchTriplet(i int64, now time.Time) store.Triplet {
	return store.Triplet{
		Client:    fmt.Sprintf("10.%d.%d.0/24", (i>>8)&0xff, i&0xff),
		Sender:    fmt.Sprintf("sender%d@example.org", i),
		Recipient: fmt.Sprintf("user%d@example.net", i%1000),
		FirstSeen: now,
		LastSeen:  now,
		Attempts:  1,
		Expires:   now.Add(48 * time.Hour),
	}
}

func BenchmarkPutTriplet(b *testing.B) {
	parallel(b, func(b *testing.B) func(pb *testing.PB) {
		s := benchStore(b)
		ctx := context.Background()
		now := time.Now()
		var seq atomic.Int64
		return func(pb *testing.PB) {
			for pb.Next() {
				if err := s.PutTriplet(ctx, benchTriplet(seq.Add(1), now)); err != nil {
					b.Error(err)
					return
				}
			}
		}
	})
}

func BenchmarkGetTriplet(b *testing.B) {
	parallel(b, func(b *testing.B) func(pb *testing.PB) {
		s := benchStore(b)
		ctx := context.Background()
		now := time.Now()
		const stored = 10000
		for i := range int64(stored) {
			if err := s.PutTriplet(ctx, benchTriplet(i, now)); err != nil {
				b.Fatal(err)
			}
		}
		var seq atomic.Int64
		return func(pb *testing.PB) {
			for pb.Next() {
				t := benchTriplet(seq.Add(1)%stored, now)
				if _, err := s.GetTriplet(ctx, t.Client, t.Sender, t.Recipient, now); err != nil {
					b.Error(err)
					return
				}
			}
		}
	})
}

// BenchmarkGreylistMix is the new-triplet path of the greylist check: a
// look-up that misses, then a Put of the new pending triplet.
func BenchmarkGreylistMix(b *testing.B) {
	parallel(b, func(b *testing.B) func(pb *testing.PB) {
		s := benchStore(b)
		ctx := context.Background()
		now := time.Now()
		var seq atomic.Int64
		return func(pb *testing.PB) {
			for pb.Next() {
				t := benchTriplet(seq.Add(1), now)
				_, err := s.GetTriplet(ctx, t.Client, t.Sender, t.Recipient, now)
				if !errors.Is(err, store.ErrNotFound) {
					b.Errorf("GetTriplet of a new triplet: %v", err)
					return
				}
				if err := s.PutTriplet(ctx, t); err != nil {
					b.Error(err)
					return
				}
			}
		}
	})
}
