package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"mailwarden/internal/adminapi"
)

// storeLines adds the store's lines to status: whether it can write, as
// the daemon's write probe last found, and the writes lost since the
// daemon started.
func storeLines(line func(k, v string), st *adminapi.StoreStatus, now time.Time) {
	if st == nil {
		return
	}
	backend := orDash(printable(st.Backend))
	if st.Up {
		line("Store", backend+", writing (checked "+checked(st.Checked, now)+")")
	} else {
		line("Store", backend+", CANNOT WRITE since "+when(st.Since, now)+": "+printableText(st.LastError))
	}
	for _, w := range st.Warnings {
		line("Store warning", printableText(w))
	}
	if st.LostWrites == 0 {
		return
	}
	v := strconv.FormatUint(st.LostWrites, 10) + " since the start"
	if by := lostByKind(st.WriteFailures); by != "" {
		v += " (" + by + ")"
	}
	if st.Up && st.LastError != "" {
		v += "; last store error " + when(st.LastErrorAt, now) + ": " + printableText(st.LastError)
	}
	line("Lost writes", v)
}

// storeWarning ends status with what to do while the store cannot write.
func storeWarning(w io.Writer, st *adminapi.StoreStatus) {
	if st == nil || st.Up {
		return
	}
	if st.Backend == "redis" {
		// Nothing is decided from memory with Redis: the checks in
		// fail_open (greylist by default) let mail through, the others
		// tempfail it.
		fmt.Fprintln(w, "\nSTORE CANNOT WRITE: Redis cannot be reached, is full, or has lost mailwarden's data. Checks in fail_open "+
			"(greylisting by default) let mail through; latches, freezes and the other checks tempfail it, and events "+
			"are not saved. Is redis-server running and reachable at store.url, below its maxmemory (an OOM error above), "+
			"and did it keep its data?")
		return
	}
	fmt.Fprintln(w, "\nSTORE CANNOT WRITE: mail is decided from memory, but new greylist triplets, events and latches "+
		"are not saved. Is the data directory's filesystem full, read-only, or its database file removed?")
}

// lostByKind prints the kinds with failures: "event=3 triplet=12".
func lostByKind(m map[string]uint64) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if m[k] > 0 {
			parts = append(parts, printable(k)+"="+strconv.FormatUint(m[k], 10))
		}
	}
	return strings.Join(parts, " ")
}
