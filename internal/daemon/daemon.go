package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"mailwarden/internal/accept"
	"mailwarden/internal/adminapi"
	"mailwarden/internal/alert"
	"mailwarden/internal/avstatus"
	"mailwarden/internal/clamd"
	"mailwarden/internal/config"
	"mailwarden/internal/events"
	"mailwarden/internal/milter"
	"mailwarden/internal/policy"
	"mailwarden/internal/policy/antivirus"
	"mailwarden/internal/policyd"
	"mailwarden/internal/series"
	"mailwarden/internal/sites"
	"mailwarden/internal/spool"
	"mailwarden/internal/store"
	"mailwarden/internal/store/backend"
)

// Options are what the command line adds to the config.
type Options struct {
	// ConfigPath is re-read on Reload; "" means built-in defaults.
	ConfigPath string
	// DataDir, if set, overrides the config's data_dir.
	DataDir string
	Version string
	// Stderr receives the daemon log, Stdout the mail log when it is "-".
	Stderr, Stdout io.Writer
	// Store, if set, is used instead of opening the backend the config
	// names, and the daemon leaves closing it to the caller: a test hands
	// in a memory store, or one wrapped to inject faults.
	Store store.Store
}

// Daemon is a running mailwarden.
type Daemon struct {
	opts     Options
	level    slog.LevelVar
	log      *slog.Logger
	mailFile *logFile
	metrics  *metrics
	store    store.Store
	events   *events.Log  // the only writer of events
	health   *storeHealth // whether the store can write (storehealth.go)
	alerts   *alert.Engine

	mu  sync.Mutex // serialises Reload
	cfg atomic.Pointer[config.Config]
	// sites is the sites registry of cfg, built once per apply.
	sites atomic.Pointer[sites.Registry]
	pl    atomic.Pointer[policy.Pipeline]

	policySrv *policyd.Server
	milterSrv *milter.Server
	httpSrv   *http.Server
	httpConns *accept.Tracker
	adminSrv  *adminapi.Server

	// Antivirus parts, nil when antivirus is off at start.
	clamd   *clamd.Client
	scanner antivirus.Scanner
	spool   *spool.Spool
	watcher *avstatus.Watcher
	// scanCache is the antivirus scan cache in use, nil when off; a
	// reload that keeps its size and TTL keeps what it learnt. It is
	// set under mu.
	scanCache atomic.Pointer[antivirus.Cache]

	hp       hostParts
	charts   *series.Recorder
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	stopOnce sync.Once
	stopErr  error
	serveErr chan error
}

// LoadConfig loads path (or the defaults when path is "") and applies the
// data directory override.
func LoadConfig(path, dataDir string) (config.Config, error) {
	cfg := config.Default()
	if path != "" {
		var err error
		if cfg, err = config.Load(path); err != nil {
			return cfg, err
		}
	}
	if dataDir != "" {
		cfg.DataDir = dataDir
	}
	return cfg, nil
}

