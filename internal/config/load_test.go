package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// errorLines renders err as Parse does and strips the "name:" prefix
// from each line, giving lines in the testdata "# want:" format.
func errorLines(t *testing.T, name string, err error) []string {
	t.Helper()
	var errs *Errors
	if !errors.As(err, &errs) {
		t.Fatalf("error is %T, want *Errors: %v", err, err)
	}
	var lines []string
	for l := range strings.SplitSeq(errs.Error(), "\n") {
		rest, ok := strings.CutPrefix(l, name+":")
		if !ok {
			t.Errorf("error line %q does not start with %q", l, name+":")
		}
		lines = append(lines, strings.TrimSpace(rest))
	}
	return lines
}

// wantLines returns the "# want:" lines at the start of a bad case.
func wantLines(data []byte) []string {
	var want []string
	for l := range strings.SplitSeq(string(data), "\n") {
		w, ok := strings.CutPrefix(l, "# want: ")
		if !ok {
			break
		}
		want = append(want, w)
	}
	return want
}

func TestCorpus(t *testing.T) {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var good, bad int
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := Parse(path, data)
			switch {
			case strings.HasSuffix(path, ".good.yaml"):
				good++
				if err != nil {
					t.Fatalf("good config failed to load:\n%v", err)
				}
				checkRoundTrip(t, cfg)
			case strings.HasSuffix(path, ".bad.yaml"):
				bad++
				want := wantLines(data)
				if len(want) == 0 {
					t.Fatal("bad case has no '# want:' lines")
				}
				if err == nil {
					t.Fatalf("bad config loaded without error; want:\n%s", strings.Join(want, "\n"))
				}
				if got := errorLines(t, path, err); !slices.Equal(got, want) {
					t.Errorf("errors differ\ngot:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
				}
			default:
				t.Fatal("testdata file is neither *.good.yaml nor *.bad.yaml")
			}
		})
	}
	if good < 3 || bad < 15 {
		t.Errorf("corpus has %d good and %d bad cases; want at least 3 and 15", good, bad)
	}
}

// checkRoundTrip asserts that the printed effective configuration loads
// back to the same value.
func checkRoundTrip(t *testing.T, cfg Config) {
	t.Helper()
	out, err := cfg.YAML()
	if err != nil {
		t.Fatalf("YAML: %v", err)
	}
	back, err := Parse("printed", out)
	if err != nil {
		t.Fatalf("printed config does not load:\n%v\n%s", err, out)
	}
	if !reflect.DeepEqual(back, cfg) {
		t.Errorf("printed config loads differently\nprinted:\n%s\ngot:  %+v\nwant: %+v", out, back, cfg)
	}
}

func TestParseEmptyIsDefault(t *testing.T) {
	for _, in := range []string{"", "\n\n", "# nothing here\n  # indented comment\n", "---\n", "--- # only a marker\n...\n"} {
		cfg, err := Parse("empty.yaml", []byte(in))
		if err != nil {
			t.Errorf("Parse(%q): %v", in, err)
			continue
		}
		if !reflect.DeepEqual(cfg, Default()) {
			t.Errorf("Parse(%q) = %+v, want Default()", in, cfg)
		}
	}
}

func TestParseOverlaysDefault(t *testing.T) {
	in := `
greylist:
  delay: 10m
  whitelist_recipients: [hostmaster@]
internal_networks: [10.0.0.0/8, 192.0.2.7]
fail_open: [greylist]
log:
  level:  # empty keeps the default
`
	cfg, err := Parse("overlay.yaml", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Greylist.Delay = Duration(10 * time.Minute)
	want.Greylist.WhitelistRecipients = []string{"hostmaster@"}
	want.InternalNetworks = []Prefix{MustPrefix("10.0.0.0/8"), MustPrefix("192.0.2.7/32")}
	want.FailOpen = []string{"greylist"}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("got  %+v\nwant %+v", cfg, want)
	}
}

