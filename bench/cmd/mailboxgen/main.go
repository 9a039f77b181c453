// Command mailboxgen writes a generated DirectAdmin mail tree for the
// mailbox benchmarks (bench/mailbox.sh): DOMAINS domains of BOXES real
// mailboxes each, their mail directories, and BOGUS planted mailboxes.
// It prints the tree's /etc/virtual and /home.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"mailwarden/internal/mailbox/mailboxtest"
)

func main() {
	dir := flag.String("dir", "", "write the tree under this `directory` (required)")
	domains := flag.Int("domains", 10000, "number of domains")
	boxes := flag.Int("boxes", 100, "real mailboxes per domain")
	bogus := flag.Int("bogus", 900, "planted mailboxes")
	seed := flag.Uint64("seed", 1, "random seed")
	flag.Parse()
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "mailboxgen: -dir is required")
		os.Exit(2)
	}
	start := time.Now()
	tr, err := mailboxtest.Generate(*dir, mailboxtest.Options{Domains: *domains, MinBoxes: *boxes, MaxBoxes: *boxes,
		MailDirs: true, Seed: *seed, UID: -1})
	if err == nil && *bogus > 0 {
		_, err = tr.Attack(mailboxtest.AttackOptions{Count: *bogus})
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mailboxgen:", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "mailboxgen: %d mailboxes on %d domains in %v\n", len(tr.Legit)+len(tr.Bogus), *domains, time.Since(start).Round(time.Millisecond))
	fmt.Println(tr.Root, tr.Home)
}
