package mtaqueue

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// The spool in testdata/exim was written by Debian's Exim 4.96: a local
// message deferred once (no -deliver_firsttime), one with an
// authenticated user set by -oMai (a tainted "--auth_id"), a bounce, one
// frozen with -Mf, one partly delivered and frozen (a non-recipients
// tree), and one received over SMTP with an ACL variable holding a
// newline and DSN fields on a recipient line. testdata/exim/bp.txt is
// what exim -bp printed for it.
const eximSpool = "testdata/exim"

// fakeEximBinary returns an executable that stands for exim: it appends
// its arguments to a log, one run per line, and prints what real Exim
// prints for each ID (queue.c, queue_action): IDs starting with "1" are
// in the queue, "2" already frozen or thawed, "3" locked; the rest are
// gone.
func fakeEximBinary(t *testing.T) (string, string) {
	t.Helper()
	dir := t.TempDir()
	log := filepath.Join(dir, "runs")
	bin := filepath.Join(dir, "exim4")
	script := `#!/bin/sh
echo "$*" >> ` + log + `
[ "$1" = -C ] && shift 2
op=$1; shift
for id; do
	case $op/$id in
	-Mrm/1*) echo "Message $id has been removed";;
	-Mf/1*) echo "Message $id is now frozen";;
	-Mt/1*) echo "Message $id is no longer frozen";;
	-Mf/2*) echo "Message $id is already frozen";;
	-Mt/2*) echo "Message $id is not frozen";;
	*/3*) echo "Message $id is locked";;
	-Mrm/*) echo "Spool data file for $id does not exist"
		echo "Continuing, to ensure all files removed"
		echo "Spool read error for $id-H: No such file or directory"
		echo "Continuing to ensure all files removed"
		echo "Message $id has been removed or did not exist";;
	*) echo "Spool data file for $id does not exist";;
	esac
done
exit 1
`
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin, log
}

func listAll(t *testing.T, e *Exim) ([]Message, error) {
	t.Helper()
	var msgs []Message
	err := e.List(context.Background(), func(m Message) error {
		msgs = append(msgs, m)
		return nil
	})
	sort.Slice(msgs, func(i, j int) bool { return msgs[i].ID < msgs[j].ID })
	return msgs, err
}

// TestEximListGolden lists the real spool and compares the messages with
// the golden file, and their sizes with what exim -bp printed.
func TestEximListGolden(t *testing.T) {
	bin, _ := fakeEximBinary(t)
	msgs, err := listAll(t, &Exim{Binary: bin, SpoolDir: eximSpool})
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, msgs, "testdata/exim/list.golden")

	// " 0m   264 1xaM89-0003mq-29 <alice@school.example>"
	bp, err := os.ReadFile("testdata/exim/bp.txt")
	if err != nil {
		t.Fatal(err)
	}
	sizes := map[string]int64{}
	for _, l := range strings.Split(string(bp), "\n") {
		if f := strings.Fields(l); len(f) >= 4 && ValidEximID(f[2]) {
			sizes[f[2]], _ = strconv.ParseInt(f[1], 10, 64)
		}
	}
	if len(sizes) != len(msgs) {
		t.Fatalf("exim -bp listed %d messages, List %d", len(sizes), len(msgs))
	}
	for _, m := range msgs {
		if m.Size != sizes[m.ID] {
			t.Errorf("%s: size %d, exim -bp says %d", m.ID, m.Size, sizes[m.ID])
		}
	}
}

