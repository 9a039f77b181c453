package mtaqueue

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// rec encodes one Postfix record (src/global/record.c rec_put).
func rec(typ byte, data string) []byte {
	out := []byte{typ}
	n := len(data)
	for {
		b := byte(n & 0x7f)
		n >>= 7
		if n > 0 {
			out = append(out, b|0x80)
			continue
		}
		out = append(out, b)
		break
	}
	return append(out, data...)
}

// queueFile builds a queue file as cleanup(8) writes one: envelope,
// content of the size the size record gives, extracted records, end.
func queueFile(sender string, rcpts []string, attrs []string, body string, extracted ...string) []byte {
	var content bytes.Buffer
	for _, line := range strings.Split(body, "\n") {
		content.Write(rec('N', line))
	}
	var env bytes.Buffer
	env.Write(rec('T', "1796590000 123456"))
	env.Write(rec('F', ""))
	for _, a := range attrs {
		env.Write(rec('A', a))
	}
	env.Write(rec('S', sender))
	for _, r := range rcpts {
		env.Write(rec('O', r))
		env.Write(rec('R', r))
	}
	var f bytes.Buffer
	f.Write(rec('C', fmt.Sprintf("%15d %15d %15d %15d %15d", content.Len(), 0, len(rcpts), 0, content.Len())))
	f.Write(env.Bytes())
	f.Write(rec('M', ""))
	f.Write(content.Bytes())
	f.Write(rec('X', ""))
	for _, r := range extracted {
		f.Write(rec('R', r))
	}
	f.Write(rec('E', ""))
	return f.Bytes()
}

