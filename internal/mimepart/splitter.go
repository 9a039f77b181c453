package mimepart

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// splitter cuts a multipart body into the sections between its boundary
// delimiter lines (RFC 2046 §5.1.1), streaming: one line buffer, however
// large the parts.
type splitter struct {
	br   *bufio.Reader
	dash []byte // "--" + boundary
	// lineStart is set when the next byte read starts a line.
	lineStart bool
	// closed is set after the close delimiter, eof at the end of input.
	closed, eof bool
}

// section returns a reader of the bytes up to the next delimiter line;
// the line break before the delimiter belongs to the delimiter.
func (s *splitter) section() *section { return &section{s: s} }

type section struct {
	s       *splitter
	pending []byte // a line break held back until the next line is read
	out     []byte // bytes ready for Read
	done    bool
}

func (c *section) Read(p []byte) (int, error) {
	for len(c.out) == 0 {
		if c.done {
			return 0, io.EOF
		}
		if err := c.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(p, c.out)
	c.out = c.out[n:]
	return n, nil
}

// fill reads the next line, or piece of a long line, into out.
func (c *section) fill() error {
	s := c.s
	if s.eof {
		c.done = true
		return nil
	}
	start := s.lineStart
	line, err := s.br.ReadSlice('\n')
	full := errors.Is(err, bufio.ErrBufferFull)
	switch {
	case err == io.EOF:
		s.eof = true
	case err != nil && !full:
		return err
	}
	if start && bytes.HasPrefix(line, s.dash) {
		rest := line[len(s.dash):]
		isClose := bytes.HasPrefix(rest, []byte("--"))
		if isClose {
			rest = rest[2:]
		}
		// Only transport padding may follow the boundary; a line that
		// merely starts with it is read as a boundary by some parsers
		// and not by others, and that difference is where a virus
		// would hide.
		if full || len(bytes.TrimRight(rest, " \t\r\n")) != 0 {
			return fmt.Errorf("%w: line starts with the boundary but is not a delimiter", ErrMalformed)
		}
		c.pending, c.done = nil, true
		s.closed = isClose
		s.lineStart = true
		return nil
	}
	c.out = append(c.out[:0], c.pending...)
	c.pending = c.pending[:0]
	s.lineStart = !full && len(line) > 0 && line[len(line)-1] == '\n'
	if s.lineStart {
		brk := 1
		if len(line) >= 2 && line[len(line)-2] == '\r' {
			brk = 2
		}
		c.out = append(c.out, line[:len(line)-brk]...)
		c.pending = append(c.pending, line[len(line)-brk:]...)
	} else {
		c.out = append(c.out, line...)
	}
	if s.eof {
		c.done = true
		c.out = append(c.out, c.pending...)
		c.pending = nil
	}
	return nil
}
