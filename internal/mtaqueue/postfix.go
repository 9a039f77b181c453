package mtaqueue

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"strings"

	"mailwarden/internal/defaults"
)

// DefaultBatch is how many queue IDs one postsuper run gets.
const DefaultBatch = 5000

// Postfix is a Postfix instance's queue, reached through postqueue(1)
// and postsuper(1).
type Postfix struct {
	// Postqueue and Postsuper are the programs' paths.
	Postqueue, Postsuper string
	// ConfigDir is the instance's config directory (-c); "" for
	// Postfix's default.
	ConfigDir string
	// QueueDir is the instance's queue_directory, whose files List reads
	// when it may; "" asks postconf once.
	QueueDir string
	// Batch is how many IDs one postsuper run gets; 0: DefaultBatch.
	Batch int
}

// Check reports a program that is missing or not executable, and a
// config directory that is not there, before anything runs.
func (p *Postfix) Check() error {
	for _, prog := range []struct{ name, path string }{{"postqueue", p.Postqueue}, {"postsuper", p.Postsuper}} {
		if err := checkProgram(prog.name, prog.path); err != nil {
			return err
		}
	}
	if p.ConfigDir != "" {
		if _, err := os.Stat(p.ConfigDir + "/main.cf"); err != nil {
			return fmt.Errorf("Postfix config directory %s (queue.config_directory): %w", p.ConfigDir, err)
		}
	}
	return nil
}

// checkProgram reports a program that is missing or not executable;
// name is also its key in the config's queue: section.
func checkProgram(name, path string) error {
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%s not found at %s (queue.%s in the config)", name, path, name)
	case err != nil:
		return fmt.Errorf("checking %s: %w", name, err)
	case st.IsDir() || st.Mode()&0o111 == 0:
		return fmt.Errorf("%s at %s is not an executable program", name, path)
	}
	return nil
}

func (p *Postfix) args(args ...string) []string {
	if p.ConfigDir != "" {
		return append([]string{"-c", p.ConfigDir}, args...)
	}
	return args
}

// List reads the queue files directly when this process may (root, or
// Postfix's mail_owner), else runs postqueue -j and parses its output as
// it comes. A message listed twice (the queue may change while it is
// listed: a file moves from incoming to active) is passed to fn once.
func (p *Postfix) List(ctx context.Context, fn func(Message) error) error {
	if err := p.Check(); err != nil {
		return err
	}
	seen := map[string]struct{}{}
	once := func(m Message) error {
		if _, dup := seen[m.ID]; dup {
			return nil
		}
		seen[m.ID] = struct{}{}
		return fn(m)
	}
	if err := p.listFiles(ctx, once); !errors.Is(err, errQueueFileUnreadable) {
		return err
	}
	return p.listPostqueue(ctx, once)
}

// listPostqueue runs postqueue -j, which may be run by anyone.
func (p *Postfix) listPostqueue(ctx context.Context, fn func(Message) error) error {
	cmd := exec.CommandContext(ctx, p.Postqueue, p.args("-j")...)
	var stderr bytes.Buffer
	cmd.Stderr = &limitWriter{w: &stderr, n: 64 << 10}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("running postqueue: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("running postqueue: %w", err)
	}
	perr := ParsePostqueue(out, fn)
	if perr != nil {
		// Stop postqueue and let Wait reap it.
		io.Copy(io.Discard, out)
	}
	werr := cmd.Wait()
	if werr != nil {
		return fmt.Errorf("postqueue -j failed (%v): %s", werr, strings.TrimSpace(stderr.String()))
	}
	return perr
}

// Delete runs postsuper -d - with the IDs on standard input.
func (p *Postfix) Delete(ctx context.Context, ids []string) (Result, error) {
	return p.super(ctx, "-d", "removed", ids)
}

// Hold runs postsuper -h -.
func (p *Postfix) Hold(ctx context.Context, ids []string) (Result, error) {
	return p.super(ctx, "-h", "placed on hold", ids)
}

// Release runs postsuper -H -.
func (p *Postfix) Release(ctx context.Context, ids []string) (Result, error) {
	return p.super(ctx, "-H", "released from hold", ids)
}

// super runs postsuper op - in batches. postsuper logs "ID: removed"
// (or "placed on hold", "released from hold") for each message it acted
// on and silently skips IDs it did not find: those are Gone.
func (p *Postfix) super(ctx context.Context, op, done string, ids []string) (Result, error) {
	var res Result
	if len(ids) == 0 {
		return res, nil
	}
	if err := p.Check(); err != nil {
		return res, err
	}
	for _, id := range ids {
		if !ValidID(id) {
			return res, fmt.Errorf("%q is not a Postfix queue ID", id)
		}
	}
	batch := p.Batch
	batch = defaults.Positive(batch, DefaultBatch)
	for start := 0; start < len(ids); start += batch {
		r, err := p.superBatch(ctx, op, done, ids[start:min(start+batch, len(ids))])
		res.add(r)
		if err != nil {
			return res, err
		}
	}
	return res, nil
}

func (p *Postfix) superBatch(ctx context.Context, op, done string, ids []string) (Result, error) {
	var res Result
	cmd := exec.CommandContext(ctx, p.Postsuper, p.args(op, "-")...)
	cmd.Stdin = strings.NewReader(strings.Join(ids, "\n") + "\n")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Stdout = io.Discard
	err := cmd.Run()
	acted := map[string]bool{}
	var problems []string
	sc := bufio.NewScanner(&stderr)
	for sc.Scan() {
		line := sc.Text()
		// "postsuper: 8F226986476: removed"
		_, rest, _ := strings.Cut(line, ": ")
		if id, what, ok := strings.Cut(rest, ": "); ok && what == done && ValidID(id) {
			acted[id] = true
			continue
		}
		if strings.Contains(line, "fatal:") || strings.Contains(line, "warning:") {
			problems = append(problems, strings.TrimSpace(line))
		}
	}
	for _, id := range ids {
		if acted[id] {
			res.Done = append(res.Done, id)
		} else {
			res.Gone = append(res.Gone, id)
		}
	}
	if err != nil {
		res.Gone = nil // not known: postsuper stopped
		return res, fmt.Errorf("postsuper %s failed (%v): %s", op, err, strings.Join(problems, "; "))
	}
	return res, nil
}

// limitWriter keeps the first n bytes written to it and drops the rest.
type limitWriter struct {
	w io.Writer
	n int
}

func (l *limitWriter) Write(b []byte) (int, error) {
	if l.n > 0 {
		k := min(len(b), l.n)
		l.w.Write(b[:k])
		l.n -= k
	}
	return len(b), nil
}
