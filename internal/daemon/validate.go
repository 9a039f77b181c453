package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"mailwarden/internal/adminapi"
	"mailwarden/internal/clamd"
	"mailwarden/internal/config"
	"mailwarden/internal/scan"
	"mailwarden/internal/sites"
	"mailwarden/internal/store"
)

// Validate makes every check of cfg that serve makes before it opens
// anything: it builds every check without a store (whitelist files are
// read and parsed), the sites, the scanner and the clamd client, looks up
// the admin socket's owner and group, and loads the dashboard's TLS
// certificate. `config check` and Start both call it, so the systemd
// unit's ExecStartPre catches whatever would stop the start. It is
// stricter than serve in one thing: a whitelist file line that does not
// parse is an error here, and serve skips it with a warning, as postgrey
// does.
func Validate(cfg config.Config) error { return validate(cfg, false) }

func validate(cfg config.Config, skipBadWhitelistLines bool) error {
	if _, err := Checks(cfg, Deps{Store: offline{}, Scanner: offline{}, Log: slog.New(slog.DiscardHandler), Now: time.Now,
		SkipBadWhitelistLines: skipBadWhitelistLines}); err != nil {
		return err
	}
	if _, err := sites.New(prefixes(cfg.InternalNetworks), siteList(cfg)); err != nil {
		return fmt.Errorf("sites: %w", err)
	}
	if len(cfg.Scan.Ranges) > 0 {
		if _, err := scan.New(scanOptions(cfg, slog.New(slog.DiscardHandler))); err != nil {
			return fmt.Errorf("scan: %w", err)
		}
	}
	if cfg.Antivirus.Enabled {
		if _, err := clamd.New(clamdOptions(cfg.Antivirus)); err != nil {
			return fmt.Errorf("antivirus: %w", err)
		}
	}
	if _, _, err := adminapi.LookupOwner(cfg.Admin.Owner, cfg.Admin.Group); err != nil {
		return fmt.Errorf("admin socket: %w", err)
	}
	if cfg.Web.TLSCert != "" {
		if _, err := loadWebCert(cfg); err != nil {
			return err
		}
	}
	return nil
}

var errOffline = errors.New("daemon: no store in config check")

// ScanOpen makes offline a scanner too, for building the antivirus check.
func (offline) ScanOpen(context.Context, func() (io.ReadCloser, error), int64) (clamd.Result, error) {
	return clamd.Result{}, errOffline
}

// offline is a store for building checks that are never run.
type offline struct{}

func (offline) GetTriplet(context.Context, string, string, string, time.Time) (store.Triplet, error) {
	return store.Triplet{}, errOffline
}
func (offline) PutTriplet(context.Context, store.Triplet) error             { return errOffline }
func (offline) DeleteTriplet(context.Context, string, string, string) error { return errOffline }
func (offline) ListTriplets(context.Context, store.TripletFilter, time.Time) ([]store.Triplet, error) {
	return nil, errOffline
}
func (offline) AddClientPass(context.Context, string, time.Time, time.Time) (int, error) {
	return 0, errOffline
}
func (offline) ClientPasses(context.Context, string, time.Time) (int, error) { return 0, errOffline }
func (offline) GreylistStats(context.Context, time.Time, int) (store.GreylistStats, error) {
	return store.GreylistStats{}, errOffline
}
func (offline) Expire(context.Context, time.Time) (int, error) { return 0, errOffline }
func (offline) Ping(context.Context) error                     { return errOffline }
func (offline) Close() error                                   { return nil }
func (offline) AddLatch(context.Context, store.Latch, time.Time) (store.Latch, error) {
	return store.Latch{}, errOffline
}
func (offline) AddLatchRefusal(context.Context, string, time.Time) (store.Latch, error) {
	return store.Latch{}, errOffline
}
func (offline) ActiveLatch(context.Context, string, string, time.Time) (store.Latch, error) {
	return store.Latch{}, errOffline
}
func (offline) GetLatch(context.Context, string) (store.Latch, error) {
	return store.Latch{}, errOffline
}
func (offline) ListLatches(context.Context, store.LatchFilter, time.Time) ([]store.Latch, error) {
	return nil, errOffline
}
func (offline) ClearLatch(context.Context, string, string, string, time.Time) (store.Latch, error) {
	return store.Latch{}, errOffline
}
func (offline) SetFreeze(context.Context, store.Freeze) error       { return errOffline }
func (offline) LiftFreeze(context.Context, string, string) error    { return errOffline }
func (offline) ListFreezes(context.Context) ([]store.Freeze, error) { return nil, errOffline }
func (offline) AppendEvents(context.Context, ...store.Event) error  { return errOffline }
func (offline) QueryEvents(context.Context, store.EventFilter) ([]store.Event, error) {
	return nil, errOffline
}
func (offline) TakeRate(context.Context, string, int, int, time.Duration, time.Time) (bool, time.Duration, error) {
	return false, 0, errOffline
}
func (offline) AddTrapHits(context.Context, ...store.TrapRecord) error { return errOffline }
func (offline) TrapRecords(context.Context, string) ([]store.TrapRecord, error) {
	return nil, errOffline
}
func (offline) RecordPort(context.Context, store.PortFinding) error { return errOffline }
func (offline) Ports(context.Context, string) ([]store.PortState, error) {
	return nil, errOffline
}
func (offline) OpenPorts(context.Context, string) ([]store.PortState, error) {
	return nil, errOffline
}
func (offline) RecordLogin(context.Context, store.MailLogin) error    { return errOffline }
func (offline) LastLogins(context.Context) ([]store.MailLogin, error) { return nil, errOffline }
func (offline) LastLogin(context.Context, string) (store.MailLogin, error) {
	return store.MailLogin{}, errOffline
}
func (offline) AddHostNote(context.Context, store.HostNote) error { return errOffline }
func (offline) HostNotes(context.Context, string) ([]store.HostNote, error) {
	return nil, errOffline
}
func (offline) AddDisinfection(context.Context, store.Disinfection) error { return errOffline }
func (offline) Disinfections(context.Context, string) ([]store.Disinfection, error) {
	return nil, errOffline
}
func (offline) ListClientPasses(context.Context, time.Time, int, int) ([]store.ClientPass, error) {
	return nil, errOffline
}
func (offline) AddUser(context.Context, store.User) error    { return errOffline }
func (offline) UpdateUser(context.Context, store.User) error { return errOffline }
func (offline) GetUser(context.Context, string) (store.User, error) {
	return store.User{}, errOffline
}
func (offline) DeleteUser(context.Context, string) error        { return errOffline }
func (offline) ListUsers(context.Context) ([]store.User, error) { return nil, errOffline }
