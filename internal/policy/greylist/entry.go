package greylist

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"regexp/syntax"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// This file parses single whitelist entries in postgrey's formats
// (postgrey(8), "Whitelists"; read_clients_whitelists and
// read_recipients_whitelists in postgrey 1.3x). Where postgrey would
// silently keep an entry that can never match, the entry is an error here
// so the operator learns about it.

// entryKind says how an entry matches.
type entryKind int

const (
	kindRegexp     entryKind = iota // /regexp/, case-insensitive, unanchored
	kindDomain                      // example.com: the domain and its subdomains
	kindSubdomains                  // .example.com: subdomains only (Postfix access(5))
	kindNetwork                     // client IP address or network
	kindUser                        // postmaster@: local part at any domain
	kindAddress                     // user@example.com: that address
	kindAtDomain                    // @example.com: any local part at exactly that domain
)

// entry is one parsed whitelist entry. text is the entry as written,
// for log reasons.
type entry struct {
	kind   entryKind
	text   string
	re     *regexp.Regexp
	domain string       // kindDomain, kindSubdomains, kindAddress, kindAtDomain
	user   string       // kindUser, kindAddress
	prefix netip.Prefix // kindNetwork
}

// parseRegexp parses "/body/" in postgrey's sense: the body is matched
// case-insensitively and unanchored. ok is false if s is not a regexp.
func parseRegexp(s string) (e entry, ok bool, err error) {
	if len(s) < 2 || s[0] != '/' || s[len(s)-1] != '/' {
		return entry{}, false, nil
	}
	body := s[1 : len(s)-1]
	if body == "" {
		return entry{}, true, errors.New("empty regexp")
	}
	re, err := regexp.Compile("(?i)" + body)
	if err != nil {
		// Postgrey's regexps are Perl's. RE2 lacks look-around and
		// back-references; say so when that is the likely cause.
		var se *syntax.Error
		if errors.As(err, &se) && (se.Code == syntax.ErrInvalidPerlOp || se.Code == syntax.ErrInvalidEscape) {
			return entry{}, true, fmt.Errorf("not a Go RE2 regexp (Perl look-around and back-references are not supported): %w", err)
		}
		return entry{}, true, fmt.Errorf("not a valid regexp: %w", err)
	}
	return entry{kind: kindRegexp, text: s, re: re}, true, nil
}

// parseClientEntry parses one client whitelist entry: a /regexp/ or a
// domain name matched against the client's hostname, or an IP address,
// a CIDR network, or a partial IPv4 address ("10.1.2", "192.168.")
// matched against the client's address.
func parseClientEntry(s string) (entry, error) {
	if e, ok, err := parseRegexp(s); ok {
		return e, err
	}
	if i := strings.IndexFunc(s, unicode.IsSpace); i >= 0 {
		return entry{}, errors.New("contains white space")
	}
	switch {
	case strings.HasPrefix(s, "/"):
		return entry{}, errors.New("starts with / but does not end with /, as a /regexp/ must")
	case strings.Contains(s, "/"):
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return entry{}, fmt.Errorf("not a CIDR network: %w", err)
		}
		return entry{kind: kindNetwork, text: s, prefix: p.Masked()}, nil
	case strings.Contains(s, ":"):
		a, err := netip.ParseAddr(s)
		if err != nil {
			return entry{}, fmt.Errorf("not an IPv6 address (write a network as ADDRESS/BITS): %w", err)
		}
		if a.Zone() != "" {
			return entry{}, errors.New("an IPv6 zone is not allowed")
		}
		return entry{kind: kindNetwork, text: s, prefix: netip.PrefixFrom(a, a.BitLen())}, nil
	case strings.Trim(s, "0123456789.") == "":
		p, err := parsePartialIPv4(s)
		if err != nil {
			return entry{}, err
		}
		return entry{kind: kindNetwork, text: s, prefix: p}, nil
	}
	return parseDomainEntry(s)
}

// parsePartialIPv4 parses one to four dotted decimal octets, with an
// optional trailing dot, as the network they start: postgrey compares
// "10.1.2" with the client address up to an octet boundary, which is
// 10.1.2.0/24.
func parsePartialIPv4(s string) (netip.Prefix, error) {
	parts := strings.Split(strings.TrimSuffix(s, "."), ".")
	if len(parts) > 4 {
		return netip.Prefix{}, errors.New("an IPv4 address has at most four numbers")
	}
	var b [4]byte
	for i, part := range parts {
		if part == "" {
			return netip.Prefix{}, errors.New("empty number in IPv4 address")
		}
		if len(part) > 1 && part[0] == '0' {
			return netip.Prefix{}, fmt.Errorf("number %q has a leading zero", part)
		}
		n, err := strconv.Atoi(part)
		if err != nil || n > 255 {
			return netip.Prefix{}, fmt.Errorf("number %q is not between 0 and 255", part)
		}
		b[i] = byte(n)
	}
	return netip.PrefixFrom(netip.AddrFrom4(b), 8*len(parts)), nil
}

