package mtaqueue

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func parseAll(t *testing.T, in string) ([]Message, error) {
	t.Helper()
	var got []Message
	err := ParsePostqueue(strings.NewReader(in), func(m Message) error {
		got = append(got, m)
		return nil
	})
	return got, err
}

// TestParseGolden parses a postqueue -j sample (Postfix 3.7 members, a
// blank line, an unknown member, the null sender, a long queue ID) and
// compares the messages with the golden file.
func TestParseGolden(t *testing.T) {
	in, err := os.ReadFile("testdata/postqueue.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := parseAll(t, string(in))
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, msgs, "testdata/postqueue.golden")
}

// checkGolden compares msgs, as JSON with arrival times in UTC, with
// the golden file; go test -update rewrites it.
func checkGolden(t *testing.T, msgs []Message, golden string) {
	t.Helper()
	for i := range msgs {
		msgs[i].Arrival = msgs[i].Arrival.UTC()
	}
	got, _ := json.MarshalIndent(msgs, "", "  ")
	got = append(got, '\n')
	if *update {
		os.WriteFile(golden, got, 0o644)
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("got:\n%s\nwant (%s; go test -update to rewrite):\n%s", got, golden, want)
	}
}

// TestParseMalformed: every bad line is an error that names its line.
func TestParseMalformed(t *testing.T) {
	data, err := os.ReadFile("testdata/malformed.txt")
	if err != nil {
		t.Fatal(err)
	}
	cases := strings.Split(string(data), "==\n")
	cases[0] = cases[0][strings.Index(cases[0], "\n")+1:] // the comment line
	n := 0
	for _, c := range cases {
		if strings.TrimSpace(c) == "" {
			continue
		}
		wantErr, input, ok := strings.Cut(c, "--\n")
		if !ok {
			t.Fatalf("case without --: %q", c)
		}
		n++
		wantErr = strings.TrimSpace(wantErr)
		msgs, err := parseAll(t, input)
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("input:\n%s\nerror %v, want one containing %q", input, err, wantErr)
		}
		if strings.HasPrefix(wantErr, "line 2") && len(msgs) != 1 {
			t.Errorf("input:\n%s\ngot %d messages before the error, want 1", input, len(msgs))
		}
	}
	if n < 8 {
		t.Errorf("only %d cases", n)
	}
}

// TestParseStopsAtCallbackError: fn's error ends the parse as is.
func TestParseStopsAtCallbackError(t *testing.T) {
	in, _ := os.ReadFile("testdata/postqueue.jsonl")
	stop := errTest("stop")
	calls := 0
	err := ParsePostqueue(bytes.NewReader(in), func(Message) error { calls++; return stop })
	if err != stop || calls != 1 {
		t.Errorf("err %v after %d calls; want %v after 1", err, calls, stop)
	}
}

type errTest string

func (e errTest) Error() string { return string(e) }

func FuzzParsePostqueue(f *testing.F) {
	in, _ := os.ReadFile("testdata/postqueue.jsonl")
	f.Add(string(in))
	data, _ := os.ReadFile("testdata/malformed.txt")
	for _, c := range strings.Split(string(data), "==\n") {
		if _, input, ok := strings.Cut(c, "--\n"); ok {
			f.Add(input)
		}
	}
	f.Fuzz(func(t *testing.T, s string) {
		ParsePostqueue(strings.NewReader(s), func(m Message) error {
			if !ValidID(m.ID) || m.Size < 0 {
				t.Fatalf("accepted message %+v", m)
			}
			return nil
		})
	})
}
