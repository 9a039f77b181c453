package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
	"unicode/utf8"

	"mailwarden/internal/adminapi"
	"mailwarden/internal/human"
	"mailwarden/internal/store"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// view is what every page template gets: the layout's parts and the
// page's own Data.
type view struct {
	Title   string
	Nav     string // which nav link is the current page
	User    *sessionUser
	Flash   *flash
	Freezes []store.Freeze // in force: the layout shows a banner
	Version string
	Now     time.Time
	Data    any
}

// flash is a one-time message about the result of a form.
type flash struct {
	Kind string // "ok" or "error"
	Msg  string
}

// clearForm is the data of the "clearform" partial.
type clearForm struct {
	ID, Back string
}

// choiceList is the data of the "options" partial: a filter's choices
// and the one selected.
type choiceList struct {
	List     []string
	Selected string
}

// pages holds one template set per page, each the layout plus the page.
type pages struct {
	sets map[string]*template.Template
}

// timeLayout is how times are shown: the server's local time, to the
// second, which is what the logs an administrator compares with use.
const timeLayout = "2006-01-02 15:04:05"

// templateFuncs are the helpers the templates call. None returns
// template.HTML: everything they produce is escaped like any other value.
func templateFuncs() template.FuncMap {
	return template.FuncMap{
		"when": func(t time.Time) string {
			if t.IsZero() {
				return ""
			}
			return t.Local().Format(timeLayout)
		},
		"iso": func(t time.Time) string {
			if t.IsZero() {
				return ""
			}
			return t.Format(time.RFC3339)
		},
		"sender": func(s string) string {
			if s == "" {
				return "<>"
			}
			return s
		},
		"join":  func(ss []string) string { return strings.Join(ss, ", ") },
		"scope": adminapi.DescribeScope,
		// clearArgs is the data of the "clearform" partial: a latch's
		// clear form and the page it returns to.
		"clearArgs": func(id, back string) clearForm { return clearForm{ID: id, Back: back} },
		"age":       func(d time.Duration) string { return human.Duration(d, " ") },
		// choices is the data of the "options" partial.
		"choices": func(list []string, selected string) choiceList { return choiceList{List: list, Selected: selected} },
	}
}

func loadPages() (*pages, error) {
	base, err := template.New("layout.html").Funcs(templateFuncs()).ParseFS(templateFS, "templates/layout.html", "templates/partials.html")
	if err != nil {
		return nil, fmt.Errorf("web: parsing the layout templates: %w", err)
	}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, fmt.Errorf("web: listing templates: %w", err)
	}
	p := &pages{sets: map[string]*template.Template{}}
	for _, n := range names {
		name := path.Base(n)
		if name == "layout.html" || name == "partials.html" {
			continue
		}
		t, err := base.Clone()
		if err == nil {
			_, err = t.ParseFS(templateFS, n)
		}
		if err != nil {
			return nil, fmt.Errorf("web: parsing template %s: %w", name, err)
		}
		p.sets[name] = t
	}
	return p, nil
}

// render writes the page file with the layout. The page is executed into
// a buffer first, so a template error becomes a 500 and not half a page.
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, file, title, nav string, u *sessionUser, data any) {
	v := view{Title: title, Nav: nav, User: u, Version: s.version, Now: s.now(), Data: data}
	if u != nil {
		v.Flash = s.takeFlash(w, r)
		fz, err := s.store.ListFreezes(r.Context())
		if err != nil {
			s.log.Error("web: listing freezes for the banner failed", "err", err)
		}
		v.Freezes = fz
	}
	s.execute(w, status, file, "layout", v)
}

