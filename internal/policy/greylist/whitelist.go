package greylist

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"

	"mailwarden/internal/netset"
)

// maxLineBytes bounds one whitelist file line; a longer line is an error
// rather than a truncated entry.
const maxLineBytes = 64 << 10

// clientList is the client whitelist: hostnames, regexps over the
// hostname, and networks over the address.
type clientList struct {
	domains    map[string]string // domain (and subdomains) -> entry text
	subdomains map[string]string // subdomains only -> entry text
	regexps    []entry
	nets       *netset.Set
	prefixes   []netip.Prefix // collected while loading; nets is built from them
}

// recipientList is the recipient whitelist.
type recipientList struct {
	users      map[string]string // local part at any domain -> entry text
	addresses  map[string]string // "user@domain" -> entry text
	atDomains  map[string]string // exact domain, any local part
	domains    map[string]string // domain and subdomains
	subdomains map[string]string // subdomains only
	regexps    []entry
}

func newClientList() *clientList {
	return &clientList{domains: map[string]string{}, subdomains: map[string]string{}}
}

func newRecipientList() *recipientList {
	return &recipientList{
		users: map[string]string{}, addresses: map[string]string{},
		atDomains: map[string]string{}, domains: map[string]string{},
		subdomains: map[string]string{},
	}
}

func (l *clientList) add(e entry) {
	switch e.kind {
	case kindRegexp:
		l.regexps = append(l.regexps, e)
	case kindDomain:
		l.domains[e.domain] = e.text
	case kindSubdomains:
		l.subdomains[e.domain] = e.text
	case kindNetwork:
		l.prefixes = append(l.prefixes, e.prefix)
	}
}

func (l *recipientList) add(e entry) {
	switch e.kind {
	case kindRegexp:
		l.regexps = append(l.regexps, e)
	case kindUser:
		l.users[e.user] = e.text
	case kindAddress:
		l.addresses[e.user+"@"+e.domain] = e.text
	case kindAtDomain:
		l.atDomains[e.domain] = e.text
	case kindDomain:
		l.domains[e.domain] = e.text
	case kindSubdomains:
		l.subdomains[e.domain] = e.text
	}
}

// len counts the entries, for the startup log.
func (l *clientList) len() int {
	return len(l.domains) + len(l.subdomains) + len(l.regexps) + l.nets.Len()
}

func (l *recipientList) len() int {
	return len(l.users) + len(l.addresses) + len(l.atDomains) + len(l.domains) +
		len(l.subdomains) + len(l.regexps)
}

// matchDomain looks d and each of its parent domains up in domains, and
// the parents alone in subdomains. It costs one map lookup per label.
func matchDomain(d string, domains, subdomains map[string]string) (string, bool) {
	if text, ok := domains[d]; ok {
		return text, true
	}
	for i := 0; i < len(d); i++ {
		if d[i] != '.' {
			continue
		}
		parent := d[i+1:]
		if text, ok := domains[parent]; ok {
			return text, true
		}
		if text, ok := subdomains[parent]; ok {
			return text, true
		}
	}
	return "", false
}

// match reports whether the client is whitelisted and by which entry.
// name is the client's hostname as the MTA verified it ("unknown" when it
// has none); postgrey matches names and regexps against it as given.
func (l *clientList) match(addr netip.Addr, name string) (string, bool) {
	if l.nets.Contains(addr) {
		return "address " + addr.Unmap().String(), true
	}
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if text, ok := matchDomain(name, l.domains, l.subdomains); ok {
		return "name " + text, true
	}
	for _, e := range l.regexps {
		if e.re.MatchString(name) {
			return "name " + e.text, true
		}
	}
	return "", false
}

