package load

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"net/netip"
	"strconv"
	"sync"
	"time"

	gomilter "github.com/d--j/go-milter"
	"github.com/emersion/go-message/textproto"
)

// MilterOptions configures RunMilter.
type MilterOptions struct {
	Common
	// Size is the message body size in bytes; 0 means 2048.
	Size int
	// Virus is the fraction of messages (0 to 1) that carry a base64
	// EICAR test attachment instead of the plain body, drawn per
	// transaction from the seed.
	Virus float64
}

// eicar is the EICAR anti-virus test string: harmless, and detected by
// every scanner as a test signature.
const eicar = `X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`

// eicarBody is a multipart body with the EICAR string as a base64
// attachment, as a mail client would send it.
func eicarBody() []byte {
	return []byte("--XX\r\nContent-Type: text/plain\r\n\r\nhello\r\n--XX\r\n" +
		"Content-Type: application/octet-stream; name=\"eicar.com\"\r\n" +
		"Content-Transfer-Encoding: base64\r\n" +
		"Content-Disposition: attachment; filename=\"eicar.com\"\r\n\r\n" +
		base64.StdEncoding.EncodeToString([]byte(eicar)) + "\r\n--XX--\r\n")
}

// RunMilter drives the milter at o.Addr with o.N full transactions over
// o.C concurrent sessions. A transaction is what an MTA sends for one
// message on one SMTP connection: connect, HELO, MAIL, RCPT, DATA, the
// headers, the body and end of message, on a TCP connection of its own
// (milter protocol v6 negotiates per connection, as Postfix does per SMTP
// session). A transaction stops at the first step that does not answer
// continue, and that answer is its verdict.
//
// A cancelled ctx stops the run after the transactions in flight; the
// Result covers those that finished, and the error is ctx.Err().
func RunMilter(ctx context.Context, o MilterOptions) (Result, error) {
	trip, err := o.validate("milter")
	if err != nil {
		return Result{}, err
	}
	if o.Size < 0 {
		return Result{}, fmt.Errorf("%w: milter: Size=%d is negative", ErrBadOptions, o.Size)
	}
	if o.Size == 0 {
		o.Size = 2048
	}
	if o.Virus < 0 || o.Virus > 1 {
		return Result{}, fmt.Errorf("%w: milter: Virus=%v is not a fraction from 0 to 1", ErrBadOptions, o.Virus)
	}
	virus := eicarBody()
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	client := gomilter.NewClient("tcp", o.Addr,
		gomilter.WithAction(gomilter.AllClientSupportedActionMasks),
		gomilter.WithReadTimeout(timeout),
		gomilter.WithWriteTimeout(timeout))
	line := []byte("The quick brown fox jumps over the lazy dog 0123456789.\r\n")
	body := bytes.Repeat(line, o.Size/len(line)+1)[:o.Size]

	tl := newTally(o.N, o.C)
	work := counter{n: int64(o.N)}
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < o.C; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i, ok := work.take()
				if !ok {
					return
				}
				k := trip.key(i)
				msg, ctype := body, "text/plain"
				if o.Virus > 0 && trip.fraction(i) < o.Virus {
					msg, ctype = virus, `multipart/mixed; boundary="XX"`
				}
				t0 := time.Now()
				v, err := milterTransaction(client, trip, k, msg, ctype)
				tl.record(w, i, time.Since(t0), v, err)
			}
		}()
	}
	wg.Wait()
	r, err := tl.result(time.Since(start))
	if ctx.Err() != nil {
		return r, fmt.Errorf("milter load on %s stopped: %w", o.Addr, ctx.Err())
	}
	if err != nil {
		return r, fmt.Errorf("milter load on %s: %w", o.Addr, err)
	}
	return r, nil
}

// milterTransaction runs one transaction for triplet k and returns the
// verdict.
func milterTransaction(client *gomilter.Client, trip triplets, k int, body []byte, ctype string) (string, error) {
	macros := gomilter.NewMacroBag()
	macros.Set(gomilter.MacroMTAFQDN, "mx.dest.test")
	macros.Set(gomilter.MacroDaemonName, "postfix")
	macros.Set(gomilter.MacroQueueId, fmt.Sprintf("Q%08X", k))
	s, err := client.Session(macros)
	if err != nil {
		return "", err
	}
	defer s.Close()

	ip := trip.client(k)
	family := gomilter.FamilyInet
	if a, err := netip.ParseAddr(ip); err == nil && a.Is6() {
		family = gomilter.FamilyInet6
	}
	host, sender, rcpt := trip.host(k), trip.sender(k), trip.recipient(k)
	macros.Set(gomilter.MacroMailAddr, sender)
	macros.Set(gomilter.MacroRcptAddr, rcpt)
	steps := []func() (*gomilter.Action, error){
		func() (*gomilter.Action, error) { return s.Conn(host, family, 40000, ip) },
		func() (*gomilter.Action, error) { return s.Helo(host) },
		func() (*gomilter.Action, error) { return s.Mail("<"+sender+">", "") },
		func() (*gomilter.Action, error) { return s.Rcpt("<"+rcpt+">", "") },
		func() (*gomilter.Action, error) { return s.DataStart() },
		func() (*gomilter.Action, error) {
			var h textproto.Header
			h.Add("From", "<"+sender+">")
			h.Add("To", "<"+rcpt+">")
			h.Add("Subject", "load test")
			h.Add("Message-Id", "<"+strconv.Itoa(k)+"."+strconv.FormatInt(time.Now().UnixNano(), 10)+"@example.net>")
			h.Add("MIME-Version", "1.0")
			h.Add("Content-Type", ctype)
			return s.Header(h)
		},
	}
	for _, step := range steps {
		act, err := step()
		if err != nil {
			return "", err
		}
		if act.Type != gomilter.ActionContinue {
			return milterVerdict(act), nil
		}
	}
	_, act, err := s.BodyReadFrom(bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	return milterVerdict(act), nil
}

// milterVerdict names an action the way the shared miltload does.
func milterVerdict(a *gomilter.Action) string {
	switch a.Type {
	case gomilter.ActionAccept, gomilter.ActionContinue:
		return "accept"
	case gomilter.ActionReject:
		return "reject"
	case gomilter.ActionTempFail:
		return "tempfail"
	case gomilter.ActionDiscard:
		return "discard"
	case gomilter.ActionRejectWithCode:
		return "code" + strconv.Itoa(int(a.SMTPCode))
	}
	return fmt.Sprintf("type%c", a.Type)
}
