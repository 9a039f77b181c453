package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"mailwarden/internal/config"
	"mailwarden/internal/daemon"
	"mailwarden/internal/human"
	"mailwarden/internal/mtaqueue"
)

// The queue commands work on the MTA's queue through its own programs
// (postqueue and postsuper, or Exim's spool and exim), offline: none needs the daemon or the store.
// Their record is their output and the MTA's log.

// queueSample is how many selected messages a dry run shows.
const queueSample = 10

// queueFilterFlags are the filter flags purge, hold, release and list
// take; commonFlag lets their synopses say "[filters]".
var queueFilterFlags = []string{"sender", "recipient", "sender-domain", "recipient-domain",
	"sender-regexp", "recipient-regexp", "auth-user", "older-than", "newer-than", "queue", "min-size", "max-size"}

// queueCmd is one run of a "mailwarden queue" command.
type queueCmd struct {
	*call
	configPath *string
	filter     mtaqueue.Filter
	olderThan  ageFlag
	newerThan  ageFlag
	cfg        config.Config
}

func newQueueCmd(fs *flag.FlagSet, filters bool) *queueCmd {
	q := &queueCmd{configPath: fs.String("config", "", "config `file` (its queue: section; default: built-in defaults)")}
	if !filters {
		return q
	}
	f := &q.filter
	fs.StringVar(&f.Sender, "sender", "", "sender address `pattern` (* any characters, ? one; <> the null sender)")
	fs.StringVar(&f.Recipient, "recipient", "", "recipient address `pattern` (* any characters, ? one)")
	fs.StringVar(&f.SenderDomain, "sender-domain", "", "sender `domain`")
	fs.StringVar(&f.RecipientDomain, "recipient-domain", "", "recipient `domain`")
	fs.StringVar(&f.SenderRegexp, "sender-regexp", "", "regular `expression` (RE2) searched for in the sender")
	fs.StringVar(&f.RecipientRegexp, "recipient-regexp", "", "regular `expression` (RE2) searched for in a recipient")
	fs.StringVar(&f.AuthUser, "auth-user", "", "authenticated `user` (Exim, or Postfix read as root)")
	fs.Var(&q.olderThan, "older-than", "queued longer than this `age` (90m, 2h, 3d)")
	fs.Var(&q.newerThan, "newer-than", "queued for less than this `age` (90m, 2h, 3d)")
	fs.StringVar(&f.Queue, "queue", "", "only this `queue`: active, deferred, hold, incoming, maildrop (Postfix) or frozen (Exim)")
	fs.Int64Var(&f.MinSize, "min-size", 0, "at least this many `bytes`")
	fs.Int64Var(&f.MaxSize, "max-size", 0, "at most this many `bytes`")
	return q
}

// open loads the config and returns the queue and the checked filter.
// It returns an exit status when that failed, else -1.
func (q *queueCmd) open(c *call) (mtaqueue.Queue, *mtaqueue.Matcher, int) {
	q.call = c
	cfg, err := daemon.LoadConfig(*q.configPath, "")
	if err != nil {
		return nil, nil, q.usage("%v", err)
	}
	q.cfg = cfg
	q.filter.OlderThan, q.filter.NewerThan = time.Duration(q.olderThan), time.Duration(q.newerThan)
	m, err := q.filter.Compile(time.Now())
	if err != nil {
		return nil, nil, q.usage("%v", err)
	}
	qu, err := mtaqueue.Open(cfg.Queue)
	if err != nil {
		return nil, nil, q.fail(err)
	}
	return qu, m, -1
}

// queueContext is cancelled by an interrupt, which stops the listing or
// the postsuper batch in progress. postsuper removes or moves one queue
// file at a time, so a stopped batch leaves whole messages, and what it
// reported done is still printed.
func queueContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

func queueSummary(fs *flag.FlagSet) runFunc {
	q := newQueueCmd(fs, false)
	topN := fs.Int("top", 10, "show the top `N` of each count (0: all)")
	asJSON := jsonFlag(fs)
	return func(c *call) int {
		qu, m, code := q.open(c)
		if code >= 0 {
			return code
		}
		if *topN < 0 {
			return q.usage("--top %d: want 0 or more", *topN)
		}
		ctx, cancel := queueContext()
		defer cancel()
		s := mtaqueue.NewSummarizer(time.Now())
		if err := qu.List(ctx, func(msg mtaqueue.Message) error {
			if m.Match(msg) {
				s.Add(msg)
			}
			return nil
		}); err != nil {
			return q.fail(err)
		}
		sum := s.Summary(*topN)
		if *asJSON {
			return q.json(sum)
		}
		printSummary(q.stdout, sum)
		return 0
	}
}

