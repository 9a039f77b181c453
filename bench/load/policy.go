package load

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"
)

// PolicyOptions configures RunPolicy.
type PolicyOptions struct {
	Common
	// Rate, if above 0, paces the requests: request i is sent at
	// start + i/Rate (requests per second across all connections) or as
	// soon after as its connection is free. Latency counts from the send,
	// as timer wake-up jitter would otherwise swamp sub-millisecond
	// answers; a server that cannot keep up shows as a Rate below the one
	// asked for. 0 sends as fast as the server answers.
	Rate float64
}

// errNoAction means the server ended its reply without an action line.
var errNoAction = errors.New("load: policy reply has no action= line")

// RunPolicy sends o.N Postfix policy-delegation requests (Postfix
// SMTPD_POLICY_README, "Protocol description") to o.Addr over o.C
// persistent connections, as Postfix's smtpd processes do: each
// connection sends a request and waits for the reply before the next one.
// A connection that fails is redialled for its next request.
//
// A cancelled ctx stops the run after the requests in flight; the Result
// covers those that finished, and the error is ctx.Err().
func RunPolicy(ctx context.Context, o PolicyOptions) (Result, error) {
	trip, err := o.validate("policy")
	if err != nil {
		return Result{}, err
	}
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	tl := newTally(o.N, o.C)
	work := counter{n: int64(o.N)}
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < o.C; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pc := policyConn{addr: o.Addr, timeout: timeout}
			defer pc.close()
			var req []byte
			for ctx.Err() == nil {
				i, ok := work.take()
				if !ok {
					return
				}
				req = appendPolicyRequest(req[:0], trip, trip.key(i), w, i)
				t0 := time.Now()
				if o.Rate > 0 {
					time.Sleep(time.Until(start.Add(time.Duration(float64(i) / o.Rate * float64(time.Second)))))
					t0 = time.Now()
				}
				v, err := pc.ask(req)
				tl.record(w, i, time.Since(t0), v, err)
			}
		}()
	}
	wg.Wait()
	r, err := tl.result(time.Since(start))
	if ctx.Err() != nil {
		return r, fmt.Errorf("policy load on %s stopped: %w", o.Addr, ctx.Err())
	}
	if err != nil {
		return r, fmt.Errorf("policy load on %s: %w", o.Addr, err)
	}
	return r, nil
}

// appendPolicyRequest appends the request Postfix sends at RCPT TO for
// triplet k: the attributes postgrey and mailwarden read, and the ones
// Postfix always sends besides.
func appendPolicyRequest(b []byte, trip triplets, k, w, i int) []byte {
	host := trip.host(k)
	b = append(b, "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\nclient_address="...)
	b = append(b, trip.client(k)...)
	b = append(b, "\nclient_name="...)
	b = append(b, host...)
	b = append(b, "\nreverse_client_name="...)
	b = append(b, host...)
	b = append(b, "\nhelo_name="...)
	b = append(b, host...)
	b = append(b, "\nsender="...)
	b = append(b, trip.sender(k)...)
	b = append(b, "\nrecipient="...)
	b = append(b, trip.recipient(k)...)
	b = append(b, "\nrecipient_count=0\nqueue_id=\ninstance="...)
	b = strconv.AppendInt(b, int64(w), 16)
	b = append(b, '.')
	b = strconv.AppendInt(b, int64(i), 10)
	b = append(b, "\nsize=0\nsasl_method=\nsasl_username=\n\n"...)
	return b
}

// policyConn is one persistent connection to the policy server.
type policyConn struct {
	addr    string
	timeout time.Duration
	conn    net.Conn
	r       *bufio.Reader
}

// ask sends req and returns the first word of the action in the reply.
func (pc *policyConn) ask(req []byte) (string, error) {
	if pc.conn == nil {
		c, err := net.DialTimeout("tcp", pc.addr, pc.timeout)
		if err != nil {
			return "", fmt.Errorf("connecting to policy server: %w", err)
		}
		pc.conn, pc.r = c, bufio.NewReader(c)
	}
	v, err := pc.exchange(req)
	if err != nil {
		pc.close()
	}
	return v, err
}

func (pc *policyConn) exchange(req []byte) (string, error) {
	if err := pc.conn.SetDeadline(time.Now().Add(pc.timeout)); err != nil {
		return "", err
	}
	if _, err := pc.conn.Write(req); err != nil {
		return "", fmt.Errorf("sending policy request: %w", err)
	}
	// The reply is attribute lines ended by an empty line; only action=
	// matters here.
	var action string
	for {
		line, err := pc.r.ReadSlice('\n')
		if err != nil {
			return "", fmt.Errorf("reading policy reply: %w", err)
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		if v, ok := bytes.CutPrefix(line, []byte("action=")); ok {
			if f := bytes.Fields(v); len(f) > 0 {
				action = string(f[0])
			}
		}
	}
	if action == "" {
		return "", errNoAction
	}
	return action, nil
}

func (pc *policyConn) close() {
	if pc.conn != nil {
		pc.conn.Close()
		pc.conn, pc.r = nil, nil
	}
}