// TestAllErrorsAtOnce checks that decoding does not stop at the first
// problem: unknown keys, type errors and failed validation all come back
// in one *Errors, in file order.
func TestAllErrorsAtOnce(t *testing.T) {
	in := "greylist:\n  dealy: 5m\n  ipv4_prefix: x\n  ipv6_prefix: 200\nbogus: 1\nlog:\n  level: loud\n"
	_, err := Parse("c.yaml", []byte(in))
	var errs *Errors
	if !errors.As(err, &errs) {
		t.Fatalf("got %v, want *Errors", err)
	}
	var got []string
	for _, e := range errs.List {
		got = append(got, e.Key+"@"+string(rune('0'+e.Line)))
	}
	want := []string{"greylist@2", "greylist.ipv4_prefix@3", "greylist.ipv6_prefix@4", "@5", "log.level@7"}
	if !slices.Equal(got, want) {
		t.Errorf("got key@line %q, want %q\n%v", got, want, err)
	}
}

func TestErrorsRendering(t *testing.T) {
	e := &Errors{File: "/etc/mailwarden.yaml", List: []Error{
		{Line: 3, Key: "greylist.delay", Msg: "bad"},
		{Line: 0, Key: "data_dir", Msg: "must not be empty"},
		{Line: 1, Msg: "invalid YAML: oops"},
	}}
	want := "/etc/mailwarden.yaml:3: greylist.delay: bad\n" +
		"/etc/mailwarden.yaml: data_dir: must not be empty\n" +
		"/etc/mailwarden.yaml:1: invalid YAML: oops"
	if got := e.Error(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mailwarden.yaml")
	if err := os.WriteFile(path, []byte("data_dir: "+dir+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DataDir != dir {
		t.Errorf("DataDir = %q, want %q", cfg.DataDir, dir)
	}

	_, err = Load(filepath.Join(dir, "missing.yaml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: got %v, want fs.ErrNotExist", err)
	}

	if err := os.WriteFile(path, []byte("greylist:\n  delay: soon\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load(path)
	if got, want := errorLines(t, path, err), []string{`2: greylist.delay: invalid duration "soon" (use Go durations such as 300s, 5m, 48h)`}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestDefaultIsValid(t *testing.T) {
	c := Default()
	if errs := c.Validate(); len(errs) > 0 {
		t.Errorf("Default() fails validation: %v", errs)
	}
	checkRoundTrip(t, c)
}

func TestValidateWithoutFile(t *testing.T) {
	c := Default()
	c.DataDir = ""
	c.InternalNetworks = append(c.InternalNetworks, Prefix{})
	c.Greylist.WhitelistClients = []string{" "}
	got := c.Validate()
	want := []Error{
		{Key: "data_dir", Msg: "must not be empty"},
		{Key: "internal_networks[2]", Msg: "invalid network"},
		{Key: "greylist.whitelist_clients[0]", Msg: "empty list entry"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

func TestListenAddresses(t *testing.T) {
	for _, tc := range []struct {
		addr string
		unix bool
		ok   bool
	}{
		{"", false, true},
		{"127.0.0.1:10023", false, true},
		{"[::1]:8025", false, true},
		{":10029", false, true},
		{"localhost:10023", false, true},
		{"mx1.example.org:1", false, true},
		{"127.0.0.1:65535", false, true},
		{"unix:/run/mailwarden/policy.sock", true, true},
		{"unix:/run/x.sock", false, false},
		{"unix:run/x.sock", true, false},
		{"unix:", true, false},
		{"127.0.0.1", false, false},
		{"127.0.0.1:0", false, false},
		{"127.0.0.1:65536", false, false},
		{"127.0.0.1:+25", false, false},
		{"127.0.0.1:smtp", false, false},
		{"::1:25", false, false},
		{"bad_host:25", false, false},
	} {
		msg := checkListen(tc.addr, tc.unix)
		if (msg == "") != tc.ok {
			t.Errorf("checkListen(%q, unix=%v) = %q, want ok=%v", tc.addr, tc.unix, msg, tc.ok)
		}
	}
}

func TestDurationYAML(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"300s": 5 * time.Minute, "5m": 5 * time.Minute, "48h": 48 * time.Hour,
		"1h30m": 90 * time.Minute, "1.5s": 1500 * time.Millisecond, "0s": 0,
	} {
		cfg, err := Parse("d.yaml", []byte("milter:\n  write_timeout: "+in+"\n"))
		if want == 0 {
			if err == nil {
				t.Errorf("%q: zero timeout accepted", in)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", in, err)
			continue
		}
		if got := cfg.Milter.WriteTimeout.D(); got != want {
			t.Errorf("%q = %v, want %v", in, got, want)
		}
	}
	for d, want := range map[time.Duration]string{
		5 * time.Minute: "5m", 48 * time.Hour: "48h", 330 * time.Second: "5m30s",
		time.Hour + time.Second: "1h0m1s", 10 * time.Second: "10s", 0: "0s",
		1500 * time.Millisecond: "1.5s", 90 * time.Minute: "1h30m",
	} {
		got, err := Duration(d).MarshalYAML()
		if err != nil || got != want {
			t.Errorf("MarshalYAML(%v) = %v, %v; want %q", d, got, err, want)
		}
	}
}

// TestSyntaxErrorLines checks the line reported for syntax errors, which
// yaml.v3 gets wrong or leaves out in several cases, including line
// breaks other than LF.
func TestSyntaxErrorLines(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"a: b: c\n", "1: invalid YAML: mapping values are not allowed in this context"},
		{"log:\n  level: info\n  format: text\n format: json\n", "4: invalid YAML: did not find expected key"},
		{"log:\r  level: info\r format: json\r", "3: invalid YAML: did not find expected key"},
		{"log:\r\n  level: info\r\n format: json\r\n", "3: invalid YAML: did not find expected key"},
		{"greylst: 1\r\n", `1: unknown key "greylst" (did you mean "greylist"?)`},
		{"log:\r\r  lvl: 1\r", `3: log: unknown key "lvl" (did you mean "level"?)`},
	} {
		_, err := Parse("s.yaml", []byte(tc.in))
		if err == nil {
			t.Errorf("Parse(%q) succeeded, want %q", tc.in, tc.want)
			continue
		}
		if got := errorLines(t, "s.yaml", err); !slices.Equal(got, []string{tc.want}) {
			t.Errorf("Parse(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestStoreKind: kind and its older spelling backend settle each other,
// and a Redis store lets greylisting fail open unless fail_open is set.
func TestStoreKind(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		kind       string
		failOpen   []string
	}{
		{"default", "", "sqlite", nil},
		{"backend spelling", "store: {backend: redis, url: 'redis://127.0.0.1:6379'}", "redis", []string{"greylist"}},
		{"kind spelling", "store: {kind: redis, addresses: ['127.0.0.1:6379']}", "redis", []string{"greylist"}},
		{"explicit none", "fail_open: []\nstore: {kind: redis, url: 'redis://127.0.0.1'}", "redis", nil},
		{"explicit other", "fail_open: [antivirus]\nstore: {kind: redis, url: 'redis://127.0.0.1'}", "redis", []string{"antivirus"}},
		{"sqlite keeps none", "store: {kind: sqlite}", "sqlite", nil},
	} {
		cfg, err := Parse(tc.name, []byte(tc.yaml))
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if cfg.Store.Kind != tc.kind || cfg.Store.Backend != tc.kind {
			t.Errorf("%s: kind %q, backend %q; want both %q", tc.name, cfg.Store.Kind, cfg.Store.Backend, tc.kind)
		}
		if !slices.Equal(cfg.FailOpen, tc.failOpen) {
			t.Errorf("%s: fail_open = %q, want %q", tc.name, cfg.FailOpen, tc.failOpen)
		}
	}
}

func TestStorePasswordFileMode(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "redis.pass")
	if err := os.WriteFile(path, []byte("secret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	yml := "store: {kind: redis, url: 'redis://127.0.0.1', password_file: '" + path + "'}"
	if _, err := Parse("t", []byte(yml)); err == nil || !strings.Contains(err.Error(), "readable by everyone") {
		t.Errorf("world-readable password file: err = %v", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Parse("t", []byte(yml)); err != nil {
		t.Errorf("private password file: %v", err)
	}
}
