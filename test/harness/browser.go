package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// ChromiumPath is where Debian's chromium package installs the browser
// (test/setup.sh installs it).
const ChromiumPath = "/usr/bin/chromium"

// Browser timeouts. A step is one navigation, query or script; the
// start covers launching Chromium and opening its first tab, which a
// busy two-core machine can take several seconds over.
const (
	browserStartTimeout = 60 * time.Second
	browserStepTimeout  = 20 * time.Second
	browserStopTimeout  = 10 * time.Second
)

// Browser is one headless Chromium started for one test, with a fresh
// profile in the test's temporary directory. It is stopped, with every
// process it started, when the test ends.
type Browser struct {
	// Dir is the profile (--user-data-dir); its path is unique, so it
	// also names this browser's processes.
	Dir string
	// LogFile collects what Chromium prints.
	LogFile string

	allocCancel context.CancelFunc
	root        context.Context
	rootCancel  context.CancelFunc
	once        sync.Once
	killed      []int // leftover processes Close had to kill
	log         *os.File

	mu    sync.Mutex // guards pages
	pages []*Page
}

// StartBrowser starts Debian's Chromium through chromedp. A missing
// browser skips the test, or fails it under CI=true.
func StartBrowser(t testing.TB) *Browser {
	t.Helper()
	if st, err := os.Stat(ChromiumPath); err != nil || st.Mode()&0o111 == 0 {
		SkipOrFail(t, "harness: %s not installed (Debian package chromium)", ChromiumPath)
	}
	// The profile is made before the cleanup below is registered, so
	// that the browser is stopped before t.TempDir removes it.
	base := t.TempDir()
	b := &Browser{Dir: filepath.Join(base, "profile"), LogFile: filepath.Join(base, "chromium.log")}
	if err := os.Mkdir(b.Dir, 0o700); err != nil {
		t.Fatalf("creating the browser profile: %v", err)
	}
	var err error
	if b.log, err = os.Create(b.LogFile); err != nil {
		t.Fatalf("creating the browser log: %v", err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(ChromiumPath),
		chromedp.UserDataDir(b.Dir),
		chromedp.Headless,
		chromedp.NoSandbox, // the tests run as root, where the sandbox cannot start
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.WindowSize(1280, 900),
		// Without these Chromium keeps trying to reach Google's update,
		// sync, safe-browsing and metrics servers, over a network the test
		// machines do not have.
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-breakpad", true),
		chromedp.Flag("disable-domain-reliability", true),
		chromedp.Flag("disable-client-side-phishing-detection", true),
		chromedp.Flag("safebrowsing-disable-auto-update", true),
		chromedp.Flag("metrics-recording-only", true),
		chromedp.Flag("no-pings", true),
		chromedp.Flag("password-store", "basic"),
		// Even so, Debian's build looks up accounts.google.com,
		// clients2.google.com and update.googleapis.com at start. Every
		// name resolves to nothing here, so the browser never leaves
		// loopback; the tests use IP addresses only.
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE 127.0.0.2"),
		chromedp.Flag("disable-features", "Translate,OptimizationHints,MediaRouter,DialMediaRouteProvider,AutofillServerCommunication"),
		// /dev/shm is small in containers; Chromium crashes when it fills.
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.CombinedOutput(b.log),
	}
	alloc, allocCancel := chromedp.NewExecAllocator(context.Background(), opts...)
	b.allocCancel = allocCancel
	// chromedp's own messages go to the log file too: its goroutines may
	// still log after the test has ended, when t.Logf would panic.
	logf := func(format string, args ...any) { fmt.Fprintf(b.log, "chromedp: "+format+"\n", args...) }
	b.root, b.rootCancel = chromedp.NewContext(alloc, chromedp.WithLogf(logf), chromedp.WithErrorf(logf))
	t.Cleanup(func() {
		b.Close()
		if len(b.killed) > 0 {
			t.Logf("killed chromium processes %v that outlived the browser", b.killed)
		}
		if left := b.leftovers(); len(left) > 0 {
			t.Errorf("chromium processes %v still running after the browser was stopped and SIGKILL", left)
		}
		if t.Failed() {
			t.Logf("chromium output (%s):\n%s", b.LogFile, tail(readFile(b.LogFile), 4000))
		}
	})

	if err := firstRun(b.root); err != nil {
		b.Close()
		t.Fatalf("starting %s: %v\noutput:\n%s", ChromiumPath, err, tail(readFile(b.LogFile), 4000))
	}
	return b
}

// firstRun runs nothing on a new chromedp context, which starts the
// browser or opens the tab. The browser or tab lives as long as the
// context given to its first run, so that run gets no deadline of its
// own; a timer bounds the wait instead, and the caller cancels ctx.
func firstRun(ctx context.Context) error {
	done := make(chan error, 1)
	go func() { done <- chromedp.Do(ctx) }()
	select {
	case err := <-done:
		return err
	case <-time.After(browserStartTimeout):
		return fmt.Errorf("not started within %v", browserStartTimeout)
	}
}

// Close stops the browser: it closes every page, asks Chromium to quit,
// and kills what is left of its processes. It is safe to call twice.
func (b *Browser) Close() {
	b.once.Do(func() {
		b.mu.Lock()
		pages := b.pages
		b.mu.Unlock()
		for _, p := range pages {
			p.cancel()
		}
		ctx, cancel := context.WithTimeout(b.root, browserStopTimeout)
		chromedp.Cancel(ctx) // a graceful Browser.close
		cancel()
		b.rootCancel()
		b.allocCancel() // waits for the browser process to be reaped
		// Helper processes (zygote, network service) can outlive the main
		// process for a moment; give them that moment, then kill them.
		deadline := time.Now().Add(3 * time.Second)
		for len(b.leftovers()) > 0 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		b.killed = b.killLeftovers()
		b.log.Close() // an *os.File may be closed while another goroutine writes
	})
}

// leftovers returns the PIDs of running processes started with this
// browser's profile directory. The directory is unique to this browser,
// so these are only processes it started.
func (b *Browser) leftovers() []int {
	want := []byte("--user-data-dir=" + b.Dir)
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		for _, arg := range bytes.Split(cmdline, []byte{0}) {
			if bytes.Equal(arg, want) {
				if !zombie(pid) {
					pids = append(pids, pid)
				}
				break
			}
		}
	}
	return pids
}

