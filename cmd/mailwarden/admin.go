package main

import (
	"strconv"
	"strings"
	"time"
	"unicode"
)

// adminTimeout bounds one admin command's conversation with the daemon.
const adminTimeout = 30 * time.Second

// localTime prints t in local time, or "-" when it is not set.
func localTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format(time.DateTime)
}

// when prints t in local time with how long ago (or how far ahead) it is.
func when(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	if d < 0 {
		return localTime(t) + " (in " + humanDuration(-d) + ")"
	}
	return localTime(t) + " (" + humanDuration(d) + " ago)"
}

// humanDuration rounds d to its two largest units: "45s", "2h5m", "3d4h".
func humanDuration(d time.Duration) string {
	switch {
	case d < time.Minute:
		return strconv.Itoa(int(d/time.Second)) + "s"
	case d < time.Hour:
		m, s := d/time.Minute, d%time.Minute/time.Second
		return twoUnits(int(m), "m", int(s), "s")
	case d < 24*time.Hour:
		h, m := d/time.Hour, d%time.Hour/time.Minute
		return twoUnits(int(h), "h", int(m), "m")
	}
	days, h := d/(24*time.Hour), d%(24*time.Hour)/time.Hour
	return twoUnits(int(days), "d", int(h), "h")
}

func twoUnits(a int, ua string, b int, ub string) string {
	if b == 0 {
		return strconv.Itoa(a) + ua
	}
	return strconv.Itoa(a) + ua + strconv.Itoa(b) + ub
}

// printableText is printable for free text in the last column of a table
// or a detail line: spaces are fine there, but control and other
// invisible characters (terminal escapes, bidi overrides) are quoted.
func printableText(s string) string {
	if strings.IndexFunc(s, func(r rune) bool { return r != ' ' && !unicode.IsPrint(r) }) >= 0 {
		return strconv.QuoteToASCII(s)
	}
	return s
}

// orDash shows an empty table cell as "-" so columns stay aligned.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