// execute runs one template of the set for file.
func (s *Server) execute(w http.ResponseWriter, status int, file, name string, data any) {
	set, ok := s.pages.sets[file]
	var buf bytes.Buffer
	var err error
	if !ok {
		err = fmt.Errorf("no template %s", file)
	} else {
		err = set.ExecuteTemplate(&buf, name, data)
	}
	if err != nil {
		s.log.Error("web: rendering a page failed", "template", file, "err", err)
		s.plainError(w, http.StatusInternalServerError, "Internal error rendering the page; the daemon's log has the details.")
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// errorView is the error page's data.
type errorView struct {
	Status  int
	Heading string
	Message string
	Login   bool // offer a link to the login page
}

// errorPage answers status with a page saying msg; under /api/ it answers
// the JSON the API's clients expect.
func (s *Server) errorPage(w http.ResponseWriter, r *http.Request, u *sessionUser, status int, heading, msg string) {
	if strings.HasPrefix(r.URL.Path, "/api/") {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(map[string]string{"error": msg})
		return
	}
	s.render(w, r, status, "error.html", heading, "", u,
		errorView{Status: status, Heading: heading, Message: msg, Login: u == nil})
}

func (s *Server) unauthorized(w http.ResponseWriter, r *http.Request) {
	s.errorPage(w, r, nil, http.StatusUnauthorized, "Not logged in",
		"You are not logged in, or your session has ended. Log in and try again.")
}

func (s *Server) forbidden(w http.ResponseWriter, r *http.Request, u *sessionUser) {
	s.errorPage(w, r, u, http.StatusForbidden, "Not allowed",
		"The viewer role cannot change anything. Ask an administrator to do this.")
}

func (s *Server) notFound(w http.ResponseWriter, r *http.Request, u *sessionUser) {
	s.errorPage(w, r, u, http.StatusNotFound, "Not found", "There is no page at this address.")
}

// serverError logs err and answers 500 saying what was being done.
func (s *Server) serverError(w http.ResponseWriter, r *http.Request, u *sessionUser, what string, err error) {
	s.log.Error("web: "+what+" failed", "path", r.URL.Path, "err", err)
	s.errorPage(w, r, u, http.StatusInternalServerError, "Internal error",
		"Something went wrong "+what+". The daemon's log has the details.")
}

// plainError answers with a short text, for when the page machinery is
// not to be trusted (a panic) or not wanted (a refused cross-origin
// request).
func (s *Server) plainError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	fmt.Fprintln(w, msg)
}

// maxFlash bounds a flash message; it is a sentence about a result.
const maxFlash = 1000

// setFlash stores a message for the next page the browser shows. It is
// a short-lived cookie rather than a query parameter, so that nobody can
// send an administrator a link that shows a message of their choosing.
func (s *Server) setFlash(w http.ResponseWriter, kind, msg string) {
	if len(msg) > maxFlash {
		msg = strings.ToValidUTF8(msg[:maxFlash], "") + "…"
	}
	s.setCookie(w, "mw_flash", base64.RawURLEncoding.EncodeToString([]byte(kind+":"+msg)), 60)
}

// takeFlash returns the pending flash message, if any, and clears it.
func (s *Server) takeFlash(w http.ResponseWriter, r *http.Request) *flash {
	c, err := r.Cookie(s.cookieName("mw_flash"))
	if err != nil {
		return nil
	}
	s.setCookie(w, "mw_flash", "", -1)
	b, err := base64.RawURLEncoding.DecodeString(c.Value)
	if err != nil || !utf8.Valid(b) {
		return nil
	}
	kind, msg, ok := strings.Cut(string(b), ":")
	if !ok || (kind != "ok" && kind != "error") || len(msg) > maxFlash+len("…") {
		return nil
	}
	return &flash{Kind: kind, Msg: msg}
}

// staticFile is one embedded asset.
type staticFile struct {
	body  []byte
	ctype string
	etag  string
}

type staticFiles struct {
	files map[string]staticFile
}

// contentType is the type of an asset by extension; other files are not
// served.
func contentType(ext string) (string, bool) {
	switch ext {
	case ".css":
		return "text/css; charset=utf-8", true
	case ".js":
		return "text/javascript; charset=utf-8", true
	case ".svg":
		return "image/svg+xml", true
	}
	return "", false
}

func loadStatic() (*staticFiles, error) {
	sf := &staticFiles{files: map[string]staticFile{}}
	err := fs.WalkDir(staticFS, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		ct, ok := contentType(path.Ext(p))
		if !ok {
			return nil
		}
		b, err := staticFS.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		sf.files[strings.TrimPrefix(p, "static/")] = staticFile{body: b, ctype: ct,
			etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("web: reading the embedded static files: %w", err)
	}
	return sf, nil
}

// serve answers GET /static/NAME. Browsers revalidate with the ETag, so
// a new version of the daemon is seen at once.
func (sf *staticFiles) serve(w http.ResponseWriter, r *http.Request) {
	f, ok := sf.files[strings.TrimPrefix(r.URL.Path, "/static/")]
	if !ok {
		w.Header().Set("Cache-Control", "no-store")
		http.Error(w, "no such file", http.StatusNotFound)
		return
	}
	h := w.Header()
	h.Set("Content-Type", f.ctype)
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", f.etag)
	if r.Header.Get("If-None-Match") == f.etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Write(f.body)
}