// Start opens the store, binds every listener and starts serving. Any
// failure undoes what was started and returns an error naming the part.
func Start(cfg config.Config, o Options) (_ *Daemon, err error) {
	if err := validate(cfg, true); err != nil {
		return nil, err
	}
	d := &Daemon{opts: o, serveErr: make(chan error, 3)}
	d.log = NewLogger(cfg.Log, o.Stderr, &d.level)
	if d.mailFile, err = openLogFile(cfg.Log.MailLog, o.Stdout); err != nil {
		return nil, err
	}
	d.metrics = newMetrics(o.Version)
	if d.store = o.Store; d.store == nil {
		if d.store, err = backend.Open(cfg, backend.Options{Daemon: true, Create: true, Log: d.log}); err != nil {
			d.mailFile.Close()
			return nil, fmt.Errorf("opening store in %s: %w", cfg.DataDir, err)
		}
	}
	defer func() {
		if err != nil {
			d.closeAll()
		}
	}()
	warnOpenDirs(d.log, cfg.DataDir, filepath.Dir(adminapi.SocketPath(cfg)))
	// The event log reads retention and record_greylist live, so it is
	// made once and a reload applies to the next event.
	d.cfg.Store(&cfg)
	d.events = events.NewLog(events.LogOptions{Store: d.store, Log: d.log,
		Settings: func() config.Events { return d.cfg.Load().Events }})
	queue := d.queueOptions(cfg)
	d.newAlerts(queue.Watch)
	d.startStoreHealth(cfg.Store.Kind)
	d.charts = series.New(chartStep, chartBuckets)
	if err := seedCharts(context.Background(), d.store, d.charts, time.Now()); err != nil {
		d.log.Warn("charts start empty: reading the last day's events failed", "err", err)
	}
	if err = d.startAntivirus(cfg); err != nil {
		return nil, err
	}
	if err = d.startHosts(cfg); err != nil {
		return nil, err
	}
	if err = d.apply(cfg); err != nil {
		return nil, err
	}
	lns := map[string]net.Listener{}
	defer func() {
		if err != nil {
			for _, ln := range lns {
				ln.Close()
			}
		}
	}()
	trapAddr := ""
	if cfg.Trap.Enabled {
		trapAddr = cfg.Trap.Listen
	}
	for _, l := range []struct{ name, addr string }{
		{"policy", cfg.Listen.Policy}, {"milter", cfg.Listen.Milter}, {"http", cfg.Listen.HTTP}, {"trap", trapAddr},
	} {
		if l.addr == "" {
			continue
		}
		ln, err := listen(l.name, l.addr)
		if err != nil {
			return nil, err
		}
		lns[l.name] = ln
	}
	d.metrics.reg.MustRegister(scanCacheEntries(d.scanCache.Load))
	d.metrics.reg.MustRegister(newGreylistCollector(d.store, func() int { return d.cfg.Load().Greylist.AutoWhitelistAfter }),
		newOutboundCollector(d.store))
	// The admin socket is how the CLI reaches the daemon; without it no
	// one can clear a latch, so failing to open it fails the start.
	d.adminSrv = adminapi.NewServer(adminapi.Options{Backend: d.store, Log: d.log, Now: time.Now,
		Events: d.events, Version: o.Version, Started: time.Now(),
		Antivirus: d.antivirusState, Store: d.health.status, Hosts: d.hp.registry, Scan: d.scanFunc(),
		Greylist: d.store, Config: func() config.Config { return *d.cfg.Load() }, Queue: queue,
		Mailboxes: d.mailboxNews, Alerts: incidentAlerts{store: d.store, cfg: func() config.Config { return *d.cfg.Load() }}})
	mode, err := adminapi.ParseMode(cfg.Admin.Mode)
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	adminLn, err := d.adminSrv.Listen(adminapi.SocketPath(cfg), mode, cfg.Admin.Owner, cfg.Admin.Group)
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	lns["admin"] = adminLn
	// The dashboard and its TLS are set up before anything serves, so a
	// bad certificate fails the start cleanly.
	var httpHandler http.Handler
	if ln := lns["http"]; ln != nil {
		if httpHandler, err = d.httpHandler(cfg, o.Version); err != nil {
			return nil, err
		}
		// Connections are counted under TLS, so a handshake that never
		// comes holds a place that eviction can reclaim.
		d.httpConns = accept.NewTracker(accept.TrackerOptions{Name: "http", Log: d.log,
			MaxConns: cfg.Web.MaxConns, MaxPerClient: cfg.Web.MaxConnsPerClient, Evict: true})
		tln, err := webTLS(cfg, d.httpConns.Listener(ln))
		if err != nil {
			return nil, err
		}
		lns["http"] = tln
	}

	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	if d.clamd != nil {
		d.clamd.Start(ctx)
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			d.watcher.Run(ctx)
		}()
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		store.RunExpiry(ctx, d.store, cfg.Store.ExpireInterval.D(), d.log)
	}()
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		d.health.run(ctx)
	}()
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		runMemTrim(ctx, d.store, d.log)
	}()
	d.runAlerts(ctx)
	pipeline := func() *policy.Pipeline { return d.pl.Load() }
	if ln := lns["policy"]; ln != nil {
		d.policySrv = policyd.NewServer(policyd.Options{
			Pipeline:          pipeline,
			Log:               d.log,
			IdleTimeout:       cfg.PolicyServer.IdleTimeout.D(),
			RequestTimeout:    cfg.PolicyServer.RequestTimeout.D(),
			MaxRequestBytes:   cfg.PolicyServer.MaxRequestBytes,
			MaxConns:          cfg.PolicyServer.MaxConns,
			MaxConnsPerClient: cfg.PolicyServer.MaxConnsPerClient,
		})
		d.serve("policy", ln.Addr(), func() error { return d.policySrv.Serve(ln) })
	}
	if ln := lns["milter"]; ln != nil {
		d.milterSrv = milter.NewServer(milter.Options{
			Pipeline:          pipeline,
			Log:               d.log,
			ReadTimeout:       cfg.Milter.ReadTimeout.D(),
			WriteTimeout:      cfg.Milter.WriteTimeout.D(),
			MaxConns:          cfg.Milter.MaxConns,
			MaxConnsPerClient: cfg.Milter.MaxConnsPerClient,
			CheckTimeout:      checkTimeout(cfg),
			Spool:             d.spool,
		})
		d.serve("milter", ln.Addr(), func() error { return d.milterSrv.Serve(ln) })
	}
	d.serve("admin", adminLn.Addr(), func() error { return d.adminSrv.Serve(adminLn) })
	d.serveHosts(ctx, cfg, lns["trap"])
	d.metrics.reg.MustRegister(newConnCollector(d.connStats()))
	d.startMailbox(ctx, cfg)
	d.runQueueWatch(ctx, queue.Watch)
	if ln := lns["http"]; ln != nil {
		d.httpSrv = &http.Server{
			Handler: httpHandler,
			// A client that dawdles must not hold a connection.
			ReadHeaderTimeout: cfg.Web.ReadHeaderTimeout.D(),
			ReadTimeout:       max(30*time.Second, cfg.Web.ReadHeaderTimeout.D()),
			WriteTimeout:      60 * time.Second,
			IdleTimeout:       cfg.Web.IdleTimeout.D(),
			MaxHeaderBytes:    64 << 10,
			ErrorLog:          slog.NewLogLogger(d.log.Handler(), slog.LevelWarn),
		}
		d.serve("http", ln.Addr(), func() error {
			if err := d.httpSrv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	d.log.Info("mailwarden started", "version", o.Version, "data_dir", cfg.DataDir,
		"policy", cfg.Listen.Policy, "milter", cfg.Listen.Milter, "http", cfg.Listen.HTTP,
		"admin", adminapi.SocketPath(cfg),
		"greylist", cfg.Greylist.Enabled, "config", orDefault(o.ConfigPath))
	return d, nil
}

func orDefault(path string) string {
	if path == "" {
		return "(built-in defaults)"
	}
	return path
}

func (d *Daemon) serve(name string, addr net.Addr, fn func() error) {
	d.log.Info("listening", "listener", name, "addr", addr.String())
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		if err := fn(); err != nil {
			d.serveErr <- fmt.Errorf("%s listener on %s: %w", name, addr, err)
		}
	}()
}

// Errors delivers a listener's fatal error; the caller should shut down.
func (d *Daemon) Errors() <-chan error { return d.serveErr }

// Log returns the daemon logger.
func (d *Daemon) Log() *slog.Logger { return d.log }

// apply builds the pipeline for cfg and installs it.
func (d *Daemon) apply(cfg config.Config) error {
	reg, err := Sites(cfg)
	if err != nil {
		return err
	}
	cache := d.keepScanCache(cfg)
	deps := Deps{Store: d.store, Scanner: d.scanner, Log: d.log, Now: time.Now, Sites: reg,
		ScanCache: cache, CacheCounted: d.metrics.countScanCache, SkipBadWhitelistLines: true}
	if d.watcher != nil {
		deps.SignatureVersion = d.watcher.SignatureVersion
	}
	built, err := Checks(cfg, deps)
	if err != nil {
		return err
	}
	d.scanCache.Store(cache)
	d.level.Set(parseLevel(cfg.Log.Level))
	mailLog := slog.New(slog.NewTextHandler(d.mailFile, nil))
	d.pl.Store(policy.NewPipeline(built.Checks, policy.PipelineOptions{
		FailOpen: FailOpen(cfg),
		Log:      d.log,
		MailLog:  mailLog,
		Classify: built.Classify,
		Observe: func(req *policy.Request, v policy.Verdict, took time.Duration) {
			d.metrics.observe(req, v, took)
			d.events.Observe(req, v, took)
			countIn(d.charts, req.Time, chartKinds(req, v)...)
		},
	}))
	// The pipeline, the host registry and the admin API see the new
	// sites together.
	d.sites.Store(reg)
	d.cfg.Store(&cfg)
	return nil
}

// Reload re-reads the config file. An invalid config is logged and the
// running one kept. Listener addresses and the data directory need a
// restart; a change to them is reported, not applied.
func (d *Daemon) Reload() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.mailFile.Reopen(); err != nil {
		d.log.Error("reload: reopening mail log failed, keeping the old file", "err", err)
	}
	cfg, err := LoadConfig(d.opts.ConfigPath, d.opts.DataDir)
	if err == nil {
		if changed := keepRestartOnly(&cfg, *d.cfg.Load()); len(changed) > 0 {
			d.log.Warn("reload: these settings take effect only after a restart; the running values are kept",
				"settings", strings.Join(changed, ", "))
		}
		err = d.apply(cfg)
	}
	if err != nil {
		d.metrics.reloads.WithLabelValues("failure").Inc()
		d.log.Error("reload failed, keeping the running configuration", "config", d.opts.ConfigPath, "err", err)
		return err
	}
	d.metrics.reloads.WithLabelValues("success").Inc()
	d.log.Info("configuration reloaded", "config", orDefault(d.opts.ConfigPath))
	return nil
}

