package mtaqueue

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// maxLine bounds one line of postqueue -j output: a message with
// thousands of recipients is one long line, but no line is unbounded.
const maxLine = 64 << 20

// jsonMessage is one object of postqueue -j (postqueue(1), "JSON OBJECT
// FORMAT"). Members not listed here are ignored, as the manual asks.
type jsonMessage struct {
	QueueName    string `json:"queue_name"`
	QueueID      string `json:"queue_id"`
	ArrivalTime  *int64 `json:"arrival_time"`
	MessageSize  int64  `json:"message_size"`
	ForcedExpire bool   `json:"forced_expire"`
	Sender       string `json:"sender"`
	Recipients   []struct {
		Address     string `json:"address"`
		DelayReason string `json:"delay_reason"`
	} `json:"recipients"`
}

// ParsePostqueue reads postqueue -j output from r, one JSON object per
// line, and calls fn for each message as it is read, so that memory does
// not grow with the queue. A line that is not a valid message is an
// error naming its line number; blank lines are skipped.
func ParsePostqueue(r io.Reader, fn func(Message) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	line := 0
	for sc.Scan() {
		line++
		b := sc.Bytes()
		if len(trimSpace(b)) == 0 {
			continue
		}
		m, err := parseLine(b)
		if err != nil {
			return fmt.Errorf("postqueue -j output, line %d: %w", line, err)
		}
		if err := fn(m); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("postqueue -j output, line %d: %w", line+1, err)
	}
	return nil
}

func parseLine(b []byte) (Message, error) {
	var j jsonMessage
	if err := json.Unmarshal(b, &j); err != nil {
		return Message{}, fmt.Errorf("not a JSON object: %w", err)
	}
	if !ValidID(j.QueueID) {
		return Message{}, fmt.Errorf("queue_id %q is not a Postfix queue ID", j.QueueID)
	}
	if !slices.Contains(postfixQueues, j.QueueName) {
		return Message{}, fmt.Errorf("message %s: unknown queue_name %q", j.QueueID, j.QueueName)
	}
	if j.ArrivalTime == nil {
		return Message{}, fmt.Errorf("message %s: no arrival_time", j.QueueID)
	}
	if j.MessageSize < 0 {
		return Message{}, fmt.Errorf("message %s: negative message_size %d", j.QueueID, j.MessageSize)
	}
	m := Message{
		ID:           j.QueueID,
		Queue:        j.QueueName,
		Arrival:      time.Unix(*j.ArrivalTime, 0),
		Size:         j.MessageSize,
		Sender:       j.Sender,
		ForcedExpire: j.ForcedExpire,
		Recipients:   make([]Recipient, len(j.Recipients)),
	}
	for i, r := range j.Recipients {
		m.Recipients[i] = Recipient{Address: r.Address, DelayReason: r.DelayReason}
	}
	return m, nil
}

// ValidID reports whether id looks like a Postfix queue ID: short or
// long form, letters and digits only. Only such IDs are ever written to
// postsuper's standard input, one per line.
func ValidID(id string) bool {
	// postsuper reads "ALL" as every message in the queue: never let a
	// listed ID be taken for it.
	if id == "" || len(id) > 64 || strings.EqualFold(id, "ALL") {
		return false
	}
	for _, c := range []byte(id) {
		if !('0' <= c && c <= '9' || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z') {
			return false
		}
	}
	return true
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\r') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}