// match reports whether the recipient is whitelisted and by which entry.
// A recipient without a domain ("postmaster", which RFC 5321 §4.5.1 lets
// clients use) can match user@ entries and regexps.
func (l *recipientList) match(rcpt string) (string, bool) {
	rcpt = strings.ToLower(rcpt)
	for _, e := range l.regexps {
		if e.re.MatchString(rcpt) {
			return e.text, true
		}
	}
	local, domain, hasDomain := rcpt, "", false
	if i := strings.LastIndexByte(rcpt, '@'); i >= 0 {
		local, domain, hasDomain = rcpt[:i], strings.TrimSuffix(rcpt[i+1:], "."), true
	}
	// "user" matches "user" and "user+anything" (postgrey's
	// user(?:\+[^@]+)?), so try the local part and every prefix of it that
	// ends before a '+' followed by at least one character.
	for i := len(local); i > 0; i = strings.LastIndexByte(local[:i], '+') {
		if i < len(local) && i == len(local)-1 {
			continue // "user+" has an empty extension
		}
		base := local[:i]
		if text, ok := l.users[base]; ok {
			return text, true
		}
		if hasDomain {
			if text, ok := l.addresses[base+"@"+domain]; ok {
				return text, true
			}
		}
	}
	if !hasDomain {
		return "", false
	}
	if text, ok := l.atDomains[domain]; ok {
		return text, true
	}
	return matchDomain(domain, l.domains, l.subdomains)
}

// loader parses entries into one list and collects every error.
type loader struct {
	list  string // "client" or "recipient"
	parse func(string) (entry, error)
	add   func(entry)
	errs  []error
	// skip, if set, receives a file line's error instead of errs.
	skip func(error)
}

// inline adds entries given in the configuration under key.
func (ld *loader) inline(key string, entries []string) {
	for i, raw := range entries {
		s := strings.TrimSpace(raw)
		pos := fmt.Sprintf("%s[%d]", key, i)
		if s == "" {
			ld.errs = append(ld.errs, &EntryError{Pos: pos, List: ld.list, Entry: raw, Err: errors.New("empty entry")})
			continue
		}
		ld.one(pos, s)
	}
}

// file adds the entries of a postgrey whitelist file.
func (ld *loader) file(path string) {
	f, err := os.Open(path)
	if err != nil {
		ld.errs = append(ld.errs, fmt.Errorf("greylist: reading %s whitelist: %w", ld.list, err))
		return
	}
	defer f.Close()
	ld.reader(path, f)
}

// reader adds entries read from r, one per line. As in postgrey, '#'
// starts a comment anywhere on a line, and blank lines and white space
// around an entry are ignored.
func (ld *loader) reader(name string, r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxLineBytes)
	line := 0
	for sc.Scan() {
		line++
		s := sc.Text()
		if i := strings.IndexByte(s, '#'); i >= 0 {
			s = s[:i]
		}
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		pos := fmt.Sprintf("%s:%d", name, line)
		if e, err := ld.parse(s); err != nil && ld.skip != nil {
			ld.skip(&EntryError{Pos: pos, List: ld.list, Entry: s, Err: err})
		} else if err != nil {
			ld.errs = append(ld.errs, &EntryError{Pos: pos, List: ld.list, Entry: s, Err: err})
		} else {
			ld.add(e)
		}
	}
	if err := sc.Err(); err != nil {
		ld.errs = append(ld.errs, fmt.Errorf("%s:%d: greylist: reading %s whitelist: %w", name, line+1, ld.list, err))
	}
}

func (ld *loader) one(pos, s string) {
	e, err := ld.parse(s)
	if err != nil {
		ld.errs = append(ld.errs, &EntryError{Pos: pos, List: ld.list, Entry: s, Err: err})
		return
	}
	ld.add(e)
}

// loadWhitelists reads the inline entries and files named in o. The error
// joins every bad entry and unreadable file.
func loadWhitelists(o Options) (*clientList, *recipientList, error) {
	clients, rcpts := newClientList(), newRecipientList()
	var skip func(error)
	if o.SkipBadFileLines && o.Log != nil {
		skip = func(err error) {
			o.Log.Warn("greylist: whitelist line skipped, as postgrey does; `mailwarden config check` names every such line", "err", err)
		}
	}
	cl := &loader{list: "client", parse: parseClientEntry, add: clients.add, skip: skip}
	cl.inline("whitelist_clients", o.WhitelistClients)
	for _, f := range o.WhitelistClientFiles {
		cl.file(f)
	}
	rl := &loader{list: "recipient", parse: parseRecipientEntry, add: rcpts.add, skip: skip}
	rl.inline("whitelist_recipients", o.WhitelistRecipients)
	for _, f := range o.WhitelistRecipientFiles {
		rl.file(f)
	}
	clients.nets = netset.New(clients.prefixes...)
	clients.prefixes = nil
	return clients, rcpts, errors.Join(append(cl.errs, rl.errs...)...)
}
