package main

import (
	"flag"
	"fmt"
	"io"

	"mailwarden/internal/config"
	"mailwarden/internal/daemon"
)

func cmdConfig(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "check" {
		fmt.Fprint(stderr, "usage: mailwarden config check [--print] FILE\n")
		return 2
	}
	fs := flag.NewFlagSet("config check", flag.ContinueOnError)
	print := fs.Bool("print", false, "print the effective configuration, defaults included")
	pos, err := parseFlags(fs, args[1:], stderr)
	if err != nil {
		return 2
	}
	if err := wantArgs(pos, 1, "FILE"); err != nil {
		fmt.Fprintf(stderr, "mailwarden config check: %v\n", err)
		return 2
	}
	// The same loader and check construction as serve: whitelist files
	// are read and their entries parsed here too.
	cfg, err := config.Load(pos[0])
	if err == nil {
		err = daemon.Validate(cfg)
	}
	if err != nil {
		fmt.Fprintf(stderr, "%v\n", err)
		return 1
	}
	if *print {
		b, err := cfg.YAML()
		if err != nil {
			fmt.Fprintf(stderr, "mailwarden config check: %v\n", err)
			return 1
		}
		stdout.Write(b)
		return 0
	}
	fmt.Fprintf(stdout, "%s: OK\n", pos[0])
	return 0
}
