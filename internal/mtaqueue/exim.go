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
	"path/filepath"
	"slices"
	"strings"

	"mailwarden/internal/defaults"
)

// DefaultEximBatch is how many message IDs one exim -Mrm, -Mf or -Mt run
// gets: 1,000 IDs of at most 23 characters are some 24 kB of arguments,
// far below any ARG_MAX.
const DefaultEximBatch = 1000

// Exim is an Exim instance's queue. It is listed by reading the -H files
// of the spool directly (one process per message would take minutes on
// a large queue), and acted on through exim -Mrm, -Mf and -Mt.
//
// Reading the spool and acting on messages need an Exim admin user: root,
// the Exim user, or a member of the Exim group (Debian-exim on Debian)
// or of admin_groups (Exim specification, "Trusted and admin users").
type Exim struct {
	// Binary is the exim program's path (Debian: /usr/sbin/exim4).
	Binary string
	// Config is the configuration file passed as -C; "" for Exim's
	// default.
	Config string
	// SpoolDir is the spool directory; "" asks exim -bP
	// spool_directory, once.
	SpoolDir string
	// Batch is how many IDs one exim run gets; 0: DefaultEximBatch.
	Batch int
	// Warn is told about a -H file that could not be parsed and was
	// skipped; nil writes it to standard error.
	Warn func(error)
}

// Check reports an exim program that is missing or not executable, and
// a config file that is not there, before anything runs.
func (e *Exim) Check() error {
	if err := checkProgram("exim", e.Binary); err != nil {
		return err
	}
	if e.Config != "" {
		if _, err := os.Stat(e.Config); err != nil {
			return fmt.Errorf("Exim config file %s (queue.exim_config): %w", e.Config, err)
		}
	}
	return nil
}

func (e *Exim) args(args ...string) []string {
	if e.Config != "" {
		return append([]string{"-C", e.Config}, args...)
	}
	return args
}

// spool returns the spool directory, asking Exim the first time when
// none was configured.
func (e *Exim) spool(ctx context.Context) (string, error) {
	if e.SpoolDir != "" {
		return e.SpoolDir, nil
	}
	cmd := exec.CommandContext(ctx, e.Binary, e.args("-bP", "spool_directory")...)
	var stderr bytes.Buffer
	cmd.Stderr = &limitWriter{w: &stderr, n: 64 << 10}
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("asking Exim for its spool directory (exim -bP spool_directory) failed (%v): %s", err, strings.TrimSpace(stderr.String()))
	}
	// "spool_directory = /var/spool/exim4"
	_, dir, ok := strings.Cut(strings.TrimSpace(string(out)), "=")
	dir = strings.TrimSpace(dir)
	if !ok || !filepath.IsAbs(dir) {
		return "", fmt.Errorf("exim -bP spool_directory printed %q, not an absolute path", strings.TrimSpace(string(out)))
	}
	e.SpoolDir = dir
	return dir, nil
}

// List reads every -H file in the spool's input directory and, when
// split_spool_directory is on, in its one-character subdirectories. The
// directory is read in chunks and each file parsed on its own, so memory
// does not grow with the queue.
//
// A message's Size is what exim -bp shows: the headers Exim would send
// plus the -D file without its first line (queue.c, queue_list), so a
// spool whose -D file has gone is a message delivered meanwhile and is
// skipped, as is one whose -H file has gone. A malformed -H file is
// passed to Warn and skipped; the listing fails only when no -H file at
// all could be read.
func (e *Exim) List(ctx context.Context, fn func(Message) error) error {
	if err := e.Check(); err != nil {
		return err
	}
	spool, err := e.spool(ctx)
	if err != nil {
		return err
	}
	l := &eximLister{e: e, ctx: ctx, fn: fn}
	if err := l.dir(filepath.Join(spool, "input"), true); err != nil {
		return err
	}
	if l.bad > 0 && l.good == 0 {
		return fmt.Errorf("no Exim spool file could be read: %d malformed, the first: %w", l.bad, l.firstBad)
	}
	return nil
}

