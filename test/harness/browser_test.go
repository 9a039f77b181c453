package harness

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestBrowser checks the browser harness itself against a page served
// here: navigation and status, text, counts, form fields, a click that
// loads a new document, dialogs recorded, a PNG screenshot, separate
// cookies per page, and no Chromium process left once it is closed.
func TestBrowser(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /", func(w http.ResponseWriter, r *http.Request) {
		if c, err := r.Cookie("who"); err == nil {
			fmt.Fprintf(w, `<p id="who">%s</p>`, c.Value)
		}
		fmt.Fprint(w, `<title>t</title><h1 id="h">Hello &lt;b&gt;</h1><ul><li>a</li><li>b</li></ul>
<form method="post" action="/post"><input id="in" name="v"><button id="go">Go</button></form>`)
	})
	mux.HandleFunc("POST /post", func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "who", Value: r.FormValue("v"), Path: "/"})
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprintf(w, `<p id="got">%s</p>`, r.FormValue("v"))
	})
	mux.HandleFunc("GET /alert", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `<p id="x">x</p><script>alert("boo")</script>`)
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	base := "http://" + l.Addr().String()

	b := StartBrowser(t)
	p := b.NewPage(t)
	if st := p.Navigate(t, base+"/"); st != http.StatusOK {
		t.Errorf("GET / status %d, want 200", st)
	}
	if got := p.Text(t, "#h"); got != "Hello <b>" {
		t.Errorf("Text(#h) = %q, want %q", got, "Hello <b>")
	}
	if n := p.Count(t, "li"); n != 2 {
		t.Errorf("Count(li) = %d, want 2", n)
	}
	if got := p.Texts(t, "li"); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("Texts(li) = %q", got)
	}
	p.SendKeys(t, "#in", "alice")
	if st := p.ClickAndWait(t, "#go"); st != http.StatusForbidden {
		t.Errorf("POST status %d, want 403", st)
	}
	if got := p.Text(t, "#got"); got != "alice" {
		t.Errorf("after the POST #got = %q, want alice", got)
	}
	if u := p.URL(t); u != base+"/post" {
		t.Errorf("URL = %q, want %s/post", u, base)
	}
	if len(p.Dialogs()) != 0 {
		t.Errorf("dialogs %q before any alert", p.Dialogs())
	}

	// Another page has its own cookies.
	other := b.NewPage(t)
	other.Navigate(t, base+"/")
	if n := other.Count(t, "#who"); n != 0 {
		t.Errorf("a new page sees the first page's cookie: %q", other.Text(t, "#who"))
	}
	p.Navigate(t, base+"/")
	if got := p.Text(t, "#who"); got != "alice" {
		t.Errorf("the first page lost its cookie: #who = %q", got)
	}

	p.SetValue(t, "#in", "bob")
	if st := p.Submit(t, "form"); st != http.StatusForbidden {
		t.Errorf("Submit: status %d, want 403", st)
	}
	if got := p.Text(t, "#got"); got != "bob" {
		t.Errorf("after Submit #got = %q, want bob", got)
	}

	p.Navigate(t, base+"/alert")
	p.WaitVisible(t, "#x")
	if d := p.Dialogs(); len(d) != 1 || !strings.Contains(d[0], "boo") {
		t.Errorf("Dialogs() = %q, want the one alert", d)
	}

	shot := filepath.Join(t.TempDir(), "page.png")
	p.Screenshot(t, shot)
	png, err := os.ReadFile(shot)
	if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
		t.Errorf("screenshot is not a PNG (%v)", err)
	}

	if len(b.leftovers()) == 0 {
		t.Fatalf("found no running process with --user-data-dir=%s; the leftover check would see nothing", b.Dir)
	}
	b.Close()
	if left := b.leftovers(); len(left) != 0 {
		t.Errorf("chromium processes %v still running after Close", left)
	}
}