func printSummary(w io.Writer, s mtaqueue.Summary) {
	fmt.Fprintf(w, "%d messages, %d recipients, %s\n", s.Messages, s.Recipients, human.Bytes(s.Bytes))
	if s.Messages == 0 {
		return
	}
	line := func(title string, counts []mtaqueue.Count) {
		var parts []string
		for _, c := range counts {
			parts = append(parts, fmt.Sprintf("%s %d", c.Key, c.Messages))
		}
		fmt.Fprintf(w, "%-8s %s\n", title+":", strings.Join(parts, ", "))
	}
	line("queue", s.ByQueue)
	line("age", s.ByAge)
	block := func(title string, distinct int, counts []mtaqueue.Count) {
		fmt.Fprintf(w, "\n%s (%d of %d):\n", title, len(counts), distinct)
		for _, c := range counts {
			fmt.Fprintf(w, "  %8d  %s\n", c.Messages, c.Key)
		}
	}
	block("top senders", s.DistinctSenders, s.BySender)
	block("top sender domains", s.DistinctSenderDomains, s.BySenderDomain)
	block("top recipient domains (messages)", s.DistinctRecipientDomains, s.ByRecipientDomain)
	if s.DistinctAuthUsers > 0 {
		block("top authenticated users", s.DistinctAuthUsers, s.ByAuthUser)
	}
}

func queueList(fs *flag.FlagSet) runFunc {
	q := newQueueCmd(fs, true)
	asJSON := jsonFlag(fs)
	asCSV := fs.Bool("csv", false, "print one CSV row per message")
	return func(c *call) int {
		if *asJSON && *asCSV {
			return c.usage("--json and --csv: choose one")
		}
		qu, m, code := q.open(c)
		if code >= 0 {
			return code
		}
		ctx, cancel := queueContext()
		defer cancel()
		// The listing is streamed: a queue of 100,000 messages is never
		// held whole.
		out := bufio.NewWriter(q.stdout)
		defer out.Flush()
		var write func(mtaqueue.Message) error
		n := 0
		switch {
		case *asJSON:
			out.WriteString("[")
			write = func(msg mtaqueue.Message) error {
				if n > 0 {
					out.WriteString(",")
				}
				out.WriteString("\n  ")
				b, err := json.Marshal(msg)
				out.Write(b)
				return err
			}
		case *asCSV:
			cw := csv.NewWriter(out)
			defer cw.Flush()
			cw.Write([]string{"queue_id", "queue", "arrival", "size", "sender", "recipients", "auth_user"})
			write = func(msg mtaqueue.Message) error {
				return cw.Write([]string{msg.ID, msg.Queue, msg.Arrival.UTC().Format(time.RFC3339),
					strconv.FormatInt(msg.Size, 10), msg.Sender, strings.Join(addresses(msg), " "), msg.AuthUser})
			}
		default:
			fmt.Fprintf(out, "%-15s %-8s %-20s %8s  %s\n", "ID", "QUEUE", "ARRIVED", "SIZE", "SENDER -> RECIPIENTS")
			write = func(msg mtaqueue.Message) error {
				writeMessage(out, msg)
				return nil
			}
		}
		err := qu.List(ctx, func(msg mtaqueue.Message) error {
			if !m.Match(msg) {
				return nil
			}
			err := write(msg)
			n++
			return err
		})
		if *asJSON {
			out.WriteString("\n]\n")
		}
		if err != nil {
			out.Flush()
			return q.fail(err)
		}
		return 0
	}
}

func addresses(msg mtaqueue.Message) []string {
	out := make([]string, len(msg.Recipients))
	for i, r := range msg.Recipients {
		out[i] = r.Address
	}
	return out
}

// writeMessage writes one line of the table list and the dry runs print.
func writeMessage(w io.Writer, msg mtaqueue.Message) {
	rcpts := addresses(msg)
	more := ""
	if len(rcpts) > 3 {
		more = fmt.Sprintf(" (+%d)", len(rcpts)-3)
		rcpts = rcpts[:3]
	}
	sender := msg.Sender
	if sender == "" {
		sender = "<>"
	}
	fmt.Fprintf(w, "%-15s %-8s %-20s %8d  %s -> %s%s\n", msg.ID, msg.Queue,
		msg.Arrival.Local().Format("2006-01-02 15:04:05"), msg.Size, sender, strings.Join(rcpts, ", "), more)
}

