package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"
)

// startDunno starts a policy server that answers DUNNO to everything.
func startDunno(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if line == "\n" {
						c.Write([]byte("action=DUNNO\n\n"))
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func TestRunPrintsOneLine(t *testing.T) {
	addr := startDunno(t)
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"policy", "-addr", addr, "-n", "50", "-c", "2"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut.String())
	}
	line := out.String()
	for _, want := range []string{"policy addr=" + addr, "c=2", "n=50 ", "rate=", "p99=", "verdicts=map[DUNNO:50]"} {
		if !strings.Contains(line, want) {
			t.Errorf("output %q lacks %q", line, want)
		}
	}
	if strings.Count(line, "\n") != 1 {
		t.Errorf("output is not one line: %q", line)
	}
}

func TestRunJSON(t *testing.T) {
	addr := startDunno(t)
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"policy", "-addr", addr, "-n", "20", "-c", "1", "-json"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut.String())
	}
	var r report
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("output %q is not JSON: %v", out.String(), err)
	}
	if r.Kind != "policy" || r.N != 20 || r.Verdicts["DUNNO"] != 20 || r.Rate <= 0 || r.P99ms <= 0 {
		t.Errorf("report = %+v", r)
	}
}

func TestRunUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		nil,
		{"smtp"},
		{"policy", "-n", "0"},
		{"milter", "-c", "0"},
		{"policy", "extra"},
	} {
		var out, errOut bytes.Buffer
		if code := run(context.Background(), args, &out, &errOut); code != 2 {
			t.Errorf("run(%q) = %d, want 2", args, code)
		}
		if out.Len() != 0 || errOut.Len() == 0 {
			t.Errorf("run(%q): stdout %q, stderr %q; want only an error", args, out.String(), errOut.String())
		}
	}
}

func TestRunNobodyListening(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"policy", "-addr", addr, "-n", "3", "-c", "1"}, &out, &errOut); code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if !strings.Contains(errOut.String(), "every attempt failed") {
		t.Errorf("stderr %q does not say every attempt failed", errOut.String())
	}
}
