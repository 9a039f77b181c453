package mimepart

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"io"
	"strings"
	"testing"
)

// lines joins lines with CRLF, as the milter spools a message.
func lines(ls ...string) string { return strings.Join(ls, "\r\n") }

type got struct {
	typ  string
	body string
}

func walkAll(t *testing.T, msg string) ([]got, error) {
	t.Helper()
	var out []got
	err := Walk(strings.NewReader(msg), Limits{}, func(p Part, body io.Reader) error {
		b, err := io.ReadAll(body)
		if err != nil {
			return err
		}
		if p.Index != len(out) {
			t.Errorf("part %d has index %d", len(out), p.Index)
		}
		out = append(out, got{p.Type, string(b)})
		return nil
	})
	return out, err
}

const eicarFile = `X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`

func b64(s string) string {
	enc := base64.StdEncoding.EncodeToString([]byte(s))
	var b strings.Builder
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	return b.String() + enc
}

func TestWalk(t *testing.T) {
	for _, tc := range []struct {
		name, msg string
		want      []got
	}{{
		name: "plain",
		msg:  lines("From: a@b", "Subject: hi", "", "hello", "world", ""),
		want: []got{{"text/plain", "hello\r\nworld\r\n"}},
	}, {
		name: "single part base64",
		msg:  lines("Content-Type: application/octet-stream", "Content-Transfer-Encoding: BASE64", "", b64(eicarFile), ""),
		want: []got{{"application/octet-stream", eicarFile}},
	}, {
		name: "multipart with preamble, base64 and quoted-printable",
		msg: lines("MIME-Version: 1.0", `Content-Type: multipart/mixed; boundary="b1"`, "",
			"This is a multi-part message in MIME format.",
			"--b1",
			"Content-Type: text/plain; charset=utf-8",
			"Content-Transfer-Encoding: quoted-printable",
			"",
			"caf=C3=A9 soft=",
			"break",
			"--b1",
			`Content-Type: application/zip; name="a.zip"`,
			"Content-Transfer-Encoding: base64",
			"",
			b64(eicarFile),
			"--b1--  ",
			""),
		want: []got{
			{"preamble", "This is a multi-part message in MIME format."},
			{"text/plain", "café softbreak"},
			{"application/zip", eicarFile},
		},
	}, {
		name: "nested multipart and message/rfc822, blank preamble, epilogue",
		msg: lines(`Content-Type: multipart/mixed; boundary=outer`, "",
			"--outer",
			`Content-Type: multipart/alternative; boundary="inner"`,
			"",
			"--inner",
			"",
			"plain text",
			"--inner",
			"Content-Type: text/html",
			"",
			"<p>html</p>",
			"--inner--",
			"--outer",
			"Content-Type: message/rfc822",
			"",
			"From: c@d",
			"Content-Type: application/octet-stream",
			"Content-Transfer-Encoding: base64",
			"",
			b64("attached"),
			"--outer--",
			"the end"),
		want: []got{
			{"text/plain", "plain text"},
			{"text/html", "<p>html</p>"},
			{"application/octet-stream", "attached"},
			{"epilogue", "the end"},
		},
	}, {
		name: "LF line endings",
		msg:  "Content-Type: multipart/mixed; boundary=x\n\n--x\n\none\n--x\n\ntwo\n--x--\n",
		want: []got{{"text/plain", "one"}, {"text/plain", "two"}},
	}, {
		name: "digest parts default to message/rfc822",
		msg:  lines("Content-Type: multipart/digest; boundary=d", "", "--d", "", "Subject: inner", "", "body", "--d--", ""),
		want: []got{{"text/plain", "body"}},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := walkAll(t, tc.msg)
			if err != nil {
				t.Fatal(err)
			}
			if len(out) != len(tc.want) {
				t.Fatalf("got %d parts %q, want %q", len(out), out, tc.want)
			}
			for i := range out {
				if out[i] != tc.want[i] {
					t.Errorf("part %d = %q, want %q", i, out[i], tc.want[i])
				}
			}
		})
	}
}

