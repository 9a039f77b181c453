// Package config holds mailwarden's configuration: types, defaults, the
// strict YAML loader and validation. No file is needed: Default() is a
// working configuration with the embedded store and loopback listeners.
package config

import (
	"net/netip"
	"time"
)

// Config is the whole configuration file.
type Config struct {
	// DataDir holds the embedded store. --data on the command line wins.
	DataDir string `yaml:"data_dir"`
	// Hostname names this host in X-Greylist headers; default os.Hostname().
	Hostname     string       `yaml:"hostname"`
	Listen       Listen       `yaml:"listen"`
	Log          Log          `yaml:"log"`
	Store        Store        `yaml:"store"`
	Milter       Milter       `yaml:"milter"`
	PolicyServer PolicyServer `yaml:"policy_server"`
	// InternalNetworks are the organisation's own clients: never
	// greylisted, and (later) subject to outbound policy.
	InternalNetworks []Prefix `yaml:"internal_networks"`
	// FailOpen names checks whose internal errors let mail through
	// instead of tempfailing it. Empty by default: no mail is lost.
	FailOpen []string `yaml:"fail_open"`
	Greylist Greylist `yaml:"greylist"`
	// Sites name parts of the internal network (a school, an office):
	// their clients are internal too, and each may have its own sender
	// domains and contact.
	Sites        []Site       `yaml:"sites"`
	SenderPolicy SenderPolicy `yaml:"sender_policy"`
	Latch        Latch        `yaml:"latch"`
	RateLimits   RateLimits   `yaml:"rate_limits"`
	Events       Events       `yaml:"events"`
	Admin        Admin        `yaml:"admin"`
	Antivirus    Antivirus    `yaml:"antivirus"`
	Trap         Trap         `yaml:"trap"`
	Scan         Scan         `yaml:"scan"`
	MailLogin    MailLogin    `yaml:"mail_login"`
	Web          Web          `yaml:"web"`
	Mailbox      Mailbox      `yaml:"mailbox"`
	Queue        Queue        `yaml:"queue"`
	Alerts       Alerts       `yaml:"alerts"`
}

// Trap is the listener the firewall redirects internal machines'
// outbound port-25 connections to: every one is a worm or a
// misconfigured client, recorded per host.
type Trap struct {
	Enabled bool `yaml:"enabled"`
	// Listen is where the redirected connections arrive.
	Listen         string   `yaml:"listen"`
	MaxConns       int      `yaml:"max_conns"`
	MaxPerIP       int      `yaml:"max_per_ip"`
	ReadTimeout    Duration `yaml:"read_timeout"`
	SessionTimeout Duration `yaml:"session_timeout"`
	// MailServers are the organisation's own MTAs, left out of the
	// redirect rules `mailwarden trap rules` prints.
	MailServers []Prefix `yaml:"mail_servers"`
	// FlushInterval is how often aggregated hits are written to the store.
	FlushInterval Duration `yaml:"flush_interval"`
}

// Scan is the backdoor-port scanner. It only ever connects to Ranges.
type Scan struct {
	// Ranges are the internal ranges that may be scanned; empty: none.
	Ranges      []Prefix `yaml:"ranges"`
	Ports       []int    `yaml:"ports"`
	Concurrency int      `yaml:"concurrency"`
	// Rate is connection attempts per second.
	Rate    float64  `yaml:"rate"`
	Timeout Duration `yaml:"timeout"`
	// Interval runs the scan on a schedule; 0: only `mailwarden scan`.
	Interval Duration `yaml:"interval"`
}

// MailLogin follows the IMAP/POP login log to know who last read mail
// from each address.
type MailLogin struct {
	// Log is the Dovecot login log to follow; "" turns this off.
	Log  string   `yaml:"log"`
	Poll Duration `yaml:"poll"`
}