func TestParsePostfixQueueFile(t *testing.T) {
	// The body holds what would be records if the content were read as
	// envelope: a recipient and an end record. They must be skipped.
	body := "Subject: test\n\n" + string(rec('R', "not-a-recipient@evil.example")) + string(rec('E', ""))
	data := queueFile("office@victim-one.example", []string{"a@gmail.test", "b@yahoo.test"},
		[]string{"rewrite_context=remote", "sasl_method=PLAIN", "sasl_username=office"}, body, "c@extracted.test")
	mod := time.Unix(1, 0)
	msg, err := ParsePostfixQueueFile(bytes.NewReader(data), "4F9D21C2A3B", Deferred, mod, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if msg.ID != "4F9D21C2A3B" || msg.Queue != Deferred || msg.Sender != "office@victim-one.example" || msg.AuthUser != "office" ||
		!msg.Arrival.Equal(time.Unix(1796590000, 0)) {
		t.Errorf("message = %+v", msg)
	}
	if got := strings.Join(addrs(msg), " "); got != "a@gmail.test b@yahoo.test c@extracted.test" {
		t.Errorf("recipients %q", got)
	}
	if msg.Size <= 0 || msg.Size == int64(len(data)) {
		t.Errorf("size %d: want the size record's message size, not the file's %d", msg.Size, len(data))
	}

	// The null sender, no size record (maildrop), no time record.
	var f bytes.Buffer
	f.Write(rec('S', ""))
	f.Write(rec('R', "x@y.test"))
	f.Write(rec('M', ""))
	f.Write(rec('N', "body"))
	f.Write(rec('X', ""))
	f.Write(rec('E', ""))
	msg, err = ParsePostfixQueueFile(bytes.NewReader(f.Bytes()), "ABC123", Maildrop, mod, 777)
	if err != nil {
		t.Fatal(err)
	}
	if msg.Sender != "" || msg.Size != 777 || !msg.Arrival.Equal(mod) || len(msg.Recipients) != 1 {
		t.Errorf("maildrop message = %+v", msg)
	}
}

// TestParsePostfixQueueFilePointers: recipients a milter or a later
// cleanup pass appended behind a pointer record are found, a zero
// pointer is a placeholder, and a pointer loop ends in an error.
func TestParsePostfixQueueFilePointers(t *testing.T) {
	var f bytes.Buffer
	f.Write(rec('S', "a@b.test"))
	f.Write(rec('R', "first@x.test"))
	ptrAt := f.Len()
	f.Write(rec('p', fmt.Sprintf("%15d", 0))) // placeholder, patched below
	f.Write(rec('p', "0"))
	f.Write(rec('M', ""))
	f.Write(rec('X', ""))
	f.Write(rec('E', ""))
	appended := f.Len()
	f.Write(rec('R', "appended@x.test"))
	f.Write(rec('p', fmt.Sprintf("%d", ptrAt+len(rec('p', fmt.Sprintf("%15d", 0))))))
	data := f.Bytes()
	patched := append([]byte{}, data[:ptrAt]...)
	patched = append(patched, rec('p', fmt.Sprintf("%15d", appended))...)
	patched = append(patched, data[ptrAt+len(rec('p', fmt.Sprintf("%15d", 0))):]...)
	msg, err := ParsePostfixQueueFile(bytes.NewReader(patched), "ID1", Active, time.Unix(1, 0), 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(addrs(msg), " "); got != "first@x.test appended@x.test" {
		t.Errorf("recipients %q", got)
	}

	var loop bytes.Buffer
	loop.Write(rec('S', "a@b.test"))
	loop.Write(rec('p', "0"))
	start := loop.Len()
	loop.Write(rec('p', fmt.Sprint(start)))
	if _, err := ParsePostfixQueueFile(bytes.NewReader(loop.Bytes()), "ID2", Active, time.Unix(1, 0), 0); err == nil ||
		!strings.Contains(err.Error(), "backward pointer") {
		t.Errorf("a pointer loop: err = %v", err)
	}
}

func TestParsePostfixQueueFileMalformed(t *testing.T) {
	ok := queueFile("a@b.test", []string{"c@d.test"}, nil, "x")
	for name, c := range map[string]struct {
		data []byte
		want string
	}{
		"truncated":         {ok[:len(ok)-2], "ends before the end record"},
		"no sender":         {append(rec('R', "c@d.test"), rec('E', "")...), "recipient before the sender"},
		"two senders":       {append(append(rec('S', "a@b"), rec('S', "c@d")...), rec('E', "")...), "second sender"},
		"bad size":          {append(rec('C', "12x"), rec('E', "")...), "malformed size record"},
		"bad pointer":       {append(rec('S', "a@b"), rec('p', "-5")...), "malformed pointer"},
		"length overflow":   {[]byte{'S', 0xff, 0xff, 0xff, 0xff, 0x7f}, "too many length bytes"},
		"huge envelope rec": {[]byte{'S', 0x80, 0x80, 0x80, 0x01}, "at most"},
		"end, no sender":    {rec('E', ""), "no sender"},
	} {
		_, err := ParsePostfixQueueFile(bytes.NewReader(c.data), "ID", Deferred, time.Unix(1, 0), 0)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want one containing %q", name, err, c.want)
		}
	}
}

// TestPostfixListFiles: with a readable queue directory, List reads the
// files of every queue and needs no postqueue at all; an incomplete
// file (still being written) is left out, as showq does.
func TestPostfixListFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(q, sub, id string, data []byte) {
		d := filepath.Join(dir, q, sub)
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, id), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(Deferred, "4", "4F9D21C2A3B", queueFile("a@spam.example", []string{"x@gmail.test"}, []string{"sasl_username=web1"}, "x"))
	write(Deferred, "5", "51A0B1C2D3E", queueFile("a@spam.example", []string{"y@gmail.test"}, nil, "y"))
	write(Hold, "", "7A1B2C3D4E5", queueFile("bob@school.example", []string{"p@d.test"}, nil, "z"))
	incomplete := queueFile("c@x.test", []string{"q@d.test"}, nil, "w")
	write(Incoming, "", "8B2C3D4E5F6", incomplete[:len(incomplete)-3])
	write(Active, "", "not-an-id.tmp", []byte("junk"))

	p := &Postfix{Postqueue: "/bin/false", Postsuper: "/bin/false", QueueDir: dir}
	var got []string
	err := p.List(t.Context(), func(m Message) error {
		got = append(got, m.Queue+":"+m.ID+":"+m.AuthUser)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	stop := errors.New("enough")
	calls := 0
	if err := p.List(t.Context(), func(Message) error { calls++; return stop }); !errors.Is(err, stop) || calls != 1 {
		t.Errorf("a callback error: List returned %v after %d calls, want it after 1", err, calls)
	}
	slices.Sort(got) // read several at once: in no set order
	if strings.Join(got, " ") != "deferred:4F9D21C2A3B:web1 deferred:51A0B1C2D3E: hold:7A1B2C3D4E5:" {
		t.Errorf("listed %q", got)
	}
}

// FuzzParsePostfixQueueFile: no input crashes or hangs the parser.
func FuzzParsePostfixQueueFile(f *testing.F) {
	f.Add(queueFile("a@b.test", []string{"c@d.test"}, []string{"sasl_username=u"}, "body"))
	f.Add(append(rec('S', ""), rec('E', "")...))
	f.Add(append(append(rec('S', "a"), rec('p', "2")...), rec('E', "")...))
	f.Fuzz(func(t *testing.T, data []byte) {
		msg, err := ParsePostfixQueueFile(bytes.NewReader(data), "ID", Deferred, time.Unix(1, 0), int64(len(data)))
		if err == nil && msg.Size < 0 {
			t.Errorf("negative size %d", msg.Size)
		}
	})
}

func addrs(m Message) []string {
	var out []string
	for _, r := range m.Recipients {
		out = append(out, r.Address)
	}
	return out
}