func TestWalkRefusesWhatItCannotReadWithCertainty(t *testing.T) {
	mp := func(body ...string) string {
		return lines(append([]string{"Content-Type: multipart/mixed; boundary=b", ""}, body...)...)
	}
	for _, tc := range []struct {
		name, msg string
		want      error
	}{
		{"no closing boundary", mp("--b", "", "text"), ErrMalformed},
		{"no boundary at all", mp("just text"), ErrMalformed},
		{"boundary missing", lines("Content-Type: multipart/mixed", "", "x"), ErrMalformed},
		{"line starting with the boundary", mp("--b", "", "x", "--bogus", "--b--"), ErrMalformed},
		{"two content types", lines("Content-Type: text/plain", "Content-Type: application/zip", "", "x"), ErrMalformed},
		{"two encodings", lines("Content-Transfer-Encoding: base64", "Content-Transfer-Encoding: 7bit", "", "eA=="), ErrMalformed},
		{"unknown encoding", lines("Content-Transfer-Encoding: x-uuencode", "", "x"), ErrMalformed},
		{"encoded multipart", lines("Content-Type: multipart/mixed; boundary=b", "Content-Transfer-Encoding: base64", "", "--b--"), ErrMalformed},
		{"bad content type", lines("Content-Type: ;;;", "", "x"), ErrMalformed},
		{"bad base64", lines("Content-Transfer-Encoding: base64", "", "not base64 at all!"), ErrMalformed},
		{"header line without colon", lines("this is not a header", "", "x"), ErrMalformed},
		{"header too large", lines("X-Big: "+strings.Repeat("a", DefaultMaxHeader), "", "x"), ErrTooComplex},
		{"preamble too large", mp(strings.Repeat("p", maxAside+1), "--b--"), ErrTooComplex},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Summarise(strings.NewReader(tc.msg), Limits{})
			if !errors.Is(err, tc.want) {
				t.Errorf("Summarise: %v, want %v", err, tc.want)
			}
		})
	}
}

func TestWalkLimits(t *testing.T) {
	deep := lines("", "x")
	for i := range 12 {
		b := strings.Repeat("b", i+1)
		deep = lines("Content-Type: multipart/mixed; boundary="+b, "", "--"+b, deep, "--"+b+"--")
	}
	if _, err := Summarise(strings.NewReader(deep), Limits{}); !errors.Is(err, ErrTooComplex) {
		t.Errorf("12 levels: %v, want ErrTooComplex", err)
	}
	if _, err := Summarise(strings.NewReader(deep), Limits{MaxDepth: 20}); err != nil {
		t.Errorf("12 levels with MaxDepth 20: %v", err)
	}

	many := []string{"Content-Type: multipart/mixed; boundary=b", ""}
	for range 5 {
		many = append(many, "--b", "", "part")
	}
	many = append(many, "--b--")
	if _, err := Summarise(strings.NewReader(lines(many...)), Limits{MaxParts: 4}); !errors.Is(err, ErrTooComplex) {
		t.Errorf("5 parts with MaxParts 4: %v, want ErrTooComplex", err)
	}
	if ps, err := Summarise(strings.NewReader(lines(many...)), Limits{MaxParts: 5}); err != nil || len(ps) != 5 {
		t.Errorf("5 parts with MaxParts 5: %d parts, %v", len(ps), err)
	}
}

// A long line is read in pieces; a part larger than every buffer comes
// through whole.
func TestWalkLongLinesAndLargeParts(t *testing.T) {
	long := strings.Repeat("0123456789", 10_000) // one 100,000-byte line
	msg := lines("Content-Type: multipart/mixed; boundary=b", "", "--b", "", long, "--b", "Content-Transfer-Encoding: base64", "", b64(long), "--b--")
	ps, err := Summarise(strings.NewReader(msg), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(long))
	if len(ps) != 2 || ps[0].Hash != sum || ps[1].Hash != sum || ps[0].Size != int64(len(long)) {
		t.Errorf("got %+v, want two parts of %d bytes with the same hash", ps, len(long))
	}
}