type eximLister struct {
	e         *Exim
	ctx       context.Context
	fn        func(Message) error
	good, bad int
	firstBad  error
}

// dir lists the -H files in one directory; top is the input directory
// itself, whose one-character subdirectories are the split spool's.
func (l *eximLister) dir(path string, top bool) error {
	d, err := os.Open(path)
	if err != nil {
		return spoolError(path, err)
	}
	defer d.Close()
	for {
		if err := l.ctx.Err(); err != nil {
			return err
		}
		entries, err := d.ReadDir(1000)
		for _, ent := range entries {
			name := ent.Name()
			switch {
			case ent.IsDir() && top && len(name) == 1:
				if err := l.dir(filepath.Join(path, name), false); err != nil {
					return err
				}
			case strings.HasSuffix(name, "-H") && ent.Type().IsRegular():
				if err := l.file(path, name); err != nil {
					return err
				}
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return spoolError(path, err)
		}
	}
}

// file reads one message; it returns an error only for what stops the
// listing.
func (l *eximLister) file(dir, name string) error {
	path := filepath.Join(dir, name)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // delivered or removed since the directory was read
	}
	if err != nil {
		return spoolError(path, err)
	}
	h, err := ParseEximHeader(f)
	f.Close()
	if err != nil {
		if !errors.Is(err, ErrEximFormat) {
			return spoolError(path, err)
		}
		l.bad++
		werr := fmt.Errorf("skipping Exim spool file %s: %w", path, err)
		if l.firstBad == nil {
			l.firstBad = werr
		}
		l.warn(werr)
		return nil
	}
	if h.Message.ID+"-H" != name {
		l.bad++
		werr := fmt.Errorf("skipping Exim spool file %s: it says it is %s-H", path, h.Message.ID)
		if l.firstBad == nil {
			l.firstBad = werr
		}
		l.warn(werr)
		return nil
	}
	data, err := os.Stat(filepath.Join(dir, h.Message.ID+"-D"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return spoolError(filepath.Join(dir, h.Message.ID+"-D"), err)
	}
	l.good++
	// The -D file starts with its own name and a newline
	// (spool_data_start_offset); exim -bp counts the rest plus one.
	h.Message.Size += max(0, data.Size()-int64(len(h.Message.ID)+3)+1)
	return l.fn(h.Message)
}

func (l *eximLister) warn(err error) {
	if l.e.Warn != nil {
		l.e.Warn(err)
		return
	}
	fmt.Fprintf(os.Stderr, "mailwarden: %v\n", err)
}

// spoolError explains a spool file or directory that cannot be read.
func spoolError(path string, err error) error {
	if errors.Is(err, fs.ErrPermission) {
		return fmt.Errorf("reading Exim's spool: %s: permission denied; the queue tools must run as root or as a member of Exim's group (Debian-exim on Debian), which Exim also needs to let them act on messages", path)
	}
	return fmt.Errorf("reading Exim's spool: %w", err)
}

// Delete runs exim -Mrm with the IDs.
func (e *Exim) Delete(ctx context.Context, ids []string) (Result, error) {
	return e.act(ctx, "-Mrm", ids)
}

// Hold freezes the messages: exim -Mf. Frozen is Exim's hold; a queue
// runner does not try a frozen message until it is thawed.
func (e *Exim) Hold(ctx context.Context, ids []string) (Result, error) {
	return e.act(ctx, "-Mf", ids)
}

// Release thaws the messages: exim -Mt.
func (e *Exim) Release(ctx context.Context, ids []string) (Result, error) {
	return e.act(ctx, "-Mt", ids)
}

// eximDone is what exim prints after "Message ID " for a message it
// acted on (queue.c, queue_action), by option.
var eximDone = map[string][]string{
	"-Mrm": {"has been removed", "has been removed or did not exist"},
	"-Mf":  {"is now frozen"},
	"-Mt":  {"is no longer frozen"},
}

// eximAlready is what it prints for a message that was already where
// the action puts it.
var eximAlready = map[string]string{
	"-Mf": "is already frozen",
	"-Mt": "is not frozen",
}

func (e *Exim) act(ctx context.Context, op string, ids []string) (Result, error) {
	var res Result
	if len(ids) == 0 {
		return res, nil
	}
	if err := e.Check(); err != nil {
		return res, err
	}
	seen := make(map[string]bool, len(ids))
	var uniq []string
	for _, id := range ids {
		if !ValidEximID(id) {
			return res, fmt.Errorf("%q is not an Exim message ID", id)
		}
		if !seen[id] {
			seen[id] = true
			uniq = append(uniq, id)
		}
	}
	batch := e.Batch
	batch = defaults.Positive(batch, DefaultEximBatch)
	for start := 0; start < len(uniq); start += batch {
		r, err := e.actBatch(ctx, op, uniq[start:min(start+batch, len(uniq))])
		res.add(r)
		if err != nil {
			return res, err
		}
	}
	return res, nil
}

// actBatch runs exim OP ID... once. Exim reports every message on
// standard output and exits 1 when any one was not acted on, which
// includes one that is gone ("Spool data file for ID does not exist")
// or already frozen or thawed: those are Gone, not failures. Anything
// else it says (a locked message being delivered, permission denied, a
// config error) is a failure, and the error quotes it.
func (e *Exim) actBatch(ctx context.Context, op string, ids []string) (Result, error) {
	var res Result
	cmd := exec.CommandContext(ctx, e.Binary, e.args(append([]string{op}, ids...)...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &limitWriter{w: &stdout, n: 16 << 20}
	cmd.Stderr = &limitWriter{w: &stderr, n: 64 << 10}
	runErr := cmd.Run()

	state := make(map[string]string, len(ids)) // "done" or "gone"
	inBatch := make(map[string]bool, len(ids))
	for _, id := range ids {
		inBatch[id] = true
	}
	var problems []string
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if id, ok := eximGone(line); ok && inBatch[id] {
			if state[id] == "" {
				state[id] = "gone"
			}
			continue
		}
		if rest, ok := strings.CutPrefix(line, "Message "); ok {
			id, what, _ := strings.Cut(rest, " ")
			if inBatch[id] {
				switch {
				case what == eximAlready[op]:
					if state[id] == "" {
						state[id] = "gone"
					}
					continue
				case slices.Contains(eximDone[op], what):
					if state[id] == "" {
						state[id] = "done"
					}
					continue
				}
			}
		}
		// -Mrm of a gone message continues to make sure and says so.
		if strings.HasPrefix(line, "Continuing") || strings.HasPrefix(line, "Spool read error for ") && strings.HasSuffix(line, "No such file or directory") {
			continue
		}
		if line != "" {
			problems = append(problems, line)
		}
	}
	var unreported []string
	for _, id := range ids {
		switch state[id] {
		case "done":
			res.Done = append(res.Done, id)
		case "gone":
			res.Gone = append(res.Gone, id)
		default:
			unreported = append(unreported, id)
		}
	}
	if len(problems) == 0 && len(unreported) == 0 {
		return res, nil
	}
	var msg []string
	msg = append(msg, problems...)
	if s := strings.TrimSpace(stderr.String()); s != "" {
		msg = append(msg, s)
	}
	if len(unreported) > 0 {
		msg = append(msg, fmt.Sprintf("no report for %d of %d messages (the first: %s)", len(unreported), len(ids), unreported[0]))
	}
	status := "exit status 0"
	if runErr != nil {
		status = runErr.Error()
	}
	return res, fmt.Errorf("exim %s failed (%s): %s", op, status, strings.Join(msg, "; "))
}

// eximGone recognises "Spool data file for ID does not exist", Exim's
// report of a message no longer in the queue.
func eximGone(line string) (string, bool) {
	rest, ok := strings.CutPrefix(line, "Spool data file for ")
	if !ok {
		return "", false
	}
	return strings.CutSuffix(rest, " does not exist")
}