// Antivirus configures scanning every message through clamd at end of
// message (milter only: the policy server never sees the message; it
// acts on a virus Exim's own scan reports, docs/exim.md).
type Antivirus struct {
	// Enabled is off by default: with no clamd running, every message
	// would be tempfailed.
	Enabled bool `yaml:"enabled"`
	// Servers are clamd addresses, "tcp:host:port" or "unix:/path",
	// tried in order with failover.
	Servers []string `yaml:"servers"`
	// ConnectTimeout bounds reaching a clamd; ScanTimeout one whole scan.
	ConnectTimeout Duration `yaml:"connect_timeout"`
	ScanTimeout    Duration `yaml:"scan_timeout"`
	// HealthInterval is how often each clamd is pinged and asked its
	// signature version.
	HealthInterval Duration `yaml:"health_interval"`
	// MaxScanSize caps what is sent to clamd; keep it below clamd's
	// StreamMaxLength. Larger messages get OversizeAction.
	MaxScanSize int64 `yaml:"max_scan_size"`
	// OversizeAction: "accept" (with X-Virus-Status: Unscanned), or
	// "tempfail", or "reject".
	OversizeAction string `yaml:"oversize_action"`
	// SpoolMemory is how much of a message is kept in memory; the rest
	// goes to a temporary file in SpoolDir ("" means data_dir/spool).
	SpoolMemory int64  `yaml:"spool_memory"`
	SpoolDir    string `yaml:"spool_dir"`
	// Inbound and Outbound say what to do with an infected message:
	// "reject" (554 5.7.1 with the virus name), "discard" or "quarantine"
	// (the MTA's hold queue).
	Inbound  string `yaml:"inbound"`
	Outbound string `yaml:"outbound"`
	// OnError is what a scan that fails (clamd down, timeout, garbage)
	// does: "tempfail" (the sender retries, nothing is lost) or "accept"
	// (fail-open).
	OnError string `yaml:"on_error"`
	// AddHeaders adds X-Virus-Scanned and X-Virus-Status.
	AddHeaders bool `yaml:"add_headers"`
	// SignatureMaxAge raises an event when clamd's signatures are older.
	SignatureMaxAge Duration `yaml:"signature_max_age"`
	// Cache remembers clamd's verdicts per MIME part.
	Cache ScanCache `yaml:"cache"`
}

// Site is a named part of the internal network.
type Site struct {
	Name     string   `yaml:"name"`
	Networks []Prefix `yaml:"networks"`
	// Contact is who a latched user should call; it appears in the reply.
	Contact string `yaml:"contact"`
	// SenderDomains, if set, replace sender_policy.sender_domains for
	// this site's clients.
	SenderDomains []string `yaml:"sender_domains"`
	// HeaderFromDomains, if set, replace sender_policy.header_from_domains.
	HeaderFromDomains []string `yaml:"header_from_domains"`
}

// SenderPolicy restricts the sender domains internal clients may use. A
// worm relaying through the organisation's servers forges other domains;
// a violation is refused and latches the client.
type SenderPolicy struct {
	// SenderDomains are the envelope-sender domains internal clients may
	// use (subdomains included). Empty, with no site lists either: the
	// policy is off.
	SenderDomains []string `yaml:"sender_domains"`
	// HeaderFromDomains, if set, are checked against the header From at
	// end of message (milter only).
	HeaderFromDomains []string `yaml:"header_from_domains"`
	// AllowNullSender lets internal clients send bounces (MAIL FROM:<>).
	AllowNullSender bool `yaml:"allow_null_sender"`
	// ReplyText follows "550 5.7.1"; {domain} and {client} are replaced.
	ReplyText string `yaml:"reply_text"`
	// Latch latches the client on a violation.
	Latch bool `yaml:"latch"`
}

// Latch configures latches.
type Latch struct {
	// ReplyText follows "550 5.7.1" for every message from a latched
	// client or user; {client}, {reason}, {contact} and {id} are replaced.
	ReplyText string `yaml:"reply_text"`
	// DefaultContact is used for clients outside any site with a contact.
	DefaultContact string `yaml:"default_contact"`
	// Expiry ends latches on their own after this long; 0: never.
	Expiry Duration `yaml:"expiry"`
	// ExemptClients never latch (the organisation's own relays, a
	// monitoring host); ExemptUsers likewise for SASL users.
	ExemptClients []Prefix `yaml:"exempt_clients"`
	ExemptUsers   []string `yaml:"exempt_users"`
}

