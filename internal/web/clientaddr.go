package web

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"mailwarden/internal/config"
)

// clientKey is the context key under which ServeHTTP keeps the client's
// address.
type clientKey struct{}

// maxForwardedHops bounds how many X-Forwarded-For entries are read, so a
// header of thousands of commas costs nothing.
const maxForwardedHops = 20

// clientAddr returns the address of the client behind a request that came
// from peer (host or host:port) with the X-Forwarded-For header lines xff.
//
// The header is read only when peer is one of the trusted proxies: anyone
// else could write any address into it and so escape the login throttle
// or blame another. Each proxy appends the address it received the
// request from, so the header is read from the right, past the addresses
// of trusted proxies; the first one outside them is the client. Were the
// client's address taken from the left, a client could choose it. An
// entry that is not an address ends the walk at the last trusted hop,
// which then stands for the client.
func clientAddr(peer string, xff []string, trusted []config.Prefix) string {
	if host, _, err := net.SplitHostPort(peer); err == nil {
		peer = host
	}
	addr, err := netip.ParseAddr(peer)
	if err != nil || !isTrusted(addr, trusted) {
		return peer
	}
	hops := 0
	for i := len(xff) - 1; i >= 0; i-- {
		entries := strings.Split(xff[i], ",")
		for j := len(entries) - 1; j >= 0; j-- {
			if hops++; hops > maxForwardedHops {
				return addr.String()
			}
			e := strings.TrimSpace(entries[j])
			if e == "" && len(entries) > 1 {
				continue // "a, , b": an empty element, not a hop
			}
			next, err := parseForwarded(e)
			if err != nil {
				return addr.String()
			}
			addr = next
			if !isTrusted(addr, trusted) {
				return addr.String()
			}
		}
	}
	// Every hop is a trusted proxy: the farthest one is the client.
	return addr.String()
}

// parseForwarded reads one X-Forwarded-For entry: an address, which some
// proxies write with a port ("192.0.2.1:4711", "[2001:db8::1]:4711").
func parseForwarded(e string) (netip.Addr, error) {
	if ap, err := netip.ParseAddrPort(e); err == nil {
		return ap.Addr().Unmap(), nil
	}
	a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(e, "["), "]"))
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, &net.ParseError{Type: "IP address", Text: e}
	}
	return a.Unmap(), nil
}

func isTrusted(a netip.Addr, trusted []config.Prefix) bool {
	a = a.Unmap()
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// withClient records r's client address (see clientAddr) in its context
// for clientIP, reading the trusted proxies from the live configuration.
func (s *Server) withClient(r *http.Request) *http.Request {
	ip := clientAddr(r.RemoteAddr, r.Header.Values("X-Forwarded-For"), s.webConfig().TrustedProxies)
	return r.WithContext(context.WithValue(r.Context(), clientKey{}, ip))
}

// clientIP returns the address of the client behind r: the one ServeHTTP
// found, or r's peer for a request that did not pass through it.
func clientIP(r *http.Request) string {
	if ip, ok := r.Context().Value(clientKey{}).(string); ok {
		return ip
	}
	return clientAddr(r.RemoteAddr, nil, nil)
}
