package redis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"mailwarden/internal/store"
	"mailwarden/internal/store/redis/redistest"
)

// TestTripletMemory measures what a greylist triplet costs Redis, with
// addresses of typical length, and logs it (go test -v -run Memory).
// It spreads 40,000 triplets over 512 buckets, about 78 a bucket, as
// ten million fill the store's 131,072, and checks the 150 bytes per
// entry issue 17 asks for and that the buckets are listpacks.
func TestTripletMemory(t *testing.T) {
	srv := redistest.Server(t, redistest.NoPersistence(),
		redistest.Args("--hash-max-listpack-value", strconv.Itoa(ListpackValue)))
	ctx := context.Background()
	const n, buckets = 40000, 512
	s := open(t, Options{URL: srv.URL(), buckets: buckets})
	used := func() int {
		info, err := s.c.Info(ctx, "memory").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(info, "\r\n") {
			if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
				b, _ := strconv.Atoi(v)
				return b
			}
		}
		t.Fatal("no used_memory in INFO memory")
		return 0
	}
	if err := putScript.Load(ctx, s.c).Err(); err != nil {
		t.Fatal(err)
	}
	before := used()
	now := time.UnixMilli(time.Now().UnixMilli())
	pipe := s.c.Pipeline()
	var field string
	for i := range n {
		tr := store.Triplet{
			Client:    fmt.Sprintf("198.%d.%d.0/24", i/256%256, i%256),
			Sender:    fmt.Sprintf("bounce-%06d@mail.example.com", i),
			Recipient: fmt.Sprintf("firstname.lastname%d@example.org", i%500),
			FirstSeen: now, LastSeen: now.Add(6 * time.Minute), PassedAt: now.Add(6 * time.Minute),
			Attempts: 2, Expires: now.Add(35 * 24 * time.Hour),
		}
		field = tripletField(tr.Client, tr.Sender, tr.Recipient)
		v := encodeTriplet(tr)
		putScript.EvalSha(ctx, pipe, []string{s.bucket(field)}, field, v, expiryOf(v), sweepAbove)
		if pipe.Len() == 1000 {
			if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, goredis.Nil) {
				t.Fatal(err)
			}
		}
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, goredis.Nil) {
		t.Fatal(err)
	}
	per := float64(used()-before) / n
	sample := s.bucket(field)
	usage, _ := s.c.MemoryUsage(ctx, sample).Result()
	fields, _ := s.c.HLen(ctx, sample).Result()
	t.Logf("%d triplets in %d buckets: %.0f bytes each by INFO memory (fields of %d bytes, prefix %q); "+
		"MEMORY USAGE of a bucket of %d: %d",
		n, buckets, per, len(field), DefaultPrefix, fields, usage)
	if per > 150 {
		t.Errorf("a triplet costs %.0f bytes, want at most 150", per)
	}
	for b := range uint64(buckets) {
		enc, err := s.c.ObjectEncoding(ctx, s.k.bucket(b)).Result()
		if err != nil || enc != "listpack" {
			t.Fatalf("OBJECT ENCODING of bucket %d = %q, %v; want listpack", b, enc, err)
		}
	}
}

