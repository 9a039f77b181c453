// Package mimepart walks a message's MIME structure (RFC 2045, RFC 2046)
// and hands each leaf part's decoded body to a callback, so that the
// antivirus check can recognise an attachment it has seen before. The
// message is attacker input: the walk streams, bounds depth, part count
// and header size, and refuses anything ambiguous with ErrMalformed
// rather than guessing, because its caller then scans the message whole.
package mimepart

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"net/textproto"
	"strings"
)

// ErrMalformed is returned for a message the walk does not take apart
// with certainty; ErrTooComplex for one over the Limits.
var (
	ErrMalformed  = errors.New("mimepart: malformed message")
	ErrTooComplex = errors.New("mimepart: message over the walk's limits")
)

// Limits bound a walk; zero fields take the defaults below.
type Limits struct {
	// MaxDepth is how deeply multiparts and message/rfc822 parts nest.
	MaxDepth int
	// MaxParts is how many parts, preambles and epilogues are handed
	// to the callback.
	MaxParts int
	// MaxHeader is the size of one part's header block in bytes.
	MaxHeader int
}

// Defaults for Limits left zero.
const (
	DefaultMaxDepth  = 8
	DefaultMaxParts  = 100
	DefaultMaxHeader = 64 << 10
	// maxAside bounds a non-blank preamble or epilogue, which is held in
	// memory to learn whether it is blank.
	maxAside = 16 << 10
	// bufSize is the line buffer of each part and nesting level, made
	// for every message scanned: small, since longer lines are read in
	// pieces and a delimiter line is under 100 bytes (RFC 2046 §5.1.1).
	bufSize = 4 << 10
)

// Part is one leaf of the walk.
type Part struct {
	// Index counts the parts in walk order from 0.
	Index int
	// Type is the lowercased media type; "preamble" and "epilogue"
	// name the text around a multipart's parts when it is not blank.
	Type string
	// Depth is 0 for the body of a message that is not multipart.
	Depth int
}

// Walk calls fn with each leaf part of the message read from r and a
// reader of its decoded body. fn need not read the body to its end; an
// error from fn stops the walk and is returned. A decoding error shows
// up as an error from the body reader, which fn should return.
func Walk(r io.Reader, lim Limits, fn func(Part, io.Reader) error) (err error) {
	defer func() {
		// A bug here must cost a whole-message scan, not the daemon.
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: walk panicked: %v", ErrMalformed, p)
		}
	}()
	if lim.MaxDepth <= 0 {
		lim.MaxDepth = DefaultMaxDepth
	}
	if lim.MaxParts <= 0 {
		lim.MaxParts = DefaultMaxParts
	}
	if lim.MaxHeader <= 0 {
		lim.MaxHeader = DefaultMaxHeader
	}
	w := &walker{lim: lim, fn: fn}
	return w.entity(bufio.NewReaderSize(r, bufSize), 0, "text/plain")
}

type walker struct {
	lim   Limits
	fn    func(Part, io.Reader) error
	parts int
}

// entity walks one header block and the body after it, read from br;
// deflt is the media type when Content-Type is absent (RFC 2045 §5.2).
func (w *walker) entity(br *bufio.Reader, depth int, deflt string) error {
	if depth > w.lim.MaxDepth {
		return fmt.Errorf("%w: nested deeper than %d", ErrTooComplex, w.lim.MaxDepth)
	}
	h, err := readHeader(br, w.lim.MaxHeader)
	if err != nil {
		return err
	}
	mediatype, params, cte, err := contentType(h, deflt)
	if err != nil {
		return err
	}
	switch {
	case strings.HasPrefix(mediatype, "multipart/"):
		if cte != "" && cte != "7bit" && cte != "8bit" && cte != "binary" {
			// RFC 2045 §6.4: a multipart is never encoded.
			return fmt.Errorf("%w: multipart with transfer encoding %q", ErrMalformed, cte)
		}
		b := params["boundary"]
		if b == "" || len(b) > 70 {
			return fmt.Errorf("%w: multipart boundary %q missing or over 70 characters", ErrMalformed, b)
		}
		return w.multipart(br, b, depth+1, mediatype == "multipart/digest")
	}
	body, err := decoder(cte, br)
	if err != nil {
		return err
	}
	if mediatype == "message/rfc822" {
		return w.entity(bufio.NewReaderSize(body, bufSize), depth+1, "text/plain")
	}
	return w.leaf(Part{Type: mediatype, Depth: depth}, body)
}

// leaf hands one part to fn and reads what fn left of it.
func (w *walker) leaf(p Part, body io.Reader) error {
	if w.parts >= w.lim.MaxParts {
		return fmt.Errorf("%w: more than %d parts", ErrTooComplex, w.lim.MaxParts)
	}
	p.Index = w.parts
	w.parts++
	if err := w.fn(p, body); err != nil {
		return err
	}
	_, err := io.Copy(io.Discard, body)
	return err
}

