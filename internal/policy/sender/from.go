package sender

import (
	"io"
	"mime"
	"net/mail"
	"regexp"
	"strings"

	"mailwarden/internal/sites"
)

// fromParser reads addresses without decoding display names: only the
// addresses matter, and an encoded word in a charset Go does not know
// (windows-1252 is common) must not make a good From unreadable.
var fromParser = mail.AddressParser{WordDecoder: &mime.WordDecoder{
	CharsetReader: func(_ string, input io.Reader) (io.Reader, error) { return input, nil },
}}

// addrLike finds address-like words in a From value that net/mail could
// not parse.
var addrLike = regexp.MustCompile(`[^\s<>()\[\],;:"]+@[^\s<>()\[\],;:"]+`)

// FromDomains returns the lowercased domains of every address in a From
// header value: "Name <a@b>", a bare a@b, several mailboxes, a group
// (RFC 5322 §3.4). It reports false when no address can be read. A value
// net/mail refuses is searched for address-like words instead, and all of
// them count, so that a malformed header cannot hide a forged domain
// behind an allowed one.
func FromDomains(value string) ([]string, bool) {
	var domains []string
	if list, err := fromParser.ParseList(value); err == nil {
		for _, a := range list {
			domains = append(domains, domainOf(a.Address))
		}
	} else {
		for _, w := range addrLike.FindAllString(value, -1) {
			domains = append(domains, domainOf(w))
		}
	}
	if len(domains) == 0 {
		return nil, false
	}
	for _, d := range domains {
		if d == "" {
			return nil, false
		}
	}
	return domains, true
}

// domainOf returns the normalized domain of addr, "" if it has none.
func domainOf(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return ""
	}
	return sites.NormalizeDomain(addr[i+1:])
}
