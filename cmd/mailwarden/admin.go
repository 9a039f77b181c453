package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"mailwarden/internal/human"
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
		return localTime(t) + " (in " + human.Duration(-d, "") + ")"
	}
	return localTime(t) + " (" + human.Duration(d, "") + " ago)"
}

// newTabWriter aligns columns as every table, detail list and help
// text of the command line does.
func newTabWriter(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
}

// printTable writes a header and one aligned row per item, or only
// ifEmpty when there are none; with ifEmpty "", an empty table is its
// header alone.
func printTable[T any](w io.Writer, items []T, ifEmpty, header string, row func(T) []string) {
	if len(items) == 0 && ifEmpty != "" {
		fmt.Fprintln(w, ifEmpty)
		return
	}
	tw := newTabWriter(w)
	fmt.Fprintln(tw, header)
	for _, it := range items {
		fmt.Fprintln(tw, strings.Join(row(it), "\t"))
	}
	tw.Flush()
}

// printDetails writes the "Key:  value" lines that lines adds, the
// values aligned; a line with the key "" continues the one above.
func printDetails(w io.Writer, lines func(line func(k, v string))) {
	tw := newTabWriter(w)
	lines(func(k, v string) {
		if k != "" {
			k += ":"
		}
		fmt.Fprintf(tw, "%s\t%s\n", k, v)
	})
	tw.Flush()
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