// Shutdown stops accepting connections and closes idle ones at once: a
// milter session between messages, a policy connection between
// requests, an idle HTTP keep-alive. It lets transactions in flight (a
// message between MAIL and end of message, a policy request or HTTP
// request being answered) finish until ctx ends, then closes the store.
// It returns nil when nothing was cut off. Calls after the first return
// the first call's result.
func (d *Daemon) Shutdown(ctx context.Context) error {
	d.stopOnce.Do(func() { d.stopErr = d.shutdown(ctx) })
	return d.stopErr
}

func (d *Daemon) shutdown(ctx context.Context) error {
	start := time.Now()
	d.log.Info("shutting down: closing idle sessions, finishing transactions in flight")
	var (
		errs []error
		emu  sync.Mutex
		wg   sync.WaitGroup
	)
	for _, f := range []func(context.Context) error{
		func(ctx context.Context) error {
			if d.policySrv == nil {
				return nil
			}
			return d.policySrv.Shutdown(ctx)
		},
		func(ctx context.Context) error {
			if d.milterSrv == nil {
				return nil
			}
			return d.milterSrv.Shutdown(ctx)
		},
		func(ctx context.Context) error {
			if d.httpSrv == nil {
				return nil
			}
			return d.httpSrv.Shutdown(ctx)
		},
		func(ctx context.Context) error {
			if d.adminSrv == nil {
				return nil
			}
			return d.adminSrv.Shutdown(ctx)
		},
		func(ctx context.Context) error {
			if d.hp.trapSrv == nil {
				return nil
			}
			return d.hp.trapSrv.Shutdown(ctx)
		},
	} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx); err != nil {
				emu.Lock()
				errs = append(errs, err)
				emu.Unlock()
			}
		}()
	}
	wg.Wait()
	d.cancel()
	d.wg.Wait()
	// Hits recorded since the last periodic flush.
	d.flushTrap()
	d.closeAll()
	d.log.Info("mailwarden stopped", "took", time.Since(start).Round(time.Millisecond))
	return errors.Join(errs...)
}

