package antivirus

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"mailwarden/internal/clamd"
	"mailwarden/internal/policy"
	"mailwarden/internal/store"
)

const eicarFile = `X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`

// cacheEnv is an env whose check has a scan cache and a fake scanner
// that finds EICAR wherever it is read in the clear.
type cacheEnv struct {
	*env
	cache    *Cache
	version  int
	outcomes []string
}

func newCacheEnv(t *testing.T, cleanMin int64) *cacheEnv {
	ce := &cacheEnv{version: 27000}
	ce.cache = NewCache(CacheOptions{MaxEntries: 100, TTL: time.Hour})
	ce.env = newEnv(t, func(o *Options) {
		o.Cache = ce.cache
		o.CleanMinSize = cleanMin
		o.SignatureVersion = func() int { return ce.version }
		o.CacheCounted = func(s string) { ce.outcomes = append(ce.outcomes, s) }
	})
	ce.scanner.res = clamd.Result{Virus: eicar, Server: "tcp:127.0.0.1:3310"}
	ce.scanner.infectedIf = eicarFile
	return ce
}

// send checks msg as an inbound message and returns the verdict and the
// clamd scans it cost.
func (ce *cacheEnv) send(req *policy.Request, msg string) (policy.Verdict, int) {
	ce.t.Helper()
	req.Message = message(msg)
	before := ce.scanner.calls
	v := ce.check(req)
	return v, ce.scanner.calls - before
}

// mixed is a message with a text part and an attachment, in the
// attachment's transfer encoding.
func mixed(text, attachment, cte string) string {
	if cte == "base64" {
		attachment = base64.StdEncoding.EncodeToString([]byte(attachment))
	}
	return strings.Join([]string{
		"From: a@outside.example", "Subject: invoice", "Content-Type: multipart/mixed; boundary=b", "",
		"--b", "Content-Type: text/plain", "", text,
		"--b", "Content-Type: application/octet-stream", "Content-Transfer-Encoding: " + cte, "", attachment,
		"--b--", ""}, "\r\n")
}

func TestCacheRefusesARepeatedWormWithoutClamd(t *testing.T) {
	ce := newCacheEnv(t, 1<<20)
	v, scans := ce.send(inbound("bob@district.example"), mixed("Please see the invoice.", eicarFile, "7bit"))
	if v.Action != policy.Reject || v.Text != "Virus found: "+eicar {
		t.Fatalf("first message: %+v", v)
	}
	// The whole message, then each part alone to learn which carries it.
	if scans != 3 {
		t.Errorf("first message cost %d scans, want 3", scans)
	}
	// Another message, other text, the attachment base64-encoded.
	v, scans = ce.send(inbound("carol@district.example"), mixed("Your parcel is waiting.", eicarFile, "base64"))
	if scans != 0 {
		t.Errorf("repeated attachment cost %d scans, want 0", scans)
	}
	if v.Action != policy.Reject || v.Code != 554 || v.Status != "5.7.1" || v.Text != "Virus found: "+eicar ||
		v.Event != store.EventVirus || v.Check != Name {
		t.Errorf("cached verdict %+v, want the same reject as clamd's", v)
	}
	if !strings.Contains(v.Reason, "scan cache") || !strings.Contains(v.Reason, "internal recipients carol@district.example") {
		t.Errorf("reason %q does not say it came from the cache, or lost the recipients", v.Reason)
	}
	if got := strings.Join(ce.outcomes, ","); got != "miss,infected" {
		t.Errorf("outcomes %s, want miss,infected", got)
	}
}

func TestCachedVirusLatchesAnInternalSender(t *testing.T) {
	ce := newCacheEnv(t, 1<<20)
	ce.send(inbound("bob@district.example"), mixed("x", eicarFile, "7bit"))
	v, scans := ce.send(outbound("10.1.2.3"), mixed("y", eicarFile, "base64"))
	if scans != 0 || v.Action != policy.Reject || v.Latched == "" || !strings.Contains(v.Reason, "latched client 10.1.2.3") {
		t.Errorf("outbound cached virus: %d scans, %+v; want a reject that latches", scans, v)
	}
}