// killLeftovers sends SIGKILL to each leftover by its PID and returns
// the PIDs it killed.
func (b *Browser) killLeftovers() []int {
	var killed []int
	for i := 0; i < 3; i++ {
		pids := b.leftovers()
		if len(pids) == 0 {
			break
		}
		for _, pid := range pids {
			if syscall.Kill(pid, syscall.SIGKILL) == nil {
				killed = append(killed, pid)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return killed
}

// zombie reports whether pid has exited and waits only to be reaped.
func zombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// The state follows the command name, which is in parentheses and
	// may itself hold spaces or parentheses.
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] == 'Z'
}

// Page is one tab in its own browser context: its cookies, and so its
// dashboard session, are its own, as in a separate private window.
type Page struct {
	ctx    context.Context
	cancel context.CancelFunc

	mu        sync.Mutex
	dialogs   []string
	documents []Document
}

// Document is one HTML document the page received.
type Document struct {
	URL    string
	Status int
}

// NewPage opens a tab in a fresh browser context. The page records every
// JavaScript dialog (alert, confirm, prompt) that opens in it, and closes
// it at once, so that a test can check that none opened; and the HTTP
// status of every document it loads.
func (b *Browser) NewPage(t testing.TB) *Page {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.root, chromedp.WithNewBrowserContext())
	p := &Page{ctx: ctx, cancel: cancel}
	b.mu.Lock()
	b.pages = append(b.pages, p)
	b.mu.Unlock()
	if err := firstRun(ctx); err != nil {
		t.Fatalf("browser: opening a tab: %v", err)
	}
	err := chromedp.Listen(ctx, func(ev any) {
		// This runs in the tab's event loop: record and return, and
		// answer the dialog from another goroutine.
		switch ev := ev.(type) {
		case *page.EventJavascriptDialogOpening:
			p.mu.Lock()
			p.dialogs = append(p.dialogs, fmt.Sprintf("%s: %s", ev.Type, ev.Message))
			p.mu.Unlock()
			go chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: false})
		case *network.EventResponseReceived:
			if ev.Type == network.ResourceTypeDocument && ev.Response != nil {
				p.mu.Lock()
				p.documents = append(p.documents, Document{URL: ev.Response.URL, Status: int(ev.Response.Status)})
				p.mu.Unlock()
			}
		}
	})
	if err != nil {
		t.Fatalf("listening to the tab's events: %v", err)
	}
	return p
}

// Dialogs returns the JavaScript dialogs that opened so far, as
// "type: message".
func (p *Page) Dialogs() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.dialogs...)
}

// Documents returns the HTML documents loaded so far, oldest first.
func (p *Page) Documents() []Document {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Document(nil), p.documents...)
}

// LastStatus returns the HTTP status of the last document loaded, 0 if
// none was.
func (p *Page) LastStatus() int {
	d := p.Documents()
	if len(d) == 0 {
		return 0
	}
	return d[len(d)-1].Status
}

// run runs one step with the step timeout, failing the test on error.
func (p *Page) run(t testing.TB, what string, step chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, browserStepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, step); err != nil {
		t.Fatalf("browser: %s: %v", what, err)
	}
}