// RateLimits limit outbound mail per SASL user, client address and
// sender domain.
type RateLimits struct {
	Enabled      bool  `yaml:"enabled"`
	User         Limit `yaml:"user"`
	Client       Limit `yaml:"client"`
	SenderDomain Limit `yaml:"sender_domain"`
	// LatchOnTrip also latches the user or client that tripped a limit.
	LatchOnTrip bool `yaml:"latch_on_trip"`
	// ReplyText follows "451 4.7.1" when a limit refuses a message.
	ReplyText string `yaml:"reply_text"`
}

// Limit is a rate: at most Messages messages and Recipients recipients
// per Per. A zero count does not limit.
type Limit struct {
	Messages   int      `yaml:"messages"`
	Recipients int      `yaml:"recipients"`
	Per        Duration `yaml:"per"`
}

// Events configures the event log.
type Events struct {
	// Retention is how long events are kept.
	Retention Duration `yaml:"retention"`
	// AuditRetention is how long admin events (the audit trail) are
	// kept; never less than Retention.
	AuditRetention Duration `yaml:"audit_retention"`
	// RecordGreylist also records greylist deferrals as events; they are
	// always in the mail log.
	RecordGreylist bool `yaml:"record_greylist"`
}

// Admin configures the admin API the CLI talks to.
type Admin struct {
	// Socket is the unix socket path; "" means admin.sock in data_dir.
	Socket string `yaml:"socket"`
	// Mode is the socket's permission bits, in octal as a string.
	Mode string `yaml:"mode"`
	// Owner and Group, if set, own the socket (names or numeric IDs).
	Owner string `yaml:"owner"`
	Group string `yaml:"group"`
}

// Listen holds listener addresses. "" disables a listener; the milter and
// policy listeners also take "unix:/path".
type Listen struct {
	Policy string `yaml:"policy"`
	Milter string `yaml:"milter"`
	HTTP   string `yaml:"http"`
}

// Log configures the daemon log and the mail log.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // text or json
	// MailLog receives one line per decision: a file path, or "-" for
	// standard output.
	MailLog string `yaml:"mail_log"`
}

// Store selects and tunes the storage backend.
type Store struct {
	// Kind is "sqlite", the embedded default, or "redis", for several
	// MX hosts sharing state. Backend is its older spelling: Parse sets
	// each from the other, and a file that sets both differently is an
	// error. Code reads Kind.
	Kind           string   `yaml:"kind"`
	Backend        string   `yaml:"backend"`
	ExpireInterval Duration `yaml:"expire_interval"`

	// The rest is for kind redis only. URL (redis:// or rediss://) or
	// Addresses names the server: one address is a single node, several
	// a Cluster, and with MasterName they are Sentinels.
	URL          string   `yaml:"url"`
	Addresses    []string `yaml:"addresses"`
	MasterName   string   `yaml:"master_name"`
	Username     string   `yaml:"username"`
	Password     string   `yaml:"password"`
	PasswordFile string   `yaml:"password_file"` // read when the store is opened
	DB           int      `yaml:"db"`
	Prefix       string   `yaml:"prefix"` // "" means "mailwarden:"
	TLS          StoreTLS `yaml:"tls"`
	DialTimeout  Duration `yaml:"dial_timeout"` // 0 means 2s
	Timeout      Duration `yaml:"timeout"`      // read and write; 0 means 2s
}

// StoreTLS says how to reach Redis over TLS.
type StoreTLS struct {
	Enabled    bool   `yaml:"enabled"`
	CAFile     string `yaml:"ca_file"`
	CertFile   string `yaml:"cert_file"`
	KeyFile    string `yaml:"key_file"`
	ServerName string `yaml:"server_name"`
}

// Store kinds.
const (
	StoreSQLite = "sqlite"
	StoreRedis  = "redis"
)

