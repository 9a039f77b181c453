package mailbox

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestDovecotLayout(t *testing.T) {
	dir := t.TempDir()
	vmail := filepath.Join(dir, "vmail")
	users := filepath.Join(dir, "etc", "dovecot", "users")
	other := filepath.Join(dir, "etc", "dovecot", "users2")
	home := func(u string) string { return filepath.Join(vmail, u) }
	writeFile(t, users, strings.Join([]string{
		"# virtual users",
		"anna@a.example:{SHA512-CRYPT}$6$x$y:5000:5000::" + home("a.example/anna") + "::",
		"ofice@a.example:{PLAIN}p:5000:5000::" + home("a.example/ofice") + "::",
		"ofice@b.example:{PLAIN}p:5000:5000::" + home("shared") + "::",
		"bob@b.example:{PLAIN}p:5000:5000::" + home("shared") + "::",
		"servises@b.example:{PLAIN}p:5000:5000::/etc::",
		"carl@c.example:{PLAIN}p:5000:5000::" + home("c.example/carl") + "::",
		"dora@c.example:{PLAIN}p:5000:5000::" + home("c.example/dora") + "::",
		"",
	}, "\r\n"), 0o600)
	writeFile(t, other, "ofice@c.example:{PLAIN}p::::"+home("c.example")+"\nolaf@d.example:{PLAIN}p\n", 0o600)
	for _, u := range []string{"a.example/anna", "a.example/ofice", "shared", "c.example/carl", "c.example/dora"} {
		writeFile(t, filepath.Join(home(u), "Maildir", "cur", "m"), u, 0o600)
	}
	src := Source{Layout: LayoutDovecot, PasswdFiles: []string{users, other, users}, Home: vmail}
	inv := readTree(t, Source{Layout: LayoutDovecot, PasswdFiles: []string{users, other}, Home: vmail})
	if got := addresses(inv); len(got) != 9 || inv.Domains != 4 {
		t.Fatalf("read %q over %d domains", got, inv.Domains)
	}
	o := ApplyOptions{BackupDir: filepath.Join(dir, "backups"), QuarantineDir: filepath.Join(dir, "quarantine"), MaxShare: 1, Force: true}
	targets := targetsOf(t, []string{"ofice@a.example", "ofice@B.example", "servises@b.example", "ofice@c.example", "nobody@x.example"})
	p, res, err := Remove(src, targets, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.NotFound) != 1 || p.NotFound[0].String() != "nobody@x.example" {
		t.Errorf("not found %v", p.NotFound)
	}
	got, _ := os.ReadFile(users)
	want := strings.Join([]string{"# virtual users",
		"anna@a.example:{SHA512-CRYPT}$6$x$y:5000:5000::" + home("a.example/anna") + "::",
		"bob@b.example:{PLAIN}p:5000:5000::" + home("shared") + "::",
		"carl@c.example:{PLAIN}p:5000:5000::" + home("c.example/carl") + "::",
		"dora@c.example:{PLAIN}p:5000:5000::" + home("c.example/dora") + "::", ""}, "\r\n")
	if string(got) != want {
		t.Errorf("users now\n%q\nwant\n%q", got, want)
	}
	if got, _ := os.ReadFile(other); string(got) != "olaf@d.example:{PLAIN}p\n" {
		t.Errorf("users2 now %q", got)
	}
	// Only the home that is inside the mail root and nobody else's moves:
	// not /etc, not the shared one, not the one holding carl's and dora's.
	var moved []string
	for _, m := range res.Moved {
		moved = append(moved, m.From)
	}
	if !slices.Equal(moved, []string{home("a.example/ofice")}) {
		t.Errorf("moved %q", moved)
	}
	notes := strings.Join(p.Notes, "\n")
	for _, want := range []string{"home /etc is outside", "is shared with bob@b.example", "holds the home of"} {
		if !strings.Contains(notes, want) {
			t.Errorf("notes lack %q:\n%s", want, notes)
		}
	}
	if _, err := os.Stat("/etc"); err != nil {
		t.Fatal("/etc is gone")
	}
	if _, err := Restore(res.Backup, RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := addresses(readTree(t, Source{Layout: LayoutDovecot, PasswdFiles: []string{users, other}})); len(got) != 9 {
		t.Errorf("after restore %q", got)
	}
	if _, err := os.Stat(filepath.Join(home("a.example/ofice"), "Maildir", "cur", "m")); err != nil {
		t.Errorf("home not moved back: %v", err)
	}
}
