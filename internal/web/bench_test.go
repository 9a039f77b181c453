package web

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"mailwarden/internal/account"
	"mailwarden/internal/store"
)

// benchHosts and benchForgeries size a Day A outbreak in a district:
// every tenth trap host also sent a forgery and is latched.
const (
	benchHosts     = 2000
	benchForgeries = benchHosts / 10
)

// outbreak fills the fixture with trap hits, forgeries with their latch
// events, and mail logins.
func outbreak(b *testing.B) (*fixture, *client) {
	f := newFixture(b)
	at := f.now.Add(-time.Hour)
	for i := range benchHosts {
		ip := fmt.Sprintf("10.%d.%d.%d", 1+i%2, i/250, 1+i%250)
		f.trap(ip, at.Add(time.Duration(i)*time.Second), 1+i%40, "WORKSTATION-"+fmt.Sprint(i), "")
		if i%10 == 0 {
			f.forgery(ip, fmt.Sprintf("spam%d@forged.example", i), at.Add(time.Duration(i)*time.Second))
			f.mailLogin(ip, fmt.Sprintf("user%d", i), at)
		}
	}
	return f, f.login(adminName)
}

// BenchmarkPages times the pages an administrator keeps open on the bad
// day, over benchHosts suspect hosts.
func BenchmarkPages(b *testing.B) {
	f, c := outbreak(b)
	var ip string
	if ls := f.activeLatches(); len(ls) > 0 {
		ip = ls[0].Key
	} else {
		b.Fatal("no latched host in the fixture")
	}
	for _, p := range []struct{ name, path string }{
		{"overview", "/"},
		{"hosts", "/hosts"},
		{"hosts-rows-latched", "/hosts/rows?status=latched"},
		{"hosts-csv", "/hosts.csv"},
		{"host", "/hosts/" + ip},
		{"latches", "/latches"},
		{"events", "/events"},
	} {
		b.Run(p.name, func(b *testing.B) {
			for b.Loop() {
				if r := c.get(p.path); r.Code != http.StatusOK {
					b.Fatalf("GET %s: %d", p.path, r.Code)
				}
			}
		})
	}
}

// BenchmarkLogin times a login, dominated by bcrypt at the cost the
// user CLI stores (account.Cost), not the tests' minimum cost.
func BenchmarkLogin(b *testing.B) {
	f := newFixture(b)
	if err := f.st.DeleteUser(b.Context(), adminName); err != nil {
		b.Fatal(err)
	}
	h, err := hashForBench(password)
	if err != nil {
		b.Fatal(err)
	}
	if err := f.st.AddUser(b.Context(), store.User{Name: adminName, Role: store.RoleAdmin, Hash: h, Created: f.now}); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		f.login(adminName)
	}
}

func hashForBench(pw string) ([]byte, error) { return account.Hash(pw) }
