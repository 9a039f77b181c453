package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/term"
)

// isTerminal reports whether r is a terminal a password can be typed on.
func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// promptPassword asks for name's new password twice on the terminal in,
// without echo, and refuses a mismatch. The prompts go to prompt
// (standard error), so standard output carries only the result.
func promptPassword(in *os.File, prompt io.Writer, name string) (string, error) {
	fd := int(in.Fd())
	// term.ReadPassword turns echo off and back on, but an interrupt in
	// between would end the process and leave the terminal silent; put it
	// back first.
	old, err := term.GetState(fd)
	if err != nil {
		return "", fmt.Errorf("reading the terminal state: %w", err)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	stop := make(chan struct{})
	defer func() {
		signal.Stop(sigs)
		close(stop)
	}()
	go func() {
		select {
		case <-sigs:
			_ = term.Restore(fd, old)
			fmt.Fprintln(prompt)
			os.Exit(130)
		case <-stop:
		}
	}()

	read := func(p string) (string, error) {
		fmt.Fprint(prompt, p)
		b, err := term.ReadPassword(fd)
		fmt.Fprintln(prompt)
		if err != nil {
			return "", fmt.Errorf("reading the password from the terminal: %w", err)
		}
		return string(b), nil
	}
	pw, err := read(fmt.Sprintf("New password for %s: ", name))
	if err != nil {
		return "", err
	}
	again, err := read("Repeat it: ")
	if err != nil {
		return "", err
	}
	if pw != again {
		return "", errors.New("the two passwords differ; nothing was changed")
	}
	return pw, nil
}
