package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"

	"mailwarden/internal/adminapi"
	"mailwarden/internal/avstatus"
	"mailwarden/internal/human"
)

// statusCmd prints a one-look report on the running daemon: version,
// uptime, freezes, latches, whether the store can write and each
// clamd's health and signature age.
// Stale signatures are reported, not failed on: exit status 0 unless
// the daemon cannot be asked.
var statusCmd = askCmd(func(ctx context.Context, cl *adminapi.Client, _ []string) (adminapi.Status, error) {
	return cl.Status(ctx)
}, printStatus)

func printStatus(w io.Writer, st adminapi.Status, now time.Time) {
	av := st.Antivirus
	printDetails(w, func(line func(k, v string)) {
		line("Version", orDash(printable(st.Version)))
		if st.Started.IsZero() {
			line("Uptime", "-")
		} else {
			line("Uptime", human.Duration(time.Duration(st.UptimeSeconds)*time.Second, "")+" (since "+localTime(st.Started)+")")
		}
		if st.StateError != "" {
			line("Freezes", "UNKNOWN: "+printableText(st.StateError))
		} else if len(st.Freezes) == 0 {
			line("Freezes", "none")
		}
		for i, f := range st.Freezes {
			k := "Freezes"
			if i > 0 {
				k = ""
			}
			v := printableText(adminapi.DescribeScope(f.Scope, f.Value)) + ", since " + when(f.Since, now) + " by " + printable(f.By)
			if f.Note != "" {
				v += ": " + printableText(f.Note)
			}
			line(k, v)
		}
		if st.StateError != "" {
			line("Active latches", "UNKNOWN")
		} else {
			line("Active latches", strconv.Itoa(st.ActiveLatches))
		}
		storeLines(line, st.Store, now)
		switch {
		case !av.Enabled:
			line("Antivirus", "disabled")
		case av.SignatureMaxAgeSeconds > 0:
			line("Antivirus", "enabled, signatures stale after "+maxAge(av))
		default:
			line("Antivirus", "enabled, no signature age limit")
		}
	})
	defer storeWarning(w, st.Store)
	if len(av.Servers) == 0 {
		return
	}
	fmt.Fprintln(w)
	printTable(w, av.Servers, "", "CLAMD\tSTATUS\tENGINE\tSIGNATURES\tCHECKED\tLAST ERROR", func(s adminapi.ClamdServer) []string {
		return []string{printable(s.Addr), serverState(s),
			orDash(printableText(s.Engine)), signatures(s), checked(s.Checked, now), orDash(printableText(s.LastError))}
	})
	if slices.ContainsFunc(av.Servers, func(s adminapi.ClamdServer) bool { return s.Stale }) {
		fmt.Fprintf(w, "\nSTALE: signatures older than %s (antivirus.signature_max_age): is freshclam running, and can it reach its mirrors?\n",
			maxAge(av))
	}
}

// maxAge prints the signature age limit as the config writes it.
func maxAge(av adminapi.AntivirusStatus) string {
	return avstatus.FormatLimit(time.Duration(av.SignatureMaxAgeSeconds) * time.Second)
}

func serverState(s adminapi.ClamdServer) string {
	switch {
	case s.Up:
		return "up"
	case s.Checked.IsZero():
		return "unchecked"
	}
	return "down"
}

// signatures says "27463 of 2026-11-18 08:24 (3d4h ago)", with STALE
// when they are over the limit.
func signatures(s adminapi.ClamdServer) string {
	if s.SignatureVersion == 0 && s.SignatureDate.IsZero() {
		return "-"
	}
	v := "unknown version"
	if s.SignatureVersion != 0 {
		v = strconv.Itoa(s.SignatureVersion)
	}
	if !s.SignatureDate.IsZero() {
		v += " of " + s.SignatureDate.Local().Format("2006-01-02 15:04")
		if age := time.Duration(s.SignatureAgeSeconds) * time.Second; age >= 0 {
			v += " (" + human.Duration(age, "") + " ago)"
		} else {
			v += " (ahead of the daemon's clock)"
		}
	}
	if s.Stale {
		v += " STALE"
	}
	return v
}

// checked says how long ago a health check saw the server.
func checked(t, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return human.Duration(max(now.Sub(t), 0), "") + " ago"
}
