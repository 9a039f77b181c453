package storecopy_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"mailwarden/internal/store"
	"mailwarden/internal/store/memory"
	"mailwarden/internal/store/storecopy"
	"mailwarden/internal/store/storetest"
)

func TestCopyRefusesTargetThatIsNotEmpty(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	src, dst := memory.New(), memory.New()
	if err := dst.AddUser(ctx, store.User{Name: "ann", Role: store.RoleAdmin, Hash: []byte("h"), Created: now}); err != nil {
		t.Fatal(err)
	}
	if _, err := src.AddLatch(ctx, store.Latch{Kind: store.LatchClient, Key: "10.0.0.5"}, now); err != nil {
		t.Fatal(err)
	}
	_, err := storecopy.Copy(ctx, src, dst, now, nil)
	if !errors.Is(err, storecopy.ErrNotEmpty) || !strings.Contains(err.Error(), "1 users") {
		t.Fatalf("Copy into a store with a user = %v; want ErrNotEmpty naming the user", err)
	}
	if ls, _ := dst.ListLatches(ctx, store.LatchFilter{}, now); len(ls) != 0 {
		t.Errorf("a refused copy wrote %d latches", len(ls))
	}
}

func TestCopyRefusesTargetWithoutImporter(t *testing.T) {
	_, err := storecopy.Copy(context.Background(), memory.New(), storetest.WithFaults(memory.New()), time.Now(), nil)
	if !errors.Is(err, storecopy.ErrNoImporter) {
		t.Fatalf("Copy into a store without Importer = %v; want ErrNoImporter", err)
	}
}

// faultySource is a source whose reads can fail; AllPorts, which Faulty
// does not wrap, reads the store beneath.
type faultySource struct {
	*storetest.Faulty
	ports *memory.Store
}

func (f faultySource) AllPorts(ctx context.Context) ([]store.PortState, error) {
	return f.ports.AllPorts(ctx)
}

func TestCopySourceFailsPartWay(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	mem := memory.New()
	if _, err := mem.AddLatch(ctx, store.Latch{Kind: store.LatchClient, Key: "10.0.0.5"}, now); err != nil {
		t.Fatal(err)
	}
	src := faultySource{storetest.WithFaults(mem), mem}
	src.FailOn("ListUsers", errors.New("disk on fire"))
	dst := memory.New()
	var seen []string
	counts, err := storecopy.Copy(ctx, src, dst, now, func(kind string, n int) { seen = append(seen, kind) })
	if err == nil || !strings.Contains(err.Error(), "copying users") || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("Copy from a source that fails = %v; want the failure, naming users", err)
	}
	if len(counts) == 0 || counts[len(counts)-1].Kind != storecopy.Users {
		t.Errorf("counts %+v: want them to end at users, where it failed", counts)
	}
	if len(seen) != 1 || seen[0] != storecopy.Latches {
		t.Errorf("progress saw %v; want the one latch", seen)
	}
	// The target holds part of the source; a second try must not add to it.
	src.Heal()
	if _, err := storecopy.Copy(ctx, src, dst, now, nil); !errors.Is(err, storecopy.ErrNotEmpty) {
		t.Errorf("Copy again into the part-filled target = %v; want ErrNotEmpty", err)
	}
}

func TestCopyEventsInBatches(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	src, dst := memory.New(), memory.New()
	evs := make([]store.Event, 2500)
	for i := range evs {
		evs[i] = store.Event{Time: now, Kind: store.EventReject}
	}
	if err := src.AppendEvents(ctx, evs...); err != nil {
		t.Fatal(err)
	}
	counts, err := storecopy.Copy(ctx, src, dst, now, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c := counts[len(counts)-1]; c.Kind != storecopy.Events || c.Copied != 2500 || !c.OK() {
		t.Errorf("events: %+v; want 2500 copied and counted on both sides", c)
	}
	if counts.Total() != 2500 {
		t.Errorf("Total = %d, want 2500", counts.Total())
	}
}

// A source that changes during the copy (a daemon still running on it)
// fails the verification.
func TestCopyVerificationCatchesAChangingSource(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	mem := memory.New()
	src := faultySource{storetest.WithFaults(mem), mem}
	added := false
	src.OnCall(func(c storetest.Call) {
		if c.Method == "ListUsers" && !added {
			added = true
			if err := mem.AddUser(ctx, store.User{Name: "late", Role: store.RoleViewer, Hash: []byte("h"), Created: now}); err != nil {
				t.Error(err)
			}
		}
	})
	counts, err := storecopy.Copy(ctx, src, memory.New(), now, nil)
	if !errors.Is(err, storecopy.ErrMismatch) || !strings.Contains(err.Error(), "users: 0 copied, source 1, target 0") {
		t.Fatalf("Copy from a source that changed = %v; want ErrMismatch naming the users", err)
	}
	for _, c := range counts {
		if c.OK() == (c.Kind == storecopy.Users) {
			t.Errorf("%+v: OK() = %v", c, c.OK())
		}
	}
}