// queueAction is what purge, hold and release do with the selection.
type queueAction struct {
	verb, done, gone string
	act              func(mtaqueue.Queue) func(context.Context, []string) (mtaqueue.Result, error)
}

func queuePurge(fs *flag.FlagSet) runFunc {
	return queueActCmd(fs, queueAction{"delete", "deleted", "already gone",
		func(q mtaqueue.Queue) func(context.Context, []string) (mtaqueue.Result, error) { return q.Delete }})
}

func queueHold(fs *flag.FlagSet) runFunc {
	return queueActCmd(fs, queueAction{"hold", "held", "gone or already held",
		func(q mtaqueue.Queue) func(context.Context, []string) (mtaqueue.Result, error) { return q.Hold }})
}

func queueRelease(fs *flag.FlagSet) runFunc {
	return queueActCmd(fs, queueAction{"release", "released", "gone or not held",
		func(q mtaqueue.Queue) func(context.Context, []string) (mtaqueue.Result, error) { return q.Release }})
}

// queueActCmd lists the queue, selects with the filters and, with
// --apply, acts on exactly the selected IDs; without it, it prints what
// it would do and changes nothing.
func queueActCmd(fs *flag.FlagSet, a queueAction) runFunc {
	q := newQueueCmd(fs, true)
	dataDir := fs.String("data", "", "data `directory` of mailwarden's store, whose audit log records what --apply did")
	apply := fs.Bool("apply", false, "really "+a.verb+" them (without it: a dry run that changes nothing)")
	return func(c *call) int {
		qu, m, code := q.open(c)
		if code >= 0 {
			return code
		}
		ctx, cancel := queueContext()
		defer cancel()
		sel, err := mtaqueue.Select(ctx, qu, m, queueSample)
		if err != nil {
			return q.fail(err)
		}
		if len(sel.IDs) == 0 {
			fmt.Fprintln(q.stdout, "no message matches")
			return 0
		}
		if !*apply {
			fmt.Fprintf(q.stdout, "would %s %d messages (%s); the first %d:\n", a.verb, len(sel.IDs), human.Bytes(sel.Bytes), len(sel.Sample))
			for _, msg := range sel.Sample {
				writeMessage(q.stdout, msg)
			}
			fmt.Fprintf(q.stdout, "dry run: nothing changed; add --apply to %s them\n", a.verb)
			return 0
		}
		res, err := a.act(qu)(ctx, sel.IDs)
		out := bufio.NewWriter(q.stdout)
		for _, id := range res.Done {
			fmt.Fprintf(out, "%s %s\n", a.done, id)
		}
		for _, id := range res.Gone {
			fmt.Fprintf(out, "%s %s\n", a.gone, id)
		}
		fmt.Fprintf(out, "%s %d messages; %d %s\n", a.done, len(res.Done), len(res.Gone), a.gone)
		out.Flush()
		// It is an admin action: the audit log of the mailwarden store on
		// this host records it, if there is one (the queue tools also run
		// where mailwarden keeps no store).
		if len(res.Done) > 0 {
			q.recordAction(*dataDir, fmt.Sprintf("%s %d messages of the %s queue matching %s; %d %s",
				a.done, len(res.Done), q.cfg.Queue.MTA, setFilters(fs), len(res.Gone), a.gone))
		}
		if err != nil {
			return q.fail(err)
		}
		return 0
	}
}

// ageFlag is an age given as a Go duration or in days ("3d").
type ageFlag time.Duration

func (a *ageFlag) String() string {
	if a == nil {
		return ""
	}
	return mtaqueue.FormatAge(time.Duration(*a))
}

func (a *ageFlag) Set(s string) error {
	d, err := mtaqueue.ParseAge(s)
	if err != nil {
		return err
	}
	*a = ageFlag(d)
	return nil
}

// setFilters describes the filter flags given, for the audit log.
func setFilters(fs *flag.FlagSet) string {
	var parts []string
	fs.Visit(func(f *flag.Flag) {
		if slices.Contains(queueFilterFlags, f.Name) {
			parts = append(parts, fmt.Sprintf("--%s %q", f.Name, f.Value.String()))
		}
	})
	if len(parts) == 0 {
		return "no filter (every message)"
	}
	return strings.Join(parts, " ")
}

// recordAction records what --apply did in the audit log of the store in
// dataDir (or the config's data_dir), and says so when there is none.
func (q *queueCmd) recordAction(dataDir, what string) {
	cfg := q.cfg
	if dataDir != "" {
		cfg.DataDir = dataDir
	}
	q.recordOffline(cfg, what)
}
