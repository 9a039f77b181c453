// Command trapload floods mailwarden's worm trap on loopback the way an
// outbreak does: n connections from a set of 127.0.76.x source addresses,
// c at a time, each greeted, then HELO and MAIL FROM until the trap's
// 451 reply and close. It prints one line: the conversations completed
// per second and their latency.
//
//	trapload -addr 127.0.0.1:20025 -n 20000 -c 32 -hosts 50
//
// A conversation refused or cut short by the trap's per-address or total
// connection caps counts as an error, not a completion; the trap still
// records it as a hit.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:20025", "the trap's address")
	n := flag.Int("n", 20000, "connections in all")
	c := flag.Int("c", 32, "connections at a time")
	hosts := flag.Int("hosts", 50, "source addresses, 127.0.76.1 upward (at most 250)")
	flag.Parse()
	if *n < 1 || *c < 1 || *hosts < 1 || *hosts > 250 {
		fmt.Fprintln(os.Stderr, "trapload: -n, -c and -hosts must be positive, -hosts at most 250")
		os.Exit(2)
	}

	var next, errs atomic.Int64
	var firstErr atomic.Value
	lat := make([][]time.Duration, *c)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range *c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(*n) {
					return
				}
				src := fmt.Sprintf("127.0.76.%d", 1+int(i)%*hosts)
				t0 := time.Now()
				if err := converse(*addr, src, i); err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)

	all := slices.Concat(lat...)
	slices.Sort(all)
	q := func(p float64) time.Duration {
		if len(all) == 0 {
			return 0
		}
		return all[min(len(all)-1, int(p*float64(len(all))))]
	}
	fmt.Printf("n=%d ok=%d errors=%d elapsed=%.3fs rate=%.0f/s p50=%v p99=%v max=%v\n",
		*n, len(all), errs.Load(), elapsed.Seconds(), float64(len(all))/elapsed.Seconds(),
		q(0.50).Round(time.Microsecond), q(0.99).Round(time.Microsecond), q(1).Round(time.Microsecond))
	if e, ok := firstErr.Load().(string); ok {
		fmt.Fprintln(os.Stderr, "trapload: first error:", e)
	}
}

// converse runs one worm conversation from src and checks the trap's
// replies: 220, 250 to HELO, 451 to MAIL FROM (RFC 5321 §4.2.1).
func converse(addr, src string, i int64) error {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return fmt.Errorf("connecting from %s: %w", src, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	steps := []struct{ send, want string }{
		{"", "220"},
		{fmt.Sprintf("HELO pc%d.school.test\r\n", i), "250"},
		{fmt.Sprintf("MAIL FROM:<worm%d@school.test>\r\n", i), "451"},
	}
	for _, s := range steps {
		if s.send != "" {
			if _, err := conn.Write([]byte(s.send)); err != nil {
				return fmt.Errorf("sending %q from %s: %w", strings.TrimSpace(s.send), src, err)
			}
		}
		line, err := br.ReadString('\n')
		if err != nil {
			return fmt.Errorf("reading the reply from %s: %w", src, err)
		}
		if !strings.HasPrefix(line, s.want) {
			return fmt.Errorf("from %s: reply %q, want %s", src, strings.TrimSpace(line), s.want)
		}
	}
	return nil
}