// startAntivirus sets up the clamd client, the message spool and the
// signature watcher when antivirus is enabled. They live as long as the
// daemon: enabling antivirus or changing its servers needs a restart.
func (d *Daemon) startAntivirus(cfg config.Config) error {
	a := cfg.Antivirus
	if !a.Enabled {
		return nil
	}
	dir := a.SpoolDir
	if dir == "" {
		abs, err := filepath.Abs(filepath.Join(cfg.DataDir, "spool"))
		if err != nil {
			return fmt.Errorf("antivirus spool: %w", err)
		}
		dir = abs
	}
	if n, err := spool.Clean(dir); err != nil {
		d.log.Warn("antivirus spool: removing stale files failed", "dir", dir, "err", err)
	} else if n > 0 {
		d.log.Info("antivirus spool: removed stale files from an earlier run", "dir", dir, "files", n)
	}
	sp, err := spool.New(dir, a.SpoolMemory)
	if err != nil {
		return fmt.Errorf("antivirus spool: %w", err)
	}
	co := clamdOptions(a)
	co.Log = d.log
	c, err := clamd.New(co)
	if err != nil {
		return fmt.Errorf("antivirus: %w", err)
	}
	d.clamd, d.scanner, d.spool = c, c, sp
	d.watcher = avstatus.New(avstatus.Options{Clamd: c, MaxAge: a.SignatureMaxAge.D(), Events: d.events, Log: d.log})
	d.metrics.reg.MustRegister(d.watcher)
	return nil
}

