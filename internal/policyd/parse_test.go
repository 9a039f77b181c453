package policyd

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"maps"
	"slices"
	"strings"
	"testing"

	"mailwarden/internal/policy"
	"mailwarden/internal/reply"
)

// postfixRequest is the full attribute list of SMTPD_POLICY_README
// ("Policy protocol description") as Postfix 3.8 and later send it.
const postfixRequest = `request=smtpd_access_policy
protocol_state=RCPT
protocol_name=SMTP
helo_name=some.domain.tld
queue_id=8045F2AB23
sender=foo@bar.tld
recipient=bar@foo.tld
recipient_count=0
client_address=1.2.3.4
client_name=another.domain.tld
reverse_client_name=another.domain.tld
instance=123.456.7
sasl_method=plain
sasl_username=you
sasl_sender=
size=12345
ccert_subject=solaris9.porcupine.org
ccert_issuer=Wietse+20Venema
ccert_fingerprint=C2:9D:F4:87:71:73:73:D9:18:E7:C2:F3:C1:DA:6E:04
encryption_protocol=TLSv1/SSLv3
encryption_cipher=DHE-RSA-AES256-SHA
encryption_keysize=256
etrn_domain=
stress=
ccert_pubkey_fingerprint=68:B3:29:DA:98:93:E3:40:99:C7:D8:AD:5C:B9:C9:40
client_port=1234
policy_context=submission
server_address=10.3.2.1
server_port=54321
compatibility_level=major.minor.patch
mail_version=3.8.0

`

func read(s string, maxBytes int) (Attrs, error) {
	return ReadRequest(bufio.NewReader(strings.NewReader(s)), maxBytes)
}

func TestReadRequestPostfix(t *testing.T) {
	a, err := read(postfixRequest, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != 31 {
		t.Errorf("got %d attributes, want 31", len(a))
	}
	for k, want := range map[string]string{
		"protocol_state": "RCPT", "client_address": "1.2.3.4", "sender": "foo@bar.tld",
		"recipient": "bar@foo.tld", "sasl_username": "you", "sasl_sender": "",
		"ccert_fingerprint": "C2:9D:F4:87:71:73:73:D9:18:E7:C2:F3:C1:DA:6E:04",
	} {
		if got, ok := a[k]; !ok || got != want {
			t.Errorf("%s = %q (present %v), want %q", k, got, ok, want)
		}
	}
}

func TestReadRequestSequence(t *testing.T) {
	// Two requests back to back, the second with CRLF line ends, then a
	// clean end of stream.
	r := bufio.NewReader(strings.NewReader(
		"request=smtpd_access_policy\nrecipient=a@x\n\n" +
			"request=smtpd_access_policy\r\nRecipient=b@x\r\nrecipient=c@x\r\nhelo_name=h=1\r\n\r\n"))
	a, err := ReadRequest(r, 0)
	if err != nil || a["recipient"] != "a@x" {
		t.Fatalf("first request: %v, %v", a, err)
	}
	a, err = ReadRequest(r, 0)
	if err != nil {
		t.Fatalf("second request: %v", err)
	}
	if a["recipient"] != "c@x" || a["helo_name"] != "h=1" {
		t.Errorf("second request: last duplicate and '=' in values: %v", a)
	}
	if _, err := ReadRequest(r, 0); err != io.EOF {
		t.Errorf("after the last request: %v, want io.EOF", err)
	}
}

// A connection reads every request into the same map: nothing of one
// request may show in the next, and values taken from the first stay
// as they were.
func TestReadRequestIntoReusedMap(t *testing.T) {
	r := bufio.NewReader(strings.NewReader(
		"request=smtpd_access_policy\nsasl_username=alice\nrecipient=a@x\n\n" +
			"request=smtpd_access_policy\nrecipient=b@x\n\n"))
	a := make(Attrs, requestAttrs)
	if err := readRequestInto(r, 0, a); err != nil {
		t.Fatal(err)
	}
	first := a["recipient"]
	if err := readRequestInto(r, 0, a); err != nil {
		t.Fatal(err)
	}
	if v, ok := a["sasl_username"]; ok {
		t.Errorf("second request has the first one's sasl_username %q", v)
	}
	if a["recipient"] != "b@x" || first != "a@x" {
		t.Errorf("recipients %q then %q, want a@x then b@x", first, a["recipient"])
	}
}

func TestReadRequestErrors(t *testing.T) {
	const head = "request=smtpd_access_policy\n"
	tests := []struct {
		name    string
		in      string
		max     int
		want    error
		wantMsg string
	}{
		{"empty stream", "", 0, io.EOF, ""},
		{"EOF before the blank line", head + "sender=a@b\n", 0, io.ErrUnexpectedEOF, ""},
		{"EOF inside a line", head + "sender=a@", 0, io.ErrUnexpectedEOF, ""},
		{"line longer than the buffer", head + "sender=" + strings.Repeat("a", 5000) + "\n\n", 0, ErrLineTooLong, "line 2"},
		{"line longer than the limit", head + "sender=" + strings.Repeat("a", 200) + "\n\n", 100, ErrLineTooLong, ""},
		{"request larger than the limit", head + strings.Repeat("x=1234567\n", 20) + "\n", 100, ErrRequestTooLarge, ""},
		{"no '='", head + "hello\n\n", 0, ErrMalformed, "no '='"},
		{"empty name", head + "=value\n\n", 0, ErrMalformed, "empty attribute name"},
		{"space in name", head + "my name=value\n\n", 0, ErrMalformed, "0x20"},
		{"NUL in value", head + "sender=a\x00b\n\n", 0, ErrMalformed, "NUL"},
		{"stray CR", head + "sender=a\rb\n\n", 0, ErrMalformed, "CR"},
		{"no request attribute", "sender=a@b\n\n", 0, ErrMalformed, "request=smtpd_access_policy"},
		{"wrong request type", "request=junk\n\n", 0, ErrMalformed, "request=smtpd_access_policy"},
		{"blank line alone", "\n", 0, ErrMalformed, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := read(tt.in, tt.max)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, %v; want error %v", a, err, tt.want)
			}
			if a != nil {
				t.Errorf("attributes %v returned with an error", a)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q does not say %q", err, tt.wantMsg)
			}
		})
	}
}