// TestBuckets: a bucket's TTL is its latest field's expiry; an expired
// field is not read back, and goes when a write adds to a full bucket;
// a key of the earlier per-triplet layout is passed over.
func TestBuckets(t *testing.T) {
	srv := redistest.Server(t, redistest.NoPersistence())
	ctx := context.Background()
	s := open(t, Options{URL: srv.URL(), Prefix: freshPrefix(), buckets: 1})
	bucket := s.k.bucket(0)
	now := time.UnixMilli(time.Now().UnixMilli())
	tr := func(i int, life time.Duration) store.Triplet {
		return store.Triplet{Client: "192.0.2.0/24", Sender: "a@example.org", Recipient: fmt.Sprintf("r%d@example.net", i),
			FirstSeen: now, LastSeen: now, Attempts: 1, Expires: now.Add(life)}
	}
	expireTime := func() int64 {
		t.Helper()
		v, err := s.c.PExpireTime(ctx, bucket).Result()
		if err != nil {
			t.Fatal(err)
		}
		return v.Milliseconds()
	}
	put := func(trs ...store.Triplet) {
		t.Helper()
		for _, x := range trs {
			if err := s.PutTriplet(ctx, x); err != nil {
				t.Fatal(err)
			}
		}
	}

	put(tr(0, time.Hour))
	if got := expireTime(); got != now.Add(time.Hour).UnixMilli() {
		t.Errorf("bucket expires at %d, want the triplet's %d", got, now.Add(time.Hour).UnixMilli())
	}
	put(tr(1, 2*time.Hour), tr(2, 30*time.Minute))
	if got := expireTime(); got != now.Add(2*time.Hour).UnixMilli() {
		t.Errorf("bucket expires at %d, want the latest triplet's %d", got, now.Add(2*time.Hour).UnixMilli())
	}

	// Expired by Redis's clock, yet in a bucket that lives on.
	var stale []store.Triplet
	for i := range 10 {
		stale = append(stale, tr(100+i, -time.Minute))
	}
	put(stale...)
	if _, err := s.GetTriplet(ctx, stale[0].Client, stale[0].Sender, stale[0].Recipient, now); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetTriplet of an expired triplet: %v, want not found", err)
	}
	if ts, err := s.ListTriplets(ctx, store.TripletFilter{}, now); err != nil || len(ts) != 3 {
		t.Errorf("ListTriplets = %d triplets, %v; want the 3 unexpired", len(ts), err)
	}

	// An old-layout key under the triplet prefix is no bucket.
	if err := s.c.Set(ctx, s.k.prefix+"t:12:192.0.2.0/2413:a@example.orgb@example.net", "x", time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	if st, err := s.GreylistStats(ctx, now, 1); err != nil || st.Pending != 3 {
		t.Errorf("GreylistStats = %+v, %v; want 3 pending", st, err)
	}

	for i := 3; s.c.HLen(ctx, bucket).Val() <= sweepAbove; i++ {
		put(tr(i, time.Hour))
	}
	put(tr(1000, time.Hour)) // adds to a bucket past sweepAbove: sweeps it
	for _, x := range stale {
		f := tripletField(x.Client, x.Sender, x.Recipient)
		if ok, _ := s.c.HExists(ctx, bucket, f).Result(); ok {
			t.Fatalf("expired field %q still in the bucket after it grew past %d", f, sweepAbove)
		}
	}
	if got := expireTime(); got != now.Add(2*time.Hour).UnixMilli() {
		t.Errorf("bucket expires at %d after the sweep, want %d", got, now.Add(2*time.Hour).UnixMilli())
	}
}

// TestServerWarnings: Open warns when the server's hash settings would
// turn buckets into hash tables or its eviction policy may drop state,
// and not when they suffice.
func TestServerWarnings(t *testing.T) {
	lp := strconv.Itoa(ListpackValue)
	for _, tc := range []struct {
		args []string
		warn string // "" for no warning
	}{
		{nil, "will not stay compact"},
		{[]string{"--hash-max-listpack-value", lp}, ""},
		{[]string{"--hash-max-listpack-value", "1024", "--hash-max-listpack-entries", "64"}, "will not stay compact"},
		{[]string{"--hash-max-listpack-value", lp, "--maxmemory", "1gb", "--maxmemory-policy", "allkeys-lru"}, "may evict latches and freezes"},
		{[]string{"--hash-max-listpack-value", lp, "--maxmemory", "1gb", "--maxmemory-policy", "volatile-lru"}, "may evict greylist and rate state"},
		{[]string{"--hash-max-listpack-value", lp, "--maxmemory", "1gb", "--maxmemory-policy", "noeviction"}, ""},
		{[]string{"--hash-max-listpack-value", lp, "--maxmemory-policy", "allkeys-lru"}, ""},
	} {
		srv := redistest.Server(t, redistest.NoPersistence(), redistest.Args(tc.args...))
		var b strings.Builder
		s := open(t, Options{URL: srv.URL(), Log: slog.New(slog.NewTextHandler(&b, nil))})
		log, warnings := b.String(), s.ServerWarnings()
		if tc.warn == "" && (strings.Contains(log, "level=WARN") || strings.Contains(log, "level=ERROR") || len(warnings) > 0) {
			t.Errorf("server with %q: warned, want no warning; log: %s; ServerWarnings: %q", tc.args, log, warnings)
		}
		if tc.warn != "" && !strings.Contains(log, tc.warn) {
			t.Errorf("server with %q: no warning %q; log: %s", tc.args, tc.warn, log)
		}
		// What status shows says the same, with the setting found.
		if tc.warn != "" && (len(warnings) != 1 || !strings.Contains(warnings[0], tc.warn)) {
			t.Errorf("server with %q: ServerWarnings %q, want one saying %q", tc.args, warnings, tc.warn)
		}
	}
}