// multipart walks a multipart body (RFC 2046 §5.1.1). A preamble or
// epilogue that is not blank is handed to fn like a part: the walk never
// leaves bytes of the message unaccounted for.
func (w *walker) multipart(br *bufio.Reader, boundary string, depth int, digest bool) error {
	sp := &splitter{br: br, dash: []byte("--" + boundary), lineStart: true}
	if err := w.aside(sp.section(), "preamble", depth); err != nil {
		return err
	}
	deflt := "text/plain"
	if digest {
		deflt = "message/rfc822" // RFC 2046 §5.1.5
	}
	for !sp.closed {
		if sp.eof {
			return fmt.Errorf("%w: multipart without its closing boundary", ErrMalformed)
		}
		sec := sp.section()
		if err := w.entity(bufio.NewReaderSize(sec, bufSize), depth, deflt); err != nil {
			return err
		}
		// A part's reader may stop before its section's end, at a
		// base64 pad for one: the rest must still be read.
		if _, err := io.Copy(io.Discard, sec); err != nil {
			return err
		}
	}
	return w.aside(br, "epilogue", depth)
}

// aside reads a preamble or epilogue and hands it to fn when it is not
// blank.
func (w *walker) aside(r io.Reader, what string, depth int) error {
	b, err := io.ReadAll(io.LimitReader(r, maxAside+1))
	if err != nil {
		return err
	}
	if len(b) > maxAside {
		return fmt.Errorf("%w: %s over %d bytes", ErrTooComplex, what, maxAside)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil
	}
	return w.leaf(Part{Type: what, Depth: depth}, bytes.NewReader(b))
}

// readHeader reads a header block up to and including the empty line
// that ends it, or to the end of br.
func readHeader(br *bufio.Reader, limit int) (textproto.MIMEHeader, error) {
	var raw []byte
	for {
		line, err := br.ReadSlice('\n')
		raw = append(raw, line...)
		if len(raw) > limit {
			return nil, fmt.Errorf("%w: header over %d bytes", ErrTooComplex, limit)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if len(line) == 1 || (len(line) == 2 && line[0] == '\r') {
			break
		}
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		return textproto.MIMEHeader{}, nil
	}
	if !bytes.HasSuffix(raw, []byte("\n")) {
		raw = append(raw, '\n')
	}
	raw = append(raw, '\n')
	// Sized to the header, which is all it reads.
	h, err := textproto.NewReader(bufio.NewReaderSize(bytes.NewReader(raw), len(raw))).ReadMIMEHeader()
	if err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrMalformed, err)
	}
	return h, nil
}

// contentType returns the media type, its parameters and the transfer
// encoding, lowercased. A field given twice is malformed: two readers
// of the message could each pick a different one.
func contentType(h textproto.MIMEHeader, deflt string) (string, map[string]string, string, error) {
	ct, cte := h.Values("Content-Type"), h.Values("Content-Transfer-Encoding")
	if len(ct) > 1 || len(cte) > 1 {
		return "", nil, "", fmt.Errorf("%w: Content-Type or Content-Transfer-Encoding given twice", ErrMalformed)
	}
	enc := ""
	if len(cte) == 1 {
		enc = strings.ToLower(strings.TrimSpace(cte[0]))
	}
	if len(ct) == 0 || strings.TrimSpace(ct[0]) == "" {
		return deflt, nil, enc, nil
	}
	mt, params, err := mime.ParseMediaType(ct[0])
	if err != nil {
		return "", nil, "", fmt.Errorf("%w: Content-Type %q: %v", ErrMalformed, ct[0], err)
	}
	return mt, params, enc, nil
}

// decoder returns a reader of r decoded from transfer encoding cte.
func decoder(cte string, r io.Reader) (io.Reader, error) {
	switch cte {
	case "", "7bit", "8bit", "binary":
		return r, nil
	case "base64":
		return base64.NewDecoder(base64.StdEncoding, r), nil
	case "quoted-printable":
		return quotedprintable.NewReader(r), nil
	}
	return nil, fmt.Errorf("%w: unknown transfer encoding %q", ErrMalformed, cte)
}

// Summary is a leaf part's decoded size and SHA-256.
type Summary struct {
	Part
	Size int64
	Hash [sha256.Size]byte
}

// Summarise walks the message read from r and returns every leaf part's
// decoded size and hash.
func Summarise(r io.Reader, lim Limits) ([]Summary, error) {
	var out []Summary
	buf := make([]byte, bufSize) // io.Copy would make one per part
	err := Walk(r, lim, func(p Part, body io.Reader) error {
		h := sha256.New()
		n, err := io.CopyBuffer(h, body, buf)
		if err != nil {
			return fmt.Errorf("%w: part %d (%s): %v", ErrMalformed, p.Index, p.Type, err)
		}
		s := Summary{Part: p, Size: n}
		h.Sum(s.Hash[:0])
		out = append(out, s)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// errFound stops a walk at the part Open wants.
var errFound = errors.New("mimepart: part found")

// Open returns a reader of the decoded body of the part with the given
// index in the message open returns, walking it afresh; the caller
// closes it.
func Open(open func() (io.ReadCloser, error), index int, lim Limits) (io.ReadCloser, error) {
	rc, err := open()
	if err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	go func() {
		defer rc.Close()
		var err error
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("mimepart: reading part %d panicked: %v", index, p)
			}
			pw.CloseWithError(err)
		}()
		err = Walk(rc, lim, func(p Part, body io.Reader) error {
			if p.Index != index {
				return nil
			}
			if _, err := io.Copy(pw, body); err != nil {
				return err
			}
			return errFound
		})
		switch {
		case errors.Is(err, errFound):
			err = nil
		case err == nil:
			err = fmt.Errorf("mimepart: no part %d in the message", index)
		}
	}()
	return pr, nil
}
