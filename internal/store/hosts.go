package store

import (
	"context"
	"time"
)

// TrapRecord is what the worm trap saw from one client: the hits of one
// drain interval when added, the running total when read back.
type TrapRecord struct {
	Client              string // client IP text
	FirstSeen, LastSeen time.Time
	Count               int
	// LastDst, LastHelo and LastMailFrom are from the newest hit that
	// offered them.
	LastDst, LastHelo, LastMailFrom string
}

// PortFinding is one probe of a client's port by the backdoor scanner.
type PortFinding struct {
	Client string // client IP text
	Port   int
	Open   bool
	Time   time.Time // when the probe finished
}

// PortState is the latest known state of one client port.
type PortState struct {
	Client      string
	Port        int
	Open        bool      // as of LastChecked
	FirstOpen   time.Time // when it was first found open; zero if never
	LastChecked time.Time
}

// MailLogin is a mailbox login (IMAP, POP3, webmail) from a client.
type MailLogin struct {
	Client  string // client IP text
	User    string
	Service string
	Time    time.Time
}

// HostNote is an administrator's note on a host.
type HostNote struct {
	Client string
	By     string
	Text   string
	Time   time.Time
}

// Disinfection records that someone declared a host clean.
type Disinfection struct {
	Client string
	By     string
	Note   string
	Time   time.Time
}

// Hosts keeps the per-host evidence that the event log and the latches
// do not: trap hits, backdoor ports, mailbox logins, and the
// administrators' notes and disinfections. Nothing here expires: a host
// record is as small as an IP address's share of the network.
type Hosts interface {
	// AddTrapHits merges each record into its client's running total:
	// counts add up, the earliest FirstSeen and newest LastSeen win, and
	// each Last* field comes from the record with the newest LastSeen
	// unless it is empty there, so a silent later connection does not
	// erase what an earlier one offered.
	AddTrapHits(ctx context.Context, recs ...TrapRecord) error
	// TrapRecords returns client's total, or every client's when client
	// is "", newest LastSeen first. An unknown client gives an empty list.
	TrapRecords(ctx context.Context, client string) ([]TrapRecord, error)

	// RecordPort keeps the latest state of f.Client's f.Port: a finding
	// older than the stored one changes only FirstOpen. FirstOpen is the
	// earliest time the port was found open and outlives its closing. A
	// closed finding for a port never seen open is not kept, so scanning
	// a clean network stores nothing.
	RecordPort(ctx context.Context, f PortFinding) error
	// Ports returns every kept state of client's ports, by port number.
	Ports(ctx context.Context, client string) ([]PortState, error)
	// OpenPorts returns the ports open as of their last check, of client
	// or of every client when client is "", ordered by client and port.
	OpenPorts(ctx context.Context, client string) ([]PortState, error)

	// RecordLogin keeps l if it is the newest login from l.Client.
	RecordLogin(ctx context.Context, l MailLogin) error
	// LastLogin returns the newest login from client, or ErrNotFound.
	LastLogin(ctx context.Context, client string) (MailLogin, error)
	// LastLogins returns the newest login of every client, by client, so
	// that a list of thousands of hosts costs one read, not thousands.
	LastLogins(ctx context.Context) ([]MailLogin, error)

	// AddHostNote stores a note; HostNotes returns client's, oldest
	// first, or every client's (by client, then oldest first) for "".
	AddHostNote(ctx context.Context, n HostNote) error
	HostNotes(ctx context.Context, client string) ([]HostNote, error)
	// AddDisinfection stores a disinfection; Disinfections returns
	// client's, oldest first, or every client's for "" as HostNotes does.
	AddDisinfection(ctx context.Context, d Disinfection) error
	Disinfections(ctx context.Context, client string) ([]Disinfection, error)
}

// MergeTrap adds the trap record r to the total old (zero if none), as
// AddTrapHits documents, for the backends that merge in Go.
func MergeTrap(old, r TrapRecord) TrapRecord {
	if r.FirstSeen.IsZero() || r.FirstSeen.After(r.LastSeen) {
		r.FirstSeen = r.LastSeen
	}
	if old.Client == "" {
		return r
	}
	newer := !r.LastSeen.Before(old.LastSeen)
	pick := func(old, add string) string {
		if old == "" || add != "" && newer {
			return add
		}
		return old
	}
	old.Count += r.Count
	if r.FirstSeen.Before(old.FirstSeen) {
		old.FirstSeen = r.FirstSeen
	}
	old.LastDst = pick(old.LastDst, r.LastDst)
	old.LastHelo = pick(old.LastHelo, r.LastHelo)
	old.LastMailFrom = pick(old.LastMailFrom, r.LastMailFrom)
	if newer {
		old.LastSeen = r.LastSeen
	}
	return old
}