// Milter tunes the milter front end.
type Milter struct {
	ReadTimeout  Duration `yaml:"read_timeout"`
	WriteTimeout Duration `yaml:"write_timeout"`
	// MaxConns and MaxConnsPerClient cap concurrent connections in
	// total and from one IP address; when full, the connection idle
	// longest is closed to admit a new one. Restart-only.
	MaxConns          int `yaml:"max_conns"`
	MaxConnsPerClient int `yaml:"max_conns_per_client"`
}

// PolicyServer tunes the Postfix policy-delegation front end.
type PolicyServer struct {
	// IdleTimeout closes a connection with no request in progress;
	// Postfix keeps policy connections open up to
	// smtpd_policy_service_max_idle (300s).
	IdleTimeout Duration `yaml:"idle_timeout"`
	// RequestTimeout bounds reading one request once it has started.
	RequestTimeout Duration `yaml:"request_timeout"`
	// MaxRequestBytes bounds one request; longer ones close the connection.
	MaxRequestBytes int `yaml:"max_request_bytes"`
	// MaxConns and MaxConnsPerClient cap concurrent connections in
	// total and from one IP address; when full, the connection idle
	// longest is closed to admit a new one. Restart-only.
	MaxConns          int `yaml:"max_conns"`
	MaxConnsPerClient int `yaml:"max_conns_per_client"`
}

// Greylist configures RFC 6647 greylisting.
type Greylist struct {
	Enabled bool `yaml:"enabled"`
	// Delay is how long a new triplet is refused.
	Delay Duration `yaml:"delay"`
	// RetryWindow is how long after the first attempt a retry still counts.
	RetryWindow Duration `yaml:"retry_window"`
	// PassedLifetime is how long a passed triplet is remembered after its
	// last use.
	PassedLifetime Duration `yaml:"passed_lifetime"`
	IPv4Prefix     int      `yaml:"ipv4_prefix"`
	IPv6Prefix     int      `yaml:"ipv6_prefix"`
	// AutoWhitelistAfter whitelists a client after this many passed
	// deliveries; 0 turns auto-whitelisting off.
	AutoWhitelistAfter int  `yaml:"auto_whitelist_after"`
	SkipAuthenticated  bool `yaml:"skip_authenticated"`
	SkipInternal       bool `yaml:"skip_internal"`
	// WhitelistClients and WhitelistRecipients take postgrey's entry
	// formats; the *Files options name files in postgrey's format.
	WhitelistClients        []string `yaml:"whitelist_clients"`
	WhitelistClientFiles    []string `yaml:"whitelist_client_files"`
	WhitelistRecipients     []string `yaml:"whitelist_recipients"`
	WhitelistRecipientFiles []string `yaml:"whitelist_recipient_files"`
	// ReplyText follows "451 4.7.1" in the reply; {delay} is replaced by
	// the remaining wait.
	ReplyText string `yaml:"reply_text"`
	// AddHeader adds X-Greylist to mail that passed after a delay.
	AddHeader bool `yaml:"add_header"`
}

