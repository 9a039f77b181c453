package mtaqueue

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Reading Postfix's queue files directly is what showq(8) does for
// postqueue -j, without the round trip through showq and JSON: a
// summary of 100,000 messages spends most of its time there. It needs
// read access to the queue directories (root or mail_owner); without
// it, List uses postqueue -j. The queue file also records what
// postqueue -j does not show: the SASL login the message was sent with.

// Postfix queue file record types (src/global/rec_type.h).
const (
	recSize   = 'C' // first record: "message_segment_size data_offset ..."
	recTime   = 'T' // arrival time: "seconds microseconds"
	recFrom   = 'S' // envelope sender; "" is the null sender
	recRcpt   = 'R' // recipient still to deliver
	recAttr   = 'A' // named attribute: "name=value"
	recMesg   = 'M' // start of the message content
	recXtra   = 'X' // start of the records extracted from headers
	recPtr    = 'p' // pointer: continue at this offset
	recEnd    = 'E' // last record
	maxRecord = 1 << 20
	// maxReverseJumps bounds pointer records that jump backwards, as
	// Postfix's rec_goto does, so a corrupt file cannot loop.
	maxReverseJumps = 10000
)

// postfixQueueDirs are the queues showq lists, in its order; maildrop
// holds mail postdrop wrote that pickup has not read yet.
var postfixQueueDirs = []string{Maildrop, Incoming, Active, Deferred, Hold}

// errQueueFileUnreadable marks a queue directory this process may not
// read, so that List falls back to postqueue -j.
var errQueueFileUnreadable = errors.New("mtaqueue: queue directory not readable")

