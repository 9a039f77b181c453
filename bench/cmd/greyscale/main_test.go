package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestRunSQLite runs the whole program at two small sizes: every column
// is printed, the tenth of the triplets due expires, and the growth
// ratio is there.
func TestRunSQLite(t *testing.T) {
	var out, errOut bytes.Buffer
	args := []string{"-sizes", "1000,5000", "-k", "2,4", "-decisions", "400", "-dir", t.TempDir()}
	if code := run(context.Background(), args, &out, &errOut); code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut.String())
	}
	got := out.String()
	for _, want := range []string{"backend=sqlite", "insert/s", "k=4 p99", "db+wal", "B/entry", "expire took",
		"p99 ratio k=4: 5000 entries / 1000 entries = "} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	// A tenth expires at each size: 100 of 1,000 and 500 of 5,000.
	for _, row := range []string{"1000 ", "5000 "} {
		var line string
		for l := range strings.SplitSeq(got, "\n") {
			if strings.HasPrefix(strings.TrimSpace(l), row) {
				line = l
			}
		}
		want := map[string]string{"1000 ": " 100 ", "5000 ": " 500 "}[row]
		if !strings.Contains(line, want) {
			t.Errorf("row %q: %q does not show %q expired", row, line, want)
		}
	}
}

func TestRunUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"-backend", "mysql"},
		{"-sizes", "5000,1000"},
		{"-sizes", "0"},
		{"-k", "x"},
		{"-decisions", "10"},
		{"stray"},
	} {
		var out, errOut bytes.Buffer
		if code := run(context.Background(), args, &out, &errOut); code != 2 {
			t.Errorf("%q: exit %d, want 2 (stderr %q)", args, code, errOut.String())
		}
	}
}