// parseDomainEntry parses "example.com" (the domain and its subdomains)
// or ".example.com" (subdomains only).
func parseDomainEntry(s string) (entry, error) {
	kind, name := kindDomain, s
	if rest, ok := strings.CutPrefix(s, "."); ok {
		kind, name = kindSubdomains, rest
	}
	d, err := checkDomain(name)
	if err != nil {
		return entry{}, err
	}
	return entry{kind: kind, text: s, domain: d}, nil
}

// checkDomain validates a domain name and returns it lowercased without
// a trailing dot. Underscores and UTF-8 letters are allowed because
// hostnames in the wild and SMTPUTF8 domains (RFC 6531) contain them.
func checkDomain(s string) (string, error) {
	d := strings.ToLower(strings.TrimSuffix(s, "."))
	if d == "" {
		return "", errors.New("empty domain name")
	}
	if !utf8.ValidString(d) {
		return "", errors.New("not valid UTF-8")
	}
	if len(d) > 253 {
		return "", errors.New("domain name longer than 253 characters")
	}
	for label := range strings.SplitSeq(d, ".") {
		if label == "" {
			return "", errors.New("empty label in domain name")
		}
		if len(label) > 63 {
			return "", errors.New("domain label longer than 63 characters")
		}
		for _, r := range label {
			switch {
			case r == '*':
				return "", errors.New("wildcards are not supported; a domain entry already matches its subdomains, or use a /regexp/")
			case r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z':
			case r >= utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r)):
			default:
				return "", fmt.Errorf("character %q is not allowed in a domain name", r)
			}
		}
	}
	return d, nil
}

// parseRecipientEntry parses one recipient whitelist entry (postfix
// access(5) style, as postgrey reads it): "user@" (at any domain),
// "user@domain", "@domain" (any local part at exactly that domain),
// "domain" (the domain and its subdomains), ".domain" (subdomains only)
// or a /regexp/ matched against the whole address. A user entry also
// matches address extensions: "user@" matches "user+tag@example.com".
func parseRecipientEntry(s string) (entry, error) {
	if e, ok, err := parseRegexp(s); ok {
		return e, err
	}
	if i := strings.IndexFunc(s, unicode.IsSpace); i >= 0 {
		return entry{}, errors.New("contains white space")
	}
	if strings.HasPrefix(s, "/") {
		return entry{}, errors.New("starts with / but does not end with /, as a /regexp/ must")
	}
	user, domain, hasAt := strings.Cut(s, "@")
	if !hasAt {
		return parseDomainEntry(s)
	}
	if user != "" {
		if err := checkLocalPart(user); err != nil {
			return entry{}, err
		}
	}
	switch {
	case user == "" && domain == "":
		return entry{}, errors.New("neither a local part nor a domain")
	case domain == "":
		return entry{kind: kindUser, text: s, user: strings.ToLower(user)}, nil
	}
	d, err := checkDomain(domain)
	if err != nil {
		return entry{}, err
	}
	if user == "" {
		return entry{kind: kindAtDomain, text: s, domain: d}, nil
	}
	return entry{kind: kindAddress, text: s, user: strings.ToLower(user), domain: d}, nil
}

// checkLocalPart rejects local parts no envelope address can have.
func checkLocalPart(s string) error {
	if !utf8.ValidString(s) {
		return errors.New("local part is not valid UTF-8")
	}
	for _, r := range s {
		if r < ' ' || r == 0x7f || r == '/' {
			return fmt.Errorf("character %q is not allowed in a local part", r)
		}
	}
	return nil
}

// EntryError is one invalid whitelist entry.
type EntryError struct {
	Pos   string // "FILE:LINE", or "whitelist_clients[3]" for inline entries
	List  string // "client" or "recipient"
	Entry string // the entry as written, without comment and white space
	Err   error  // why it is invalid
}

// Error renders "POS: greylist: invalid KIND whitelist entry "ENTRY": REASON".
func (e *EntryError) Error() string {
	return fmt.Sprintf("%s: greylist: invalid %s whitelist entry %s: %v",
		e.Pos, e.List, quoteEntry(e.Entry), e.Err)
}

// quoteEntry quotes s for an error message. Printable entries are shown
// as written, so a regexp keeps single backslashes; others are escaped.
func quoteEntry(s string) string {
	if utf8.ValidString(s) && !strings.ContainsFunc(s, func(r rune) bool { return r == '"' || !unicode.IsPrint(r) }) {
		return `"` + s + `"`
	}
	return strconv.Quote(s)
}

// Unwrap returns the reason.
func (e *EntryError) Unwrap() error { return e.Err }