// Default returns the configuration used when no file is given.
func Default() Config {
	return Config{
		DataDir: "/var/lib/mailwarden",
		Listen: Listen{
			Policy: "127.0.0.1:10023", // postgrey's port: a drop-in
			Milter: "127.0.0.1:10029",
			HTTP:   "127.0.0.1:8025",
		},
		Log:   Log{Level: "info", Format: "text", MailLog: "-"},
		Store: Store{Kind: StoreSQLite, Backend: StoreSQLite, ExpireInterval: Duration(10 * time.Minute)},
		Milter: Milter{
			// Longer than Postfix's smtpd_timeout (300s): a slow but
			// legal SMTP client must not lose its milter session.
			ReadTimeout:  Duration(360 * time.Second),
			WriteTimeout: Duration(10 * time.Second),
			// Postfix holds up to 2 × default_process_limit (100)
			// milter connections, smtpd and cleanup, all from one
			// address; see milter.DefaultMaxConns.
			MaxConns:          1000,
			MaxConnsPerClient: 256,
		},
		PolicyServer: PolicyServer{
			IdleTimeout:     Duration(330 * time.Second),
			RequestTimeout:  Duration(10 * time.Second),
			MaxRequestBytes: 64 << 10,
			// One connection per smtpd process, up to
			// default_process_limit (100) from one address; see
			// policyd.DefaultMaxConns.
			MaxConns:          1000,
			MaxConnsPerClient: 256,
		},
		InternalNetworks: []Prefix{MustPrefix("127.0.0.0/8"), MustPrefix("::1/128")},
		Greylist: Greylist{
			Enabled:             true,
			Delay:               Duration(5 * time.Minute),
			RetryWindow:         Duration(48 * time.Hour),
			PassedLifetime:      Duration(35 * 24 * time.Hour),
			IPv4Prefix:          24,
			IPv6Prefix:          64,
			AutoWhitelistAfter:  5,
			SkipAuthenticated:   true,
			SkipInternal:        true,
			WhitelistRecipients: []string{"postmaster@", "abuse@"},
			ReplyText:           "Greylisted, please try again in {delay}",
			AddHeader:           true,
		},
		SenderPolicy: SenderPolicy{
			AllowNullSender: true,
			ReplyText:       "Sender domain {domain} is not allowed from {client}",
			Latch:           true,
		},
		Latch: Latch{
			ReplyText:      "Mail from {client} is blocked: {reason}. Contact {contact}, ref {id}",
			DefaultContact: "your mail administrator",
		},
		RateLimits: RateLimits{
			Enabled:      true,
			User:         Limit{Messages: 100, Recipients: 500, Per: Duration(time.Hour)},
			Client:       Limit{Messages: 200, Recipients: 1000, Per: Duration(time.Hour)},
			SenderDomain: Limit{Messages: 2000, Recipients: 10000, Per: Duration(time.Hour)},
			ReplyText:    "Too much mail from {what}, please try again later",
		},
		Events: Events{Retention: Duration(30 * 24 * time.Hour), AuditRetention: Duration(365 * 24 * time.Hour)},
		Admin:  Admin{Mode: "0660"},
		Antivirus: Antivirus{
			Servers:         []string{"unix:/var/run/clamav/clamd.ctl"},
			ConnectTimeout:  Duration(2 * time.Second),
			ScanTimeout:     Duration(30 * time.Second),
			HealthInterval:  Duration(10 * time.Second),
			MaxScanSize:     20 << 20,
			OversizeAction:  "accept",
			SpoolMemory:     1 << 20,
			Inbound:         "reject",
			Outbound:        "reject",
			OnError:         "tempfail",
			AddHeaders:      true,
			SignatureMaxAge: Duration(72 * time.Hour),
			Cache: ScanCache{
				Enabled:      true,
				MaxEntries:   100_000,
				TTL:          Duration(24 * time.Hour),
				CleanMinSize: 64 << 10,
			},
		},
		Trap: Trap{
			Listen:         "127.0.0.1:10025",
			MaxConns:       256,
			MaxPerIP:       4,
			ReadTimeout:    Duration(10 * time.Second),
			SessionTimeout: Duration(30 * time.Second),
			FlushInterval:  Duration(5 * time.Second),
		},
		Scan: Scan{
			Ports:       []int{1080},
			Concurrency: 32,
			Rate:        200,
			Timeout:     Duration(time.Second),
		},
		MailLogin: MailLogin{Poll: Duration(time.Second)},
		Web:       defaultWeb(),
		Mailbox:   defaultMailbox(),
		Queue:     defaultQueue(),
		Alerts:    defaultAlerts(),
	}
}

// Duration is a time.Duration written as a Go duration string ("5m").
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// Prefix is a network in CIDR notation; a bare address means a single host.
type Prefix struct{ netip.Prefix }

// MustPrefix parses s or panics; for defaults and tests.
func MustPrefix(s string) Prefix {
	p, err := ParsePrefix(s)
	if err != nil {
		panic(err)
	}
	return p
}

// ParsePrefix parses "10.0.0.0/8", "2001:db8::/32" or a bare address.
func ParsePrefix(s string) (Prefix, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return Prefix{netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())}, nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return Prefix{}, err
	}
	return Prefix{p.Masked()}, nil
}