// The same attachment hashes the same in different messages, however it
// is encoded; that is what lets the cache know it again.
func TestSameAttachmentSameHash(t *testing.T) {
	a := lines("Content-Type: multipart/mixed; boundary=aaa", "Subject: one", "", "--aaa", "", "Hi Bob", "--aaa",
		"Content-Transfer-Encoding: base64", "", b64(eicarFile), "--aaa--", "")
	b := lines("Content-Type: multipart/mixed; boundary=zzz", "Subject: two", "", "--zzz", "",
		"Something else entirely", "--zzz", "Content-Transfer-Encoding: quoted-printable", "",
		strings.ReplaceAll(eicarFile, "=", "=3D"), "--zzz--", "")
	pa, err := Summarise(strings.NewReader(a), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	pb, err := Summarise(strings.NewReader(b), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if pa[1].Hash != pb[1].Hash || pa[1].Hash != sha256.Sum256([]byte(eicarFile)) {
		t.Errorf("attachment hashes differ: %x, %x", pa[1].Hash, pb[1].Hash)
	}
	if pa[0].Hash == pb[0].Hash {
		t.Error("different text parts hash the same")
	}
}

func TestOpen(t *testing.T) {
	msg := lines("Content-Type: multipart/mixed; boundary=b", "", "--b", "", "first", "--b",
		"Content-Transfer-Encoding: base64", "", b64(eicarFile), "--b--")
	open := func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(msg)), nil }
	for i, want := range []string{"first", eicarFile} {
		r, err := Open(open, i, Limits{})
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(r)
		r.Close()
		if err != nil || string(b) != want {
			t.Errorf("part %d: %q, %v; want %q", i, b, err, want)
		}
	}
	r, err := Open(open, 2, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(r); err == nil {
		t.Error("part 2 of 2: no error")
	}
	// Closing early ends the walk rather than leaving it blocked.
	r, _ = Open(func() (io.ReadCloser, error) {
		return io.NopCloser(strings.NewReader(lines("", strings.Repeat("x", 1<<20)))), nil
	}, 0, Limits{})
	buf := make([]byte, 10)
	if _, err := r.Read(buf); err != nil {
		t.Fatal(err)
	}
	r.Close()
}

func FuzzWalk(f *testing.F) {
	f.Add([]byte(lines("Content-Type: multipart/mixed; boundary=b", "", "pre", "--b", "Content-Transfer-Encoding: base64", "", "eA==", "--b--", "epi")))
	f.Add([]byte(lines("Content-Type: message/rfc822", "", "Content-Type: text/plain", "Content-Transfer-Encoding: quoted-printable", "", "a=3Db")))
	f.Fuzz(func(t *testing.T, msg []byte) {
		var total int64
		ps, err := Summarise(bytes.NewReader(msg), Limits{MaxDepth: 4, MaxParts: 20})
		if err != nil {
			return
		}
		for _, p := range ps {
			// Decoding never grows a part, so the parts together are
			// never larger than the message.
			total += p.Size
			if p.Depth > 5 {
				t.Fatalf("part at depth %d past the limit", p.Depth)
			}
		}
		if total > int64(len(msg)) {
			t.Fatalf("parts total %d bytes from a %d-byte message", total, len(msg))
		}
		if len(ps) > 20 {
			t.Fatalf("%d parts past the limit", len(ps))
		}
	})
}

// BenchmarkSummarise is the walk's cost on the benchmark's typical
// message: 2 KB, a text part and a small attachment.
func BenchmarkSummarise(b *testing.B) {
	msg := []byte(lines("From: a@b", `Content-Type: multipart/mixed; boundary="b"`, "", "--b", "", strings.Repeat("text ", 100),
		"--b", "Content-Transfer-Encoding: base64", "", b64(strings.Repeat("attachment ", 100)), "--b--", ""))
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Summarise(bytes.NewReader(msg), Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}
