// Package mtaqueue lists an MTA's mail queue and deletes, holds and
// releases messages in it, in batches, for "mailwarden queue". It works
// offline, through the MTA's own tools: for Postfix, postqueue -j to list
// and postsuper with queue IDs on standard input to act; for Exim, its
// spool's -H files to list and exim -Mrm, -Mf and -Mt to act.
package mtaqueue

import (
	"context"
	"time"
)

// Queue names, as postqueue -j reports them (postqueue(1), "JSON OBJECT
// FORMAT").
const (
	Maildrop = "maildrop"
	Incoming = "incoming"
	Active   = "active"
	Deferred = "deferred"
	Hold     = "hold"
	// Frozen is Exim's: a message Exim stopped trying to deliver, or
	// one "queue hold" froze (exim -Mf).
	Frozen = "frozen"
)

// QueueNames are the queues a filter may name.
var QueueNames = []string{Active, Deferred, Hold, Incoming, Maildrop, Frozen}

// postfixQueues are the queues postqueue -j reports.
var postfixQueues = []string{Active, Deferred, Hold, Incoming, Maildrop}

// Message is one queued message.
type Message struct {
	ID      string    `json:"queue_id"`
	Queue   string    `json:"queue_name"`
	Arrival time.Time `json:"arrival_time"`
	Size    int64     `json:"message_size"`
	Sender  string    `json:"sender"`
	// AuthUser is the name the sender authenticated with, where the
	// MTA's listing records it (Exim's spool and Postfix's queue files
	// do; postqueue -j does
	// not); "" otherwise.
	AuthUser     string      `json:"auth_user,omitempty"`
	Recipients   []Recipient `json:"recipients"`
	ForcedExpire bool        `json:"forced_expire,omitempty"`
}

// Recipient is one recipient of a queued message and why its delivery
// was put off, if it was.
type Recipient struct {
	Address     string `json:"address"`
	DelayReason string `json:"delay_reason,omitempty"`
}

// Queue is an MTA's mail queue.
type Queue interface {
	// List calls fn for every message in the queue, as the MTA lists
	// it, without holding the whole listing in memory. It stops at the
	// first error fn returns and returns it.
	List(ctx context.Context, fn func(Message) error) error
	// Delete removes the messages with these IDs.
	Delete(ctx context.Context, ids []string) (Result, error)
	// Hold puts the messages with these IDs in the hold queue.
	Hold(ctx context.Context, ids []string) (Result, error)
	// Release moves held messages with these IDs back to the queue.
	Release(ctx context.Context, ids []string) (Result, error)
}

// Result is what an action did to the IDs it was given.
type Result struct {
	// Done are the IDs the MTA says it acted on.
	Done []string `json:"done"`
	// Gone are the IDs it did not act on: the message left the queue
	// after it was listed, or was already where the action puts it.
	Gone []string `json:"gone"`
}

func (r *Result) add(o Result) {
	r.Done = append(r.Done, o.Done...)
	r.Gone = append(r.Gone, o.Gone...)
}

// Selection is what a filter picked from a listing.
type Selection struct {
	// IDs are the selected messages' queue IDs, in listing order.
	IDs []string
	// Sample is the first few selected messages in full.
	Sample []Message
	// Bytes is the selected messages' total size.
	Bytes int64
}

// Select lists q and returns the messages m selects, keeping sample of
// them in full and only the IDs of the rest.
func Select(ctx context.Context, q Queue, m *Matcher, sample int) (Selection, error) {
	var s Selection
	err := q.List(ctx, func(msg Message) error {
		if !m.Match(msg) {
			return nil
		}
		s.IDs = append(s.IDs, msg.ID)
		s.Bytes += msg.Size
		if len(s.Sample) < sample {
			s.Sample = append(s.Sample, msg)
		}
		return nil
	})
	return s, err
}
