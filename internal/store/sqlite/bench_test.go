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
	return benchStoreWith(b, Options{})
}

func benchStoreWith(b *testing.B, o Options) *Store {
	b.Helper()
	s, err := OpenWith(b.TempDir(), slog.New(slog.NewTextHandler(io.Discard, nil)), o)
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

// BenchmarkActiveLatch is the latch check run for every message, in the
// daemon's mirrored store: half the look-ups find one of 100 active
// latches, half miss, as for clients that are not latched.
func BenchmarkActiveLatch(b *testing.B) {
	parallel(b, func(b *testing.B) func(pb *testing.PB) {
		s := benchStoreWith(b, Options{Mirror: true})
		ctx := context.Background()
		now := time.Now()
		keys := make([]string, 200)
		for i := range keys {
			keys[i] = fmt.Sprintf("10.0.%d.%d", i/256, i%256)
			if i%2 == 0 {
				l := store.Latch{Kind: store.LatchClient, Key: keys[i], Rule: "virus", Reason: "bench"}
				if _, err := s.AddLatch(ctx, l, now); err != nil {
					b.Fatal(err)
				}
			}
		}
		var seq atomic.Int64
		return func(pb *testing.PB) {
			for pb.Next() {
				i := seq.Add(1) % int64(len(keys))
				_, err := s.ActiveLatch(ctx, store.LatchClient, keys[i], now)
				if (err == nil) != (i%2 == 0) {
					b.Errorf("ActiveLatch(%s): %v", keys[i], err)
					return
				}
			}
		}
	})
}

// BenchmarkTakeRate is one rate-limit check of a message, allowed, over
// 1,000 keys; the state is written behind.
func BenchmarkTakeRate(b *testing.B) {
	parallel(b, func(b *testing.B) func(pb *testing.PB) {
		s := benchStore(b)
		ctx := context.Background()
		now := time.Now()
		keys := make([]string, 1000)
		for i := range keys {
			keys[i] = fmt.Sprintf("user:user%d@example.org", i)
		}
		var seq atomic.Int64
		return func(pb *testing.PB) {
			for pb.Next() {
				k := keys[seq.Add(1)%int64(len(keys))]
				ok, _, err := s.TakeRate(ctx, k, 1, 1<<30, time.Hour, now)
				if err != nil || !ok {
					b.Errorf("TakeRate(%s) = %v, %v", k, ok, err)
					return
				}
			}
		}
	})
}
