package clamd

import (
	"strings"
	"testing"
	"time"
)

func TestNewRejectsBadOptions(t *testing.T) {
	cases := []struct {
		name string
		o    Options
		want []string // every line must be in the error
	}{
		{"no servers", Options{}, []string{"no servers configured"}},
		{"bad entries, all reported", Options{Servers: []string{
			"tcp:127.0.0.1:3310", "127.0.0.1:3310", "unix:relative/clamd.sock", "tcp:host", "tcp::3310",
			"tcp:127.0.0.1:0", "tcp:127.0.0.1:3310", "unix:/" + strings.Repeat("a", 200),
		}}, []string{
			`server 2 "127.0.0.1:3310": want "tcp:host:port" or "unix:/path"`,
			`server 3 "unix:relative/clamd.sock": unix socket path must be absolute`,
			`server 4 "tcp:host": want "tcp:host:port"`,
			`server 5 "tcp::3310": missing host`,
			`server 6 "tcp:127.0.0.1:0": port "0" is not a number from 1 to 65535`,
			`server 7 "tcp:127.0.0.1:3310": listed twice`,
			`server 8 "unix:/aaa`, "longer than 107 bytes",
		}},
		{"negative numbers", Options{Servers: []string{"unix:/run/clamd.ctl"},
			ConnectTimeout: -time.Second, ScanTimeout: -1, HealthInterval: -2, MaxSize: -1},
			[]string{"connect timeout -1s is negative", "scan timeout -1ns is negative", "health interval -2ns is negative", "max size -1 is negative"}},
		{"too large", Options{Servers: []string{"tcp:[::1]:3310"}, MaxSize: 5 << 30}, []string{"over clamd's 4 GB stream limit"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.o)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestNewDefaults(t *testing.T) {
	c, err := New(Options{Servers: []string{"tcp:localhost:3310", "unix:/var/run/clamav/clamd.ctl"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	o := c.opts
	if o.ConnectTimeout != DefaultConnectTimeout || o.ScanTimeout != DefaultScanTimeout ||
		o.HealthInterval != DefaultHealthInterval || o.MaxSize != DefaultMaxSize || o.Log == nil {
		t.Errorf("defaults not applied: %+v", o)
	}
	st := c.Status()
	if len(st) != 2 || st[0].Addr != "tcp:localhost:3310" || !st[0].Up || !st[1].Up {
		t.Errorf("status before any check: %+v", st)
	}
}
