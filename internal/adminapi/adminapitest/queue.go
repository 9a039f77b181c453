package adminapitest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"mailwarden/internal/mtaqueue"
)

// Queue is an MTA queue in memory, for tests of the queue routes: Delete
// removes the messages it is given, as postsuper -d does, and reports
// those it did not find as gone.
type Queue struct {
	mu   sync.Mutex
	msgs []mtaqueue.Message
	// Deny, when set, is what CheckPrivilege answers: the MTA would
	// refuse this process up front.
	Deny error
	// DeleteErr, when set, is what Delete fails with, deleting nothing:
	// postsuper's own refusal.
	DeleteErr error
	// ListErr, when set, is what List fails with: postqueue failing.
	ListErr error
	// Deletes counts Delete calls.
	Deletes int
	seq     int
}

// Add queues n messages from sender to rcpt in the deferred queue,
// arrived an hour before now, with IDs that look like Postfix's, and
// returns q.
func (q *Queue) Add(now time.Time, sender, rcpt string, n int) *Queue {
	q.mu.Lock()
	defer q.mu.Unlock()
	for i := 0; i < n; i++ {
		q.seq++
		q.msgs = append(q.msgs, mtaqueue.Message{ID: fmt.Sprintf("4B%07X", q.seq),
			Queue: mtaqueue.Deferred, Arrival: now.Add(-time.Hour), Size: 1000, Sender: sender,
			Recipients: []mtaqueue.Recipient{{Address: rcpt}}})
	}
	return q
}

// IDs returns the queued IDs, in order.
func (q *Queue) IDs() []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []string
	for _, m := range q.msgs {
		out = append(out, m.ID)
	}
	return out
}

// Len is how many messages are queued.
func (q *Queue) Len() int { return len(q.IDs()) }

// List implements mtaqueue.Queue.
func (q *Queue) List(ctx context.Context, fn func(mtaqueue.Message) error) error {
	q.mu.Lock()
	msgs, err := slices.Clone(q.msgs), q.ListErr
	q.mu.Unlock()
	if err != nil {
		return err
	}
	for _, m := range msgs {
		if err := fn(m); err != nil {
			return err
		}
	}
	return nil
}

// Delete implements mtaqueue.Queue.
func (q *Queue) Delete(ctx context.Context, ids []string) (mtaqueue.Result, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.Deletes++
	if q.DeleteErr != nil {
		return mtaqueue.Result{}, q.DeleteErr
	}
	var res mtaqueue.Result
	for _, id := range ids {
		i := slices.IndexFunc(q.msgs, func(m mtaqueue.Message) bool { return m.ID == id })
		if i < 0 {
			res.Gone = append(res.Gone, id)
			continue
		}
		q.msgs = slices.Delete(q.msgs, i, i+1)
		res.Done = append(res.Done, id)
	}
	return res, nil
}

// Hold implements mtaqueue.Queue; the queue routes never hold.
func (q *Queue) Hold(context.Context, []string) (mtaqueue.Result, error) {
	return mtaqueue.Result{}, fmt.Errorf("adminapitest: Hold not supported")
}

// Release implements mtaqueue.Queue; the queue routes never release.
func (q *Queue) Release(context.Context, []string) (mtaqueue.Result, error) {
	return mtaqueue.Result{}, fmt.Errorf("adminapitest: Release not supported")
}

// CheckPrivilege implements mtaqueue.PrivilegeChecker.
func (q *Queue) CheckPrivilege(context.Context) error { return q.Deny }

// Open returns q as mtaqueue.Open would, for QueueOptions and watchers.
func (q *Queue) Open() (mtaqueue.Queue, error) { return q, nil }