// copySpool copies the test spool's input directory into a new spool,
// into the split subdirectory named by each ID's sixth character when
// split is set, as split_spool_directory does.
func copySpool(t *testing.T, split bool) string {
	t.Helper()
	spool := t.TempDir()
	src := filepath.Join(eximSpool, "input")
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, ent := range ents {
		dir := filepath.Join(spool, "input")
		if split {
			dir = filepath.Join(dir, ent.Name()[5:6])
		}
		os.MkdirAll(dir, 0o755)
		b, _ := os.ReadFile(filepath.Join(src, ent.Name()))
		if err := os.WriteFile(filepath.Join(dir, ent.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return spool
}

func TestEximListSplitSpool(t *testing.T) {
	bin, _ := fakeEximBinary(t)
	msgs, err := listAll(t, &Exim{Binary: bin, SpoolDir: copySpool(t, true)})
	if err != nil || len(msgs) != 6 {
		t.Fatalf("split spool: %d messages, %v; want 6", len(msgs), err)
	}
}

// TestEximListSkips: a message whose -D file has gone was delivered
// meanwhile and is skipped silently; a malformed -H file is reported by
// name and skipped; when no file can be read, List fails.
func TestEximListSkips(t *testing.T) {
	bin, _ := fakeEximBinary(t)
	spool := copySpool(t, false)
	input := filepath.Join(spool, "input")
	os.Remove(filepath.Join(input, "1xaM89-0003mq-29-D"))
	bad := filepath.Join(input, "1xaM89-0003n1-3B-H")
	os.WriteFile(bad, []byte("1xaM89-0003n1-3B-H\nroot 0 0\nno angle brackets\n"), 0o644)
	var warnings []error
	e := &Exim{Binary: bin, SpoolDir: spool, Warn: func(err error) { warnings = append(warnings, err) }}
	msgs, err := listAll(t, e)
	if err != nil || len(msgs) != 4 {
		t.Fatalf("%d messages, %v; want 4 and no error", len(msgs), err)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0].Error(), bad) || !errors.Is(warnings[0], ErrEximFormat) {
		t.Errorf("warnings %v, want one naming %s", warnings, bad)
	}

	only := t.TempDir()
	os.MkdirAll(filepath.Join(only, "input"), 0o755)
	os.WriteFile(filepath.Join(only, "input", "1xaM89-0003n1-3B-H"), []byte("garbage\n"), 0o644)
	os.WriteFile(filepath.Join(only, "input", "1xaM89-0003n1-3B-D"), []byte("1xaM89-0003n1-3B-D\n"), 0o644)
	_, err = listAll(t, &Exim{Binary: bin, SpoolDir: only, Warn: func(error) {}})
	if err == nil || !strings.Contains(err.Error(), "no Exim spool file could be read") {
		t.Errorf("only a malformed file: %v", err)
	}

	_, err = listAll(t, &Exim{Binary: bin, SpoolDir: filepath.Join(only, "nonexistent")})
	if err == nil || !strings.Contains(err.Error(), "reading Exim's spool") {
		t.Errorf("missing spool directory: %v", err)
	}
}

func TestEximListUnreadable(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads any directory; test/integration/exim_queue_test.go runs this as another user")
	}
	bin, _ := fakeEximBinary(t)
	spool := copySpool(t, false)
	os.Chmod(filepath.Join(spool, "input"), 0o000)
	defer os.Chmod(filepath.Join(spool, "input"), 0o755)
	_, err := listAll(t, &Exim{Binary: bin, SpoolDir: spool})
	if err == nil || !strings.Contains(err.Error(), "permission denied") || !strings.Contains(err.Error(), "Debian-exim") {
		t.Errorf("unreadable spool: %v", err)
	}
}

// TestEximActs: IDs go to exim in batches, after -C; Exim's report
// splits them into Done and Gone; a locked message is an error quoting
// Exim; an invalid ID stops everything before exim runs.
func TestEximActs(t *testing.T) {
	bin, log := fakeEximBinary(t)
	cfg := filepath.Join(t.TempDir(), "exim4.conf")
	os.WriteFile(cfg, nil, 0o644)
	e := &Exim{Binary: bin, Config: cfg, SpoolDir: eximSpool, Batch: 2}
	ctx := context.Background()

	ids := []string{"1aaaaa-aaaaaa-aa", "9bbbbb-bbbbbb-bb", "1ccccc-ccccccccccc-cccc", "1aaaaa-aaaaaa-aa"}
	res, err := e.Delete(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(res.Done, " ") != "1aaaaa-aaaaaa-aa 1ccccc-ccccccccccc-cccc" || strings.Join(res.Gone, " ") != "9bbbbb-bbbbbb-bb" {
		t.Errorf("delete: %+v", res)
	}
	runs, _ := os.ReadFile(log)
	if want := "-C " + cfg + " -Mrm 1aaaaa-aaaaaa-aa 9bbbbb-bbbbbb-bb\n-C " + cfg + " -Mrm 1ccccc-ccccccccccc-cccc\n"; string(runs) != want {
		t.Errorf("exim runs:\n%swant:\n%s", runs, want)
	}

	res, err = e.Hold(ctx, []string{"1aaaaa-aaaaaa-aa", "2bbbbb-bbbbbb-bb", "9ccccc-cccccc-cc"})
	if err != nil || len(res.Done) != 1 || len(res.Gone) != 2 {
		t.Errorf("hold: %+v, %v", res, err)
	}
	res, err = e.Release(ctx, []string{"1aaaaa-aaaaaa-aa", "2bbbbb-bbbbbb-bb"})
	if err != nil || len(res.Done) != 1 || len(res.Gone) != 1 {
		t.Errorf("release: %+v, %v", res, err)
	}

	res, err = e.Delete(ctx, []string{"1aaaaa-aaaaaa-aa", "3bbbbb-bbbbbb-bb"})
	if err == nil || !strings.Contains(err.Error(), "Message 3bbbbb-bbbbbb-bb is locked") || len(res.Done) != 1 {
		t.Errorf("locked message: %+v, %v", res, err)
	}

	os.Remove(log)
	for _, bad := range []string{"-bd", "1aaaaa-aaaaaa-a", "1aaaaa-aaaaaa-a!", "1aaaaa_aaaaaa-aa", "", "1aaaaa-aaaaaaaaaaa-aaaa-"} {
		if _, err := e.Delete(ctx, []string{"1aaaaa-aaaaaa-aa", bad}); err == nil {
			t.Errorf("ID %q was accepted", bad)
		}
	}
	if _, err := os.Stat(log); err == nil {
		t.Error("exim ran with an invalid ID")
	}
}

func TestEximCheck(t *testing.T) {
	bin, _ := fakeEximBinary(t)
	dir := t.TempDir()
	for _, c := range []struct {
		e    Exim
		want string
	}{
		{Exim{Binary: filepath.Join(dir, "exim4")}, "exim not found at"},
		{Exim{Binary: dir}, "is not an executable program"},
		{Exim{Binary: bin, Config: filepath.Join(dir, "none.conf")}, "Exim config file"},
	} {
		if err := c.e.Check(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.e, err, c.want)
		}
		if _, err := c.e.Delete(context.Background(), []string{"1aaaaa-aaaaaa-aa"}); err == nil {
			t.Errorf("%+v: Delete ran", c.e)
		}
	}
}

func TestValidEximID(t *testing.T) {
	for id, want := range map[string]bool{
		"1xaM89-0003mq-29":        true,
		"1rLZ2g-00000000Q2x-0Yq1": true,
		"1xaM89-0003mq-2":         false,
		"1xaM89-0003mq-29-H":      false,
		"1xaM89+0003mq-29":        false,
		"1rLZ2g-00000000Q2x-0Yq":  false,
		"ALL":                     false,
	} {
		if ValidEximID(id) != want {
			t.Errorf("ValidEximID(%q) = %v", id, !want)
		}
	}
}

func TestEximRecipient(t *testing.T) {
	for line, want := range map[string]string{
		"r1@dest.test": "r1@dest.test",
		"r5@dest.test rfc822;orig@dest.test 21,12  0,-1#3": "r5@dest.test",
		"a@x.test b@errors.test 13,0#1":                    "a@x.test",
		"a@x.test  0,-1#1":                                 "a@x.test",
		"a@x.test 3":                                       "a@x.test",
		"a@x.test 0,3,0":                                   "a@x.test",
		"a@[127.0.0.1]":                                    "a@[127.0.0.1]",
		"a@x.test 99,0#1":                                  "",
	} {
		if got := eximRecipient(line); got != want {
			t.Errorf("eximRecipient(%q) = %q, want %q", line, got, want)
		}
	}
}

func FuzzParseEximHeader(f *testing.F) {
	names, _ := filepath.Glob(filepath.Join(eximSpool, "input", "*-H"))
	for _, n := range names {
		b, _ := os.ReadFile(n)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseEximHeader(bytes.NewReader(b))
		if err != nil {
			return
		}
		m := h.Message
		if !ValidEximID(m.ID) || m.Size < 0 || h.HeaderBytes > int64(len(b)) || len(m.Recipients) > eximMaxRecipients {
			t.Fatalf("accepted %+v from %q", h, b)
		}
		for _, r := range m.Recipients {
			if r.Address == "" {
				t.Fatalf("empty recipient from %q", b)
			}
		}
	})
}