// TestReadRequestBoundedRead checks that a huge line is refused without
// reading it all.
func TestReadRequestBoundedRead(t *testing.T) {
	in := strings.NewReader("request=smtpd_access_policy\nsender=" + strings.Repeat("a", 1<<20))
	_, err := ReadRequest(bufio.NewReaderSize(in, 4096), 64<<10)
	if !errors.Is(err, ErrLineTooLong) {
		t.Fatalf("got %v, want ErrLineTooLong", err)
	}
	if consumed := in.Size() - int64(in.Len()); consumed > 64<<10 {
		t.Errorf("read %d bytes of a 1 MB line", consumed)
	}
}

const fuzzMaxBytes = 2048

// FuzzReadRequest reads from a small buffer so that every limit is within
// the fuzzer's reach.
func FuzzReadRequest(f *testing.F) {
	f.Add([]byte(postfixRequest))
	f.Add([]byte("request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.7\nsender=<a@b>\nrecipient=<c@d>\n\n"))
	f.Add([]byte(""))
	f.Add([]byte("\x00"))
	// docs/exim.md's data ACL reporting a virus Exim's malware condition
	// found, and a Postfix end-of-data request without one.
	f.Add([]byte("request=smtpd_access_policy\nprotocol_state=END-OF-MESSAGE\ninstance=mx.test.4711.1733529600123\nclient_address=10.1.2.3\nclient_name=unknown\nhelo_name=pc17\nsender=pupil@district.example\nrecipient=\nrecipient_count=1\nsasl_username=\nqueue_id=1tJqkL-000123-AB\nvirus=Eicar-Test-Signature\n\n"))
	f.Add([]byte("request=smtpd_access_policy\nprotocol_state=END-OF-MESSAGE\nclient_address=10.1.2.3\nsender=a@b\nrecipient=\nrecipient_count=2\nqueue_id=8045F2AB23\nsize=12345\n\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, size := range []int{16, 256, 4096} {
			in := bytes.NewReader(data)
			br := bufio.NewReaderSize(in, size)
			a, err := ReadRequest(br, fuzzMaxBytes)
			consumed := len(data) - in.Len() - br.Buffered()
			if consumed > fuzzMaxBytes+br.Size() {
				t.Fatalf("buffer %d: consumed %d bytes, limit %d", size, consumed, fuzzMaxBytes+br.Size())
			}
			if err != nil {
				if a != nil {
					t.Fatalf("attributes returned with error %v", err)
				}
				switch {
				case err == io.EOF:
					if len(data) != 0 {
						t.Fatalf("io.EOF on %d bytes of input", len(data))
					}
				case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, ErrLineTooLong),
					errors.Is(err, ErrRequestTooLarge), errors.Is(err, ErrMalformed):
				default:
					t.Fatalf("unexpected error %v", err)
				}
				continue
			}
			checkAttrs(t, a)
			// A connection reads every request into one map: what an
			// earlier request left in it must not show through.
			reused := Attrs{"request": "smtpd_access_policy", "sender": "left@over", "zz": "stale"}
			if err := readRequestInto(bufio.NewReaderSize(bytes.NewReader(data), size), fuzzMaxBytes, reused); err != nil || !maps.Equal(a, reused) {
				t.Fatalf("buffer %d: into a used map: %v, %v != %v", size, err, reused, a)
			}
			// A virus report that is taken is fit for a reply.
			if v, err := ReportedVirus(a, policy.StageEOM); err == nil && v != "" {
				if len(v) > policy.MaxVirusName || reply.Safe(v) != v || strings.TrimSpace(v) != v {
					t.Fatalf("virus report %q taken", v)
				}
			}
			// Writing the attributes back gives the same request.
			again, err := read(encode(a), 0)
			if err != nil || !maps.Equal(a, again) {
				t.Fatalf("round trip: %v, %v != %v", err, again, a)
			}
		}
	})
}

func checkAttrs(t *testing.T, a Attrs) {
	t.Helper()
	if a["request"] != "smtpd_access_policy" {
		t.Fatalf("accepted without request=smtpd_access_policy: %v", a)
	}
	for k, v := range a {
		if k == "" || strings.ContainsAny(k, "\n\r\x00= ") || strings.ToLower(k) != k {
			t.Fatalf("bad attribute name %q", k)
		}
		if strings.ContainsAny(v, "\n\r\x00") {
			t.Fatalf("bad value %q for %q", v, k)
		}
	}
}

func encode(a Attrs) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(a)) {
		b.WriteString(k + "=" + a[k] + "\n")
	}
	b.WriteString("\n")
	return b.String()
}
