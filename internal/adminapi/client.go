package adminapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"syscall"
	"time"

	"mailwarden/internal/store"
)

// maxResponseBytes bounds what the client reads: MaxEventLimit events
// with long recipient lists fit with room to spare.
const maxResponseBytes = 64 << 20

// Client talks to a running daemon's admin API.
type Client struct {
	path string
	tr   *http.Transport
	http *http.Client
	// slow is for requests that answer when long work is done (a scan):
	// it has no response-header timeout.
	slow *http.Client
}

// Dial returns a client for the admin socket at socketPath. It connects
// lazily: an unreachable daemon is reported by the first call, as an
// *UnreachableError.
func Dial(socketPath string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, "unix", socketPath)
			if err != nil {
				return nil, dialError(socketPath, err)
			}
			return c, nil
		},
		MaxIdleConns:          1,
		IdleConnTimeout:       30 * time.Second,
		ResponseHeaderTimeout: time.Minute,
		DisableCompression:    true,
	}
	slow := tr.Clone()
	slow.ResponseHeaderTimeout = 0
	slow.MaxIdleConns = 0
	return &Client{path: socketPath, tr: tr, http: &http.Client{Transport: tr}, slow: &http.Client{Transport: slow}}
}

// Close releases the client's idle connection.
func (c *Client) Close() {
	c.tr.CloseIdleConnections()
	c.slow.CloseIdleConnections()
}

// UnreachableError says the daemon could not be reached and what to do.
type UnreachableError struct {
	Path   string
	Err    error  // the error from connecting
	Reason string // short cause, e.g. "permission denied"
	Hint   string // what to do about it
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("cannot reach the mailwarden daemon at %s: %s — %s", e.Path, e.Reason, e.Hint)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// dialError turns a failure to connect to the socket into advice: the
// three common causes are a daemon that is not running, one that died
// and left its socket, and a user without access to the socket.
func dialError(path string, err error) error {
	ue := &UnreachableError{Path: path, Err: err}
	switch {
	case errors.Is(err, syscall.ENOENT):
		ue.Reason, ue.Hint = "no such file", "is mailwarden serve running? (the socket is admin.socket from the config, else admin.sock in data_dir; --config and --data select them)"
	case errors.Is(err, syscall.ECONNREFUSED):
		ue.Reason, ue.Hint = "connection refused", "the socket is left from a daemon that stopped; is mailwarden serve running?"
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		ue.Reason = "permission denied"
		if g := socketGroup(path); g != "" {
			ue.Hint = "run as root or a member of group " + g
		} else {
			ue.Hint = "run as root or as a user allowed to open the socket (admin.owner and admin.group)"
		}
	default:
		var se *net.OpError
		ue.Reason, ue.Hint = err.Error(), "is admin.socket a socket the daemon serves?"
		if errors.As(err, &se) && se.Err != nil {
			ue.Reason = se.Err.Error()
		}
	}
	return ue
}

// Latches lists latches; f.Limit 0 means all.
func (c *Client) Latches(ctx context.Context, f store.LatchFilter) ([]Latch, error) {
	q := url.Values{}
	if f.Active {
		q.Set("active", "1")
	}
	setIf(q, "kind", f.Kind)
	setIf(q, "key", f.Key)
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	var out []Latch
	return out, c.do(ctx, http.MethodGet, "/v1/latches", q, nil, &out)
}

// Latch returns the latch id; an unknown id is an *APIError matching
// store.ErrNotFound.
func (c *Client) Latch(ctx context.Context, id string) (Latch, error) {
	var out Latch
	return out, c.do(ctx, http.MethodGet, "/v1/latches/"+url.PathEscape(id), nil, nil, &out)
}

// ClearLatch clears the latch id with a note saying why; the daemon
// records the caller as who cleared it. A latch no longer active is an
// *APIError matching store.ErrNotActive.
func (c *Client) ClearLatch(ctx context.Context, id, note string) (Latch, error) {
	var out Latch
	return out, c.do(ctx, http.MethodPost, "/v1/latches/"+url.PathEscape(id)+"/clear", nil, ClearRequest{Note: note}, &out)
}

// Freezes lists the freezes in force.
func (c *Client) Freezes(ctx context.Context) ([]Freeze, error) {
	var out []Freeze
	return out, c.do(ctx, http.MethodGet, "/v1/freezes", nil, nil, &out)
}

// Freeze puts a freeze in force (or replaces the one with the same scope
// and value) and returns it as stored.
func (c *Client) Freeze(ctx context.Context, scope, value, note string) (Freeze, error) {
	var out Freeze
	return out, c.do(ctx, http.MethodPost, "/v1/freezes", nil, FreezeRequest{Scope: scope, Value: value, Note: note}, &out)
}

// Unfreeze lifts a freeze and returns it as it was; no such freeze is an
// *APIError matching store.ErrNotFound.
func (c *Client) Unfreeze(ctx context.Context, scope, value, note string) (Freeze, error) {
	q := url.Values{"scope": {scope}, "value": {value}}
	setIf(q, "note", note)
	var out Freeze
	return out, c.do(ctx, http.MethodDelete, "/v1/freezes", q, nil, &out)
}

// Events queries the event log, newest first; f.Limit 0 means the
// daemon's default (DefaultEventLimit).
func (c *Client) Events(ctx context.Context, f store.EventFilter) ([]Event, error) {
	q := url.Values{}
	if !f.Since.IsZero() {
		q.Set("since", f.Since.Format(time.RFC3339Nano))
	}
	if !f.Until.IsZero() {
		q.Set("until", f.Until.Format(time.RFC3339Nano))
	}
	setIf(q, "kind", f.Kind)
	setIf(q, "client", f.Client)
	setIf(q, "user", f.User)
	if f.Limit != 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	var out []Event
	return out, c.do(ctx, http.MethodGet, "/v1/events", q, nil, &out)
}

func setIf(q url.Values, k, v string) {
	if v != "" {
		q.Set(k, v)
	}
}

// do makes one request and decodes the answer into out, or returns the
// daemon's error message as an *APIError.
func (c *Client) do(ctx context.Context, method, path string, q url.Values, body, out any) error {
	return c.doWith(c.http, ctx, method, path, q, body, out)
}

// doWith is do with the given HTTP client.
func (c *Client) doWith(hc *http.Client, ctx context.Context, method, path string, q url.Values, body, out any) error {
	u := "http://mailwarden" + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("adminapi: encoding request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return fmt.Errorf("adminapi: building request: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		var ue *UnreachableError
		if errors.As(err, &ue) {
			return ue
		}
		return fmt.Errorf("talking to the mailwarden daemon at %s: %w", c.path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return fmt.Errorf("reading the daemon's answer to %s %s: %w", method, path, err)
	}
	if resp.StatusCode >= 400 {
		var eb errorBody
		if json.Unmarshal(data, &eb) != nil || eb.Error == "" {
			eb.Error = fmt.Sprintf("the daemon answered %s to %s %s", resp.Status, method, path)
		}
		return &APIError{Status: resp.StatusCode, Message: eb.Error}
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decoding the daemon's answer to %s %s: %w", method, path, err)
	}
	return nil
}