// TestParseEximHeaderForms: a 4.97 message ID, a quoted tainted option,
// a three-node non-recipients tree and a one_time recipient line.
func TestParseEximHeaderForms(t *testing.T) {
	in := "1rLZ2g-00000000Q2x-0Yq1-H\nDebian-exim 101 104\n<a@b.test>\n1700000000 1\n--(pgsql)auth_id bob\n-frozen 1700000100\n" +
		"YY m@x.test\nNN l@x.test\nNN r@x.test\n4\nl@x.test\nm@x.test\nq@x.test b@err.test 10,0#1\nr@x.test\n\n012  Subject: x\n005* X: y\n"
	h, err := ParseEximHeader(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	m := h.Message
	if m.ID != "1rLZ2g-00000000Q2x-0Yq1" || m.AuthUser != "bob" || m.Queue != Frozen || m.Size != 12 ||
		len(m.Recipients) != 1 || m.Recipients[0].Address != "q@x.test" {
		t.Errorf("parsed %+v", h)
	}
	for _, cut := range []int{10, 30, 60, 120, len(in) - 3} {
		if _, err := ParseEximHeader(strings.NewReader(in[:cut])); !errors.Is(err, ErrEximFormat) {
			t.Errorf("cut at %d: %v, want a format error", cut, err)
		}
	}
}
