package clamd

import (
	"bufio"
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseScanReply(t *testing.T) {
	serverErr := errors.New("want a *ServerError")
	cases := []struct {
		reply string
		virus string
		err   error
	}{
		{"stream: OK", "", nil},
		{"stream: Eicar-Test-Signature FOUND", "Eicar-Test-Signature", nil},
		{"stream: Win.Test.EICAR_HDB-1 FOUND", "Win.Test.EICAR_HDB-1", nil},
		{"stream: Sig With Spaces FOUND", "Sig With Spaces", nil},
		{"stream: Heuristics.Limits.Exceeded.MaxFileSize FOUND", "Heuristics.Limits.Exceeded.MaxFileSize", nil},
		{"INSTREAM size limit exceeded. ERROR", "", ErrTooLarge},
		{"Can't allocate memory ERROR", "", serverErr},
		{"stream: lstat() failed: No such file ERROR", "", serverErr},
		{"stream: FOUND", "", ErrProtocol},
		{"stream:  FOUND", "", ErrProtocol},
		{"stream: ", "", ErrProtocol},
		{"stream: ok", "", ErrProtocol},
		{"", "", ErrProtocol},
		{"PONG", "", ErrProtocol},
		{"stream: Evil\r\n250 OK FOUND", "", ErrProtocol},
		{"stream: \xff\xfe FOUND", "", ErrProtocol},
		{"HELLO WORLD", "", ErrProtocol},
	}
	for _, tc := range cases {
		virus, err := parseScanReply(tc.reply)
		if virus != tc.virus {
			t.Errorf("%q: virus %q, want %q", tc.reply, virus, tc.virus)
		}
		switch {
		case tc.err == nil && err != nil:
			t.Errorf("%q: unexpected error %v", tc.reply, err)
		case tc.err == serverErr:
			var se *ServerError
			if !errors.As(err, &se) || se.Text == "" || !strings.Contains(tc.reply, se.Text) {
				t.Errorf("%q: err %v, want clamd's text", tc.reply, err)
			}
		case tc.err != nil && !errors.Is(err, tc.err):
			t.Errorf("%q: err %v, want %v", tc.reply, err, tc.err)
		}
	}
}

func TestReadReply(t *testing.T) {
	cases := []struct {
		in    string
		reply string
		err   error
	}{
		{"stream: OK\x00", "stream: OK", nil},
		{"stream: OK\x00trailing", "stream: OK", nil},
		{"stream: OK", "", ErrProtocol}, // no terminator, then EOF
		{"", "", errNoAnswer},           // closed at once
		{strings.Repeat("A", 5000) + "\x00", "", ErrProtocol},
		{strings.Repeat("A", maxReply) + "\x00", strings.Repeat("A", maxReply-0), ErrProtocol},
		{strings.Repeat("A", maxReply-1) + "\x00", strings.Repeat("A", maxReply-1), nil},
	}
	for _, tc := range cases {
		got, err := readReply(bufio.NewReaderSize(strings.NewReader(tc.in), 16))
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Errorf("%.20q: err %v, want %v", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.reply {
			t.Errorf("%.20q: got %.20q, %v", tc.in, got, err)
		}
	}
}

func TestStripID(t *testing.T) {
	if got, err := stripID("3: stream: OK", 3); err != nil || got != "stream: OK" {
		t.Errorf("good id: %q, %v", got, err)
	}
	for _, bad := range []string{"2: stream: OK", "stream: OK", "x: PONG", "-3: PONG", "3:PONG"} {
		if _, err := stripID(bad, 3); !errors.Is(err, ErrProtocol) {
			t.Errorf("%q: err %v, want ErrProtocol", bad, err)
		}
	}
}

func TestParseVersion(t *testing.T) {
	local := func(s string) time.Time {
		tm, err := time.ParseInLocation("2006-01-02 15:04:05", s, time.Local)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	cases := []struct {
		in   string
		want Version
		ok   bool
	}{
		{"ClamAV 1.0.7/27463/Wed Nov 18 08:24:02 2026", Version{Engine: "ClamAV 1.0.7", DBVersion: 27463, DBTime: local("2026-11-18 08:24:02")}, true},
		{"ClamAV 1.4.6/27000/Tue Dec  1 09:05:00 2026", Version{Engine: "ClamAV 1.4.6", DBVersion: 27000, DBTime: local("2026-12-01 09:05:00")}, true},
		{"ClamAV 1.0.7", Version{Engine: "ClamAV 1.0.7"}, true},
		{"ClamAV 0.103.8/26000", Version{Engine: "ClamAV 0.103.8", DBVersion: 26000}, true},
		{"ClamAV ", Version{}, false},
		{"clamav 1.0", Version{}, false},
		{"PONG", Version{}, false},
		{"", Version{}, false},
		{"ClamAV 1.0.7/abc/Wed Nov 18 08:24:02 2026", Version{}, false},
		{"ClamAV 1.0.7/-5", Version{}, false},
		{"ClamAV 1.0.7/27463/yesterday", Version{}, false},
		{"ClamAV 1.0.7\n/27463", Version{}, false},
	}
	for _, tc := range cases {
		got, err := parseVersion(tc.in)
		if tc.ok != (err == nil) {
			t.Errorf("%q: err %v", tc.in, err)
			continue
		}
		if !tc.ok && !errors.Is(err, ErrProtocol) {
			t.Errorf("%q: err %v, want ErrProtocol", tc.in, err)
		}
		if got.Engine != tc.want.Engine || got.DBVersion != tc.want.DBVersion || !got.DBTime.Equal(tc.want.DBTime) {
			t.Errorf("%q: got %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

// FuzzParseReply feeds arbitrary bytes from a "server" through the reply
// reader and both parsers. Whatever comes in, the result is a clean
// answer, a named signature fit for a log line, or an error.
func FuzzParseReply(f *testing.F) {
	for _, s := range []string{
		"stream: OK\x00", "1: stream: OK\x00", "stream: Eicar-Test-Signature FOUND\x00",
		"stream: FOUND\x00", "INSTREAM size limit exceeded. ERROR\x00", "stream: OK",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(data), 16)
		reply, err := readReply(br)
		if err != nil {
			if !errors.Is(err, ErrProtocol) && !errors.Is(err, errNoAnswer) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		if len(reply) > maxReply || strings.IndexByte(reply, 0) >= 0 {
			t.Fatalf("reply of %d bytes, or with a NUL", len(reply))
		}
		for _, r := range []string{reply, strings.TrimPrefix(reply, "1: ")} {
			if s, err := stripID(r, 1); err == nil && len(s) >= len(r) {
				t.Fatalf("stripID kept the id: %q", s)
			}
			virus, err := parseScanReply(r)
			if err != nil && virus != "" {
				t.Fatalf("both a virus %q and an error %v", virus, err)
			}
			if virus != "" && (!printable(virus) || strings.TrimSpace(virus) != virus || !strings.HasSuffix(r, " FOUND")) {
				t.Fatalf("bad virus name %q from %q", virus, r)
			}
			if err != nil && len(err.Error()) > 600 { // a log line stays a line
				t.Fatalf("error of %d bytes", len(err.Error()))
			}
		}
	})
}

// FuzzParseVersion checks that any VERSION answer gives a version with a
// printable engine name, or an error.
func FuzzParseVersion(f *testing.F) {
	f.Add("ClamAV 1.0.7/27463/Wed Nov 18 08:24:02 2026")
	f.Add("ClamAV 1.0.7")
	f.Fuzz(func(t *testing.T, s string) {
		v, err := parseVersion(s)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		if !strings.HasPrefix(v.Engine, "ClamAV ") || !printable(v.Engine) || v.DBVersion < 0 {
			t.Fatalf("%q gave %+v", s, v)
		}
	})
}