// Navigate loads url, follows redirects, waits for the page's load event
// and returns the final document's HTTP status.
func (p *Page) Navigate(t testing.TB, url string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, browserStepTimeout)
	defer cancel()
	resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(url))
	if err != nil {
		t.Fatalf("browser: navigating to %s: %v", url, err)
	}
	if resp == nil {
		return 0
	}
	return int(resp.Status)
}

// ClickAndWait clicks the element sel finds (a submit button, a link)
// and waits until the document it leads to has loaded, returning that
// document's HTTP status.
func (p *Page) ClickAndWait(t testing.TB, sel string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, browserStepTimeout)
	defer cancel()
	before := len(p.Documents())
	resp, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible))
	if err != nil {
		t.Fatalf("browser: clicking %s: %v", sel, err)
	}
	if resp != nil {
		return int(resp.Status)
	}
	// A navigation the click started in another way (a script) is in
	// the recorded documents.
	if d := p.Documents(); len(d) > before {
		return d[len(d)-1].Status
	}
	return 0
}

// Submit submits the form sel finds as its submit button would
// (requestSubmit: validation and submit handlers run), waits for the
// document it leads to and returns that document's HTTP status.
func (p *Page) Submit(t testing.TB, sel string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, browserStepTimeout)
	defer cancel()
	submit := chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`(() => {
		const f = document.querySelector(%s);
		if (!(f instanceof HTMLFormElement)) throw new Error("no form matches the selector");
		f.requestSubmit();
	})()`, jsString(sel)))
	resp, err := chromedp.RunResponse(ctx, submit)
	if err != nil {
		t.Fatalf("browser: submitting %s: %v", sel, err)
	}
	if resp == nil {
		return 0
	}
	return int(resp.Status)
}

// URL returns the document's current address.
func (p *Page) URL(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, browserStepTimeout)
	defer cancel()
	u, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		t.Fatalf("browser: reading the location: %v", err)
	}
	return u
}

// WaitVisible waits until the element sel finds is visible.
func (p *Page) WaitVisible(t testing.TB, sel string) {
	t.Helper()
	p.run(t, "waiting for "+sel+" to be visible", chromedp.WaitVisible(chromedp.CSS(sel)))
}

// Text returns the trimmed textContent of the first element sel finds,
// waiting for it to exist. textContent is what the markup says, hidden
// or not, so escaped markup reads back as the literal characters.
func (p *Page) Text(t testing.TB, sel string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, browserStepTimeout)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("browser: reading the text of %s in %s: %v", sel, p.URL(t), err)
	}
	return strings.TrimSpace(s)
}

// Count returns how many elements sel finds now, without waiting.
func (p *Page) Count(t testing.TB, sel string) int {
	t.Helper()
	var n int
	p.Eval(t, fmt.Sprintf("document.querySelectorAll(%s).length", jsString(sel)), &n)
	return n
}

// Texts returns the trimmed textContent of every element sel finds now.
func (p *Page) Texts(t testing.TB, sel string) []string {
	t.Helper()
	var out []string
	p.Eval(t, fmt.Sprintf("Array.from(document.querySelectorAll(%s), e => e.textContent.trim())", jsString(sel)), &out)
	return out
}

// SetValue sets the value of the form field sel finds, as typing it
// would, including for a select.
func (p *Page) SetValue(t testing.TB, sel, value string) {
	t.Helper()
	p.run(t, "setting "+sel, chromedp.SetValue(chromedp.CSS(sel), value))
}

// SendKeys types text into the field sel finds.
func (p *Page) SendKeys(t testing.TB, sel, text string) {
	t.Helper()
	p.run(t, "typing into "+sel, chromedp.SendKeys(chromedp.CSS(sel), text, chromedp.NodeVisible))
}

// Eval evaluates a JavaScript expression in the page, awaiting it if it
// is a promise, and decodes its JSON value into out (nil to ignore it).
func (p *Page) Eval(t testing.TB, expr string, out any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, browserStepTimeout)
	defer cancel()
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("browser: evaluating %s: %v", expr, err)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("browser: decoding the value of %s (%s): %v", expr, raw, err)
		}
	}
}

// Screenshot writes a PNG of the whole page, beyond the window, to path.
func (p *Page) Screenshot(t testing.TB, path string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, browserStepTimeout)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("browser: taking a screenshot for %s: %v", path, err)
	}
	if len(png) == 0 {
		t.Fatalf("browser: empty screenshot for %s", path)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatalf("writing the screenshot: %v", err)
	}
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	b, err := json.Marshal(s)
	if err != nil {
		panic(errors.New("harness: a string that JSON cannot encode"))
	}
	return string(b)
}
