package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"mailwarden/internal/adminapi"
	"mailwarden/internal/config"
	"mailwarden/internal/hosts"
	"mailwarden/internal/maillogin"
	"mailwarden/internal/scan"
	"mailwarden/internal/series"
	"mailwarden/internal/store"
	"mailwarden/internal/trap"
)

// hostParts are the Day A tools: the worm trap, the backdoor scanner, the
// mail-login tailer and the host registry that combines their evidence
// with the pipeline's. They live as long as the daemon.
type hostParts struct {
	registry *hosts.Registry
	trapSrv  *trap.Server
	trapAgg  *trap.Aggregator
	scanner  *scan.Scanner
	ranges   []netip.Prefix
}

// startHosts builds the host registry and the scanner. The trap listener
// is bound with the other listeners and served by serveHosts.
func (d *Daemon) startHosts(cfg config.Config) error {
	var err error
	d.hp.registry, err = hosts.New(hosts.Options{Store: d.store, Sites: d.sites.Load, Log: d.log})
	if err != nil {
		return err
	}
	if len(cfg.Scan.Ranges) > 0 {
		d.hp.ranges = prefixes(cfg.Scan.Ranges)
		d.hp.scanner, err = scan.New(scanOptions(cfg, d.log))
		if err != nil {
			return fmt.Errorf("scan: %w", err)
		}
	}
	return nil
}

// serveHosts starts the trap on ln (nil when the trap is off), the
// scanner's schedule and the login-log tailer, all stopped by ctx.
func (d *Daemon) serveHosts(ctx context.Context, cfg config.Config, ln net.Listener) {
	if ln != nil {
		d.hp.trapAgg = trap.NewAggregator(0)
		d.hp.trapSrv = trap.NewServer(trap.Options{
			Hostname:       Hostname(cfg),
			ReadTimeout:    cfg.Trap.ReadTimeout.D(),
			SessionTimeout: cfg.Trap.SessionTimeout.D(),
			MaxConns:       cfg.Trap.MaxConns,
			MaxPerIP:       cfg.Trap.MaxPerIP,
			Aggregator:     d.hp.trapAgg,
			Log:            d.log,
			OnHit:          func(h trap.Hit) { d.charts.Add(series.Trap, h.Time, 1) },
		})
		d.serve("trap", ln.Addr(), func() error { return d.hp.trapSrv.Serve(ln) })
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			t := time.NewTicker(cfg.Trap.FlushInterval.D())
			defer t.Stop()
			for {
				select {
				case <-t.C:
					d.flushTrap()
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	if d.hp.scanner != nil && cfg.Scan.Interval > 0 {
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			d.hp.scanner.Every(ctx, cfg.Scan.Interval.D(), d.hp.ranges, d.recordPort)
		}()
	}
	if cfg.MailLogin.Log != "" {
		t, err := maillogin.NewTailer(maillogin.Options{
			Path: cfg.MailLogin.Log, Poll: cfg.MailLogin.Poll.D(), FromStart: true, Log: d.log,
			OnLogin: func(l maillogin.Login) {
				err := d.store.RecordLogin(context.Background(), store.MailLogin{
					Client: l.IP.String(), User: l.User, Service: l.Service, Time: l.Time})
				if err != nil {
					d.log.Warn("recording a mail login failed", "client", l.IP, "err", err)
				}
			},
		})
		if err != nil {
			d.log.Error("mail-login log not followed", "err", err)
			return
		}
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			t.Run(ctx)
		}()
	}
}

// flushTrap writes the trap hits aggregated since the last flush.
func (d *Daemon) flushTrap() {
	if d.hp.trapAgg == nil {
		return
	}
	hs := d.hp.trapAgg.Drain()
	if len(hs) == 0 {
		return
	}
	recs := make([]store.TrapRecord, len(hs))
	for i, h := range hs {
		recs[i] = store.TrapRecord{Client: h.Client.String(), FirstSeen: h.FirstSeen, LastSeen: h.LastSeen,
			Count: h.Count, LastHelo: h.LastHelo, LastMailFrom: h.LastMailFrom}
		if h.LastDst.IsValid() {
			recs[i].LastDst = h.LastDst.String()
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.store.AddTrapHits(ctx, recs...); err != nil {
		d.log.Error("writing trap hits failed; they are lost", "hosts", len(recs), "err", err)
	}
	// One event per client per flush, not per connection: a flood
	// costs at most as many events as the aggregator holds hosts, and
	// the evidence still reaches the events page, the CLI and alerts.
	reg := d.sites.Load()
	evs := make([]store.Event, len(hs))
	for i, h := range hs {
		evs[i] = store.Event{Time: h.LastSeen, Kind: store.EventTrap, Check: "trap", Client: h.Client.String(),
			Sender: h.LastMailFrom, Reason: h.Summary()}
		if reg != nil {
			if s, _ := reg.Lookup(h.Client); s != nil {
				evs[i].Site = s.Name
			}
		}
	}
	if err := d.events.Record(ctx, evs...); err != nil {
		d.log.Error("recording trap events failed", "hosts", len(evs), "err", err)
	}
}

// recordPort keeps a scan finding as evidence.
func (d *Daemon) recordPort(f scan.Finding) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.store.RecordPort(ctx, store.PortFinding{Client: f.Addr.String(), Port: f.Port, Open: f.Open, Time: f.Time}); err != nil {
		d.log.Warn("recording a scan finding failed", "addr", f.Addr, "port", f.Port, "err", err)
	}
}

// scanFunc is what the admin API runs for `mailwarden scan`; nil (the
// API says "not configured") when scan.ranges is empty.
func (d *Daemon) scanFunc() adminapi.ScanFunc {
	if d.hp.scanner == nil {
		return nil
	}
	return d.runScan
}

// runScan scans targets (the configured ranges when empty) on behalf of
// `mailwarden scan`, recording what it finds.
func (d *Daemon) runScan(ctx context.Context, targets []netip.Prefix) (scan.Summary, []scan.Finding, error) {
	if len(targets) == 0 {
		targets = d.hp.ranges
	}
	var found []scan.Finding
	sum, err := d.hp.scanner.Scan(ctx, targets, func(f scan.Finding) {
		d.recordPort(f)
		if f.Open {
			found = append(found, f)
		}
	})
	return sum, found, err
}

// scanOptions are the scanner's options from the scan section.
func scanOptions(cfg config.Config, log *slog.Logger) scan.Options {
	return scan.Options{Allowed: prefixes(cfg.Scan.Ranges), Ports: cfg.Scan.Ports,
		Concurrency: cfg.Scan.Concurrency, Rate: cfg.Scan.Rate, Timeout: cfg.Scan.Timeout.D(), Log: log}
}