// listFiles lists the queue from its files. It returns an error wrapping
// errQueueFileUnreadable, having called fn for nothing, when the queue
// directories cannot be read.
func (p *Postfix) listFiles(ctx context.Context, fn func(Message) error) error {
	dir, err := p.queueDir(ctx)
	if err != nil {
		return fmt.Errorf("%w: %v", errQueueFileUnreadable, err)
	}
	for _, q := range postfixQueueDirs {
		f, err := os.Open(filepath.Join(dir, q))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return fmt.Errorf("%w: %v", errQueueFileUnreadable, err)
		}
		f.Close()
	}
	// Opening 100,000 files is most of the time: a few readers at once
	// overlap their waits. fn is called from this goroutine only.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type job struct{ path, queue string }
	jobs := make(chan job, 256)
	msgs := make(chan Message, 256)
	walked := make(chan error, 1)
	go func() {
		defer close(jobs)
		walked <- walkQueues(ctx, dir, func(path, queue string) error {
			select {
			case jobs <- job{path, queue}:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	var wg sync.WaitGroup
	for range queueFileReaders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				msg, ok, err := readQueueFile(j.path, j.queue)
				if err != nil || !ok {
					// Gone (delivered or moved meanwhile), or still
					// being written: showq leaves such a file out too.
					continue
				}
				select {
				case msgs <- msg:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	go func() {
		wg.Wait()
		close(msgs)
	}()
	var fnErr error
	for msg := range msgs {
		if fnErr == nil {
			if fnErr = fn(msg); fnErr != nil {
				cancel()
			}
		}
	}
	if fnErr != nil {
		return fnErr
	}
	return <-walked
}

// queueFileReaders is how many queue files listFiles reads at once.
const queueFileReaders = 4

// walkQueues calls visit with the path and queue of every file in the
// queue directories whose name is a queue ID.
func walkQueues(ctx context.Context, dir string, visit func(path, queue string) error) error {
	for _, q := range postfixQueueDirs {
		err := filepath.WalkDir(filepath.Join(dir, q), func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil // the queue, or a hash directory, went away
				}
				return err
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			if d.IsDir() || !d.Type().IsRegular() || !ValidID(d.Name()) {
				return nil
			}
			return visit(path, q)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// queueDir returns the instance's queue directory: set, or asked of
// postconf once.
func (p *Postfix) queueDir(ctx context.Context) (string, error) {
	if p.QueueDir != "" {
		return p.QueueDir, nil
	}
	dir, err := p.postconf(ctx, "queue_directory")
	if err != nil {
		return "", err
	}
	if !filepath.IsAbs(dir) {
		return "", fmt.Errorf("postconf -h queue_directory: %q is not an absolute path", dir)
	}
	p.QueueDir = dir
	return dir, nil
}

// readQueueFile reads one queue file. ok is false for a file that is
// gone or not complete (no end record yet).
func readQueueFile(path, queue string) (Message, bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return Message{}, false, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return Message{}, false, err
	}
	msg, err := ParsePostfixQueueFile(f, filepath.Base(path), queue, st.ModTime(), st.Size())
	if err != nil {
		return Message{}, false, err
	}
	return msg, true, nil
}

// ParsePostfixQueueFile reads the envelope of a Postfix queue file as
// showq(8) does: arrival time, size, sender, the recipients still to be
// delivered, and the sasl_username attribute smtpd(8) records for an
// authenticated sender. It follows pointer records and skips the message
// content. modTime and fileSize stand in for a missing time record and,
// in the maildrop queue, for the size. An error says why the file is
// not a complete, well-formed queue file.
func ParsePostfixQueueFile(r io.ReadSeeker, id, queue string, modTime time.Time, fileSize int64) (Message, error) {
	rd := &recordReader{r: r, br: bufio.NewReaderSize(r, 4096)}
	msg := Message{ID: id, Queue: queue, Arrival: modTime, Size: fileSize}
	sizeKnown, senderSeen, haveTime := false, false, false
	var segment int64
	reverse := 0
	var lastJump int64
	for {
		typ, data, err := rd.next()
		if err != nil {
			return Message{}, fmt.Errorf("queue file %s: %w", id, err)
		}
		switch typ {
		case recSize:
			if sizeKnown || queue == Maildrop {
				continue
			}
			fields := strings.Fields(string(data))
			if len(fields) == 0 || strings.Trim(string(data), "0123456789 ") != "" {
				return Message{}, fmt.Errorf("queue file %s: malformed size record %q", id, clip(string(data)))
			}
			n, err := strconv.ParseInt(fields[0], 10, 64)
			if err != nil || n < 0 {
				return Message{}, fmt.Errorf("queue file %s: malformed size record %q", id, clip(string(data)))
			}
			segment, msg.Size, sizeKnown = n, n, true
		case recTime:
			if haveTime {
				continue
			}
			sec, _, _ := strings.Cut(strings.TrimSpace(string(data)), " ")
			if n, err := strconv.ParseInt(sec, 10, 64); err == nil && n > 0 {
				msg.Arrival, haveTime = time.Unix(n, 0), true
			}
		case recFrom:
			if senderSeen {
				return Message{}, fmt.Errorf("queue file %s: a second sender record", id)
			}
			msg.Sender, senderSeen = string(data), true
		case recRcpt:
			if !senderSeen {
				return Message{}, fmt.Errorf("queue file %s: a recipient before the sender", id)
			}
			msg.Recipients = append(msg.Recipients, Recipient{Address: string(data)})
		case recAttr:
			if v, ok := strings.CutPrefix(string(data), "sasl_username="); ok {
				msg.AuthUser = v
			}
		case recMesg:
			// The content is message_segment_size bytes from here to the
			// extracted records; without a size record, read through it.
			if sizeKnown {
				if err := rd.seek(rd.pos + segment); err != nil {
					return Message{}, fmt.Errorf("queue file %s: %w", id, err)
				}
			}
		case recPtr:
			off, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
			if err != nil || off < 0 {
				return Message{}, fmt.Errorf("queue file %s: malformed pointer record %q", id, clip(string(data)))
			}
			if off == 0 {
				continue // a placeholder
			}
			if off <= lastJump {
				if reverse++; reverse > maxReverseJumps {
					return Message{}, fmt.Errorf("queue file %s: too many backward pointer records", id)
				}
			}
			lastJump = off
			if err := rd.seek(off); err != nil {
				return Message{}, fmt.Errorf("queue file %s: %w", id, err)
			}
		case recEnd:
			if !senderSeen {
				return Message{}, fmt.Errorf("queue file %s: no sender record", id)
			}
			return msg, nil
		}
	}
}

// recordReader reads Postfix records: a type byte, the data length in
// 7-bit groups (lowest first, the high bit set on all but the last), and
// the data.
type recordReader struct {
	r   io.ReadSeeker
	br  *bufio.Reader
	pos int64 // offset of the next byte br returns
	buf []byte
}

func (rd *recordReader) next() (byte, []byte, error) {
	typ, err := rd.br.ReadByte()
	if err != nil {
		return 0, nil, unexpected(err, "before the end record")
	}
	rd.pos++
	n := 0
	for shift := 0; ; shift += 7 {
		if shift+7 >= 32 {
			return 0, nil, fmt.Errorf("record %q at %d: too many length bytes", typ, rd.pos)
		}
		b, err := rd.br.ReadByte()
		if err != nil {
			return 0, nil, unexpected(err, "in a record length")
		}
		rd.pos++
		n |= int(b&0x7f) << shift
		if b&0x80 == 0 {
			break
		}
	}
	if n > maxRecord {
		// Content records can be long; no envelope record is.
		if typ == 'N' || typ == 'L' || typ == 'w' {
			if _, err := rd.br.Discard(n); err != nil {
				return 0, nil, unexpected(err, "in a record")
			}
			rd.pos += int64(n)
			return typ, nil, nil
		}
		return 0, nil, fmt.Errorf("record %q of %d bytes, at most %d", typ, n, maxRecord)
	}
	if cap(rd.buf) < n {
		rd.buf = make([]byte, n)
	}
	rd.buf = rd.buf[:n]
	if _, err := io.ReadFull(rd.br, rd.buf); err != nil {
		return 0, nil, unexpected(err, "in a record")
	}
	rd.pos += int64(n)
	return typ, rd.buf, nil
}

func (rd *recordReader) seek(off int64) error {
	if _, err := rd.r.Seek(off, io.SeekStart); err != nil {
		return fmt.Errorf("seeking to %d: %w", off, err)
	}
	rd.br.Reset(rd.r)
	rd.pos = off
	return nil
}

func unexpected(err error, where string) error {
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("the file ends %s", where)
	}
	return err
}

// clip shortens a malformed record for an error message.
func clip(s string) string {
	if len(s) > 60 {
		return s[:60] + "..."
	}
	return s
}