// keepScanCache returns the scan cache for cfg: the running one when
// its size and TTL are unchanged, so a reload does not forget what it
// learnt; a new one when they changed; nil when the cache is off.
func (d *Daemon) keepScanCache(cfg config.Config) *antivirus.Cache {
	a := cfg.Antivirus
	if !a.Enabled || !a.Cache.Enabled || d.clamd == nil {
		return nil
	}
	if old := d.scanCache.Load(); old != nil {
		if o := old.Options(); o.MaxEntries == a.Cache.MaxEntries && o.TTL == a.Cache.TTL.D() {
			return old
		}
	}
	return NewScanCache(cfg)
}

// antivirusState is what `mailwarden status` shows of antivirus.
func (d *Daemon) antivirusState() adminapi.AntivirusState {
	cfg := d.cfg.Load()
	st := adminapi.AntivirusState{Enabled: d.clamd != nil, SignatureMaxAge: cfg.Antivirus.SignatureMaxAge.D()}
	if d.clamd != nil {
		st.Servers = d.clamd.Status()
	}
	return st
}

// checkTimeout bounds one pipeline evaluation in the milter: long enough
// for a scan that fails over through every clamd, so the milter does not
// cut a slow but working scan short.
func checkTimeout(cfg config.Config) time.Duration {
	t := 20 * time.Second
	if a := cfg.Antivirus; a.Enabled {
		t = max(t, time.Duration(len(a.Servers))*(a.ConnectTimeout.D()+a.ScanTimeout.D())+5*time.Second)
	}
	return t
}

func (d *Daemon) closeAll() {
	if d.clamd != nil {
		d.clamd.Close()
	}
	if d.store != nil && d.opts.Store == nil {
		if err := d.store.Close(); err != nil {
			d.log.Error("closing store", "err", err)
		}
	}
	d.mailFile.Close()
}

// clamdOptions are the clamd client's options from the antivirus section.
func clamdOptions(a config.Antivirus) clamd.Options {
	return clamd.Options{Servers: a.Servers, ConnectTimeout: a.ConnectTimeout.D(),
		ScanTimeout: a.ScanTimeout.D(), MaxSize: a.MaxScanSize, HealthInterval: a.HealthInterval.D()}
}