func TestCacheCleanOnlyForLargeParts(t *testing.T) {
	big := strings.Repeat("clean attachment ", 100) // 1,700 bytes
	ce := newCacheEnv(t, 1000)
	// A small text part is never cached clean, so the message is
	// scanned every time; the big attachment is learnt.
	for i := range 2 {
		if v, scans := ce.send(inbound("bob@district.example"), mixed("hi", big, "7bit")); scans != 1 || v.Action != policy.Continue {
			t.Errorf("send %d with a small part: %d scans, %v", i, scans, v.Action)
		}
	}
	// A message of the big part alone is known clean.
	single := "Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
		base64.StdEncoding.EncodeToString([]byte(big)) + "\r\n"
	v, scans := ce.send(inbound("bob@district.example"), single)
	if scans != 0 || v.Action != policy.Continue {
		t.Fatalf("known clean part: %d scans, %+v", scans, v)
	}
	if got, _ := header(v, HeaderStatus); got != "Clean" {
		t.Errorf("%s = %q, want Clean", HeaderStatus, got)
	}
	// A new signature version can make it infected: scanned again.
	ce.version++
	if _, scans := ce.send(inbound("bob@district.example"), single); scans != 1 {
		t.Errorf("after a signature update: %d scans, want 1", scans)
	}
	if got := strings.Join(ce.outcomes, ","); got != "miss,miss,clean,miss" {
		t.Errorf("outcomes %s", got)
	}
}

func TestCacheNoCleanWhileVersionUnknown(t *testing.T) {
	ce := newCacheEnv(t, 0)
	ce.version = 0
	single := "Content-Type: application/pdf\r\n\r\n" + strings.Repeat("pdf", 100)
	for i := range 2 {
		if _, scans := ce.send(inbound("bob@district.example"), single); scans != 1 {
			t.Errorf("send %d: %d scans, want 1", i, scans)
		}
	}
	// Infected verdicts are kept all the same.
	ce.send(inbound("bob@district.example"), mixed("x", eicarFile, "7bit"))
	if _, scans := ce.send(inbound("bob@district.example"), mixed("z", eicarFile, "base64")); scans != 0 {
		t.Errorf("repeated worm while the version is unknown: %d scans, want 0", scans)
	}
}

func TestCacheDroppedWhenVersionChanges(t *testing.T) {
	ce := newCacheEnv(t, 1<<20)
	ce.send(inbound("bob@district.example"), mixed("x", eicarFile, "7bit"))
	ce.version++
	if _, scans := ce.send(inbound("bob@district.example"), mixed("y", eicarFile, "base64")); scans == 0 {
		t.Error("a part cached under the old signatures was trusted under the new")
	}
}

func TestCacheMalformedMessageScannedWhole(t *testing.T) {
	ce := newCacheEnv(t, 0)
	// The closing boundary is missing.
	bad := strings.TrimSuffix(mixed("x", eicarFile, "7bit"), "--b--\r\n")
	for i := range 2 {
		v, scans := ce.send(inbound("bob@district.example"), bad)
		if scans != 1 || v.Action != policy.Reject {
			t.Errorf("send %d: %d scans, %+v; want clamd's reject each time", i, scans, v)
		}
	}
	if ce.cache.Len() != 0 {
		t.Errorf("cache holds %d entries from a malformed message", ce.cache.Len())
	}
}

func TestCacheNothingOnScanError(t *testing.T) {
	ce := newCacheEnv(t, 0)
	ce.scanner.err = errors.New("clamd: connection refused")
	v, _ := ce.send(inbound("bob@district.example"), mixed("x", "y", "7bit"))
	if v.Action != policy.Tempfail {
		t.Errorf("scan error: %v, want tempfail", v.Action)
	}
	if ce.cache.Len() != 0 {
		t.Errorf("cache holds %d entries after a scan error", ce.cache.Len())
	}
}

// A virus clamd finds only in the whole message (here in a header
// field) is in no part: nothing is learnt, and the next copy is
// scanned again.
func TestCacheNothingWhenNoPartIsInfectedAlone(t *testing.T) {
	ce := newCacheEnv(t, 1<<20)
	ce.scanner.infectedIf = "X-Marker: SPLIT"
	msg := "X-Marker: SPLIT\r\n" + mixed("x", "y", "7bit")
	for i := range 2 {
		v, scans := ce.send(inbound("bob@district.example"), msg)
		if v.Action != policy.Reject || scans != 3 {
			t.Errorf("send %d: %d scans, %v; want a reject after 3 scans", i, scans, v.Action)
		}
	}
	if ce.cache.Len() != 0 {
		t.Errorf("cache holds %d entries", ce.cache.Len())
	}
}
