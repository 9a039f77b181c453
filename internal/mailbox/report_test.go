package mailbox

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestSnapshotRoundTrip(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s1 := NewSnapshot(boxes("a@X.example", "b@x.example", "bare"), nil, t0)
	path := filepath.Join(t.TempDir(), "snap")
	if err := WriteSnapshot(path, s1); err != nil {
		t.Fatal(err)
	}
	got, err := ReadSnapshot(path)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Taken.Equal(t0) || len(got.FirstSeen) != 3 || !got.Has(Mailbox{Local: "a", Domain: "x.EXAMPLE"}) || !got.Has(Mailbox{Local: "bare"}) {
		t.Errorf("read back %+v", got)
	}
	// A later snapshot keeps first-seen times and counts new boxes.
	s2 := NewSnapshot(boxes("a@x.example", "c@x.example"), got, t0.Add(24*time.Hour))
	if !s2.FirstSeen["a@x.example"].Equal(t0) || !s2.FirstSeen["c@x.example"].Equal(t0.Add(24*time.Hour)) || s2.New(got) != 1 {
		t.Errorf("second snapshot %+v", s2.FirstSeen)
	}
	for name, in := range map[string]string{
		"no header": "a@x\t2026-01-01T00:00:00Z\n",
		"bad time":  snapshotHeader + "\na@x\tyesterday\n",
		"no tab":    snapshotHeader + "\na@x 2026-01-01T00:00:00Z\n",
		"empty":     "",
	} {
		if _, err := ParseSnapshot("s", []byte(in)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := ReadSnapshot(filepath.Join(t.TempDir(), "none")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing snapshot: %v", err)
	}
}

func TestAuditJSONFeedsRemove(t *testing.T) {
	inv := boxes("ofice@a.example", "anna@a.example", "=cmd|calc@b.example")
	inv.Source.Root = "/etc/virtual"
	inv.Mailboxes[0].Created = time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC)
	r := Audit(inv, AuditOptions{RoleNames: []string{"office"}, MaxDistance: 2, ManyDomains: 10, BurstCount: 20, BurstWindow: time.Hour})
	var buf bytes.Buffer
	if err := WriteJSON(&buf, r, "", time.Now()); err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, buf.String())
	}
	if doc["summary"].(map[string]any)["suspect"].(float64) != 1 || len(doc["mailboxes"].([]any)) != 3 {
		t.Errorf("summary %v", doc["summary"])
	}
	path := filepath.Join(t.TempDir(), "audit.json")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	af, err := ReadAudit(path)
	if err != nil {
		t.Fatal(err)
	}
	if af.Root != "/etc/virtual" || len(af.Suspect) != 1 || af.Suspect[0].String() != "ofice@a.example" {
		t.Errorf("ReadAudit: %+v", af)
	}
	// A reviewer sets suspect to false to keep a box.
	edited := strings.Replace(buf.String(), `"suspect":true`, `"suspect":false`, 1)
	os.WriteFile(path, []byte(edited), 0o600)
	if af, err := ReadAudit(path); err != nil || len(af.Suspect) != 0 {
		t.Errorf("after review: %+v, %v", af, err)
	}
	// An entry whose address says something else than its fields is refused.
	forged := strings.Replace(buf.String(), `"address":"ofice@a.example"`, `"address":"ceo@a.example"`, 1)
	os.WriteFile(path, []byte(forged), 0o600)
	if _, err := ReadAudit(path); !errors.Is(err, ErrMalformed) {
		t.Errorf("forged entry: %v", err)
	}
	os.WriteFile(path, []byte(`{"mailboxes": []}`), 0o600)
	if _, err := ReadAudit(path); err == nil || !strings.Contains(err.Error(), "not a mailwarden mailbox audit") {
		t.Errorf("not an audit: %v", err)
	}

	buf.Reset()
	if err := WriteCSV(&buf, r); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&buf).ReadAll()
	if err != nil || len(rows) != 4 {
		t.Fatalf("CSV: %d rows, %v", len(rows), err)
	}
	if rows[1][0] != "ofice@a.example" || rows[1][6] != "2026-02-03T04:05:06Z" || rows[1][8] != "near_role" || rows[1][11] != "true" {
		t.Errorf("CSV row %q", rows[1])
	}
	if !slices.ContainsFunc(rows, func(r []string) bool { return r[0] == "'=cmd|calc@b.example" }) {
		t.Errorf("a formula-looking address was not neutralised: %q", rows)
	}
}

func TestParseTargetList(t *testing.T) {
	ts, err := ParseTargetList("l", []byte("# planted\nofice@a.example\n\n  servises@B.example  \nbare\nofice@a.example\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := dedupe(ts); len(got) != 3 || got[1].String() != "servises@b.example" || got[2].String() != "bare" {
		t.Errorf("targets %v", got)
	}
	_, err = ParseTargetList("l", []byte("ok@a.example\noff*@a.example\na b\n"))
	if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "l:2:") || !strings.Contains(err.Error(), "l:3:") {
		t.Errorf("bad list: %v", err)
	}
}

func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{"plain", `q"uo\te`, "tab\there", "nul\x00esc\x1b", "ümlaut ✓", "bad\xffutf8", ""} {
		got := appendJSONString(nil, s)
		var back string
		if err := json.Unmarshal(got, &back); err != nil {
			t.Errorf("%q encodes as %s, not JSON: %v", s, got, err)
			continue
		}
		want, _ := json.Marshal(s)
		var wantBack string
		json.Unmarshal(want, &wantBack)
		if back != wantBack {
			t.Errorf("%q round-trips as %q, want %q", s, back, wantBack)
		}
	}
}
