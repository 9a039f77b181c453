package spool

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func newSpool(t *testing.T, memory int64) *Spool {
	t.Helper()
	s, err := New(filepath.Join(t.TempDir(), "spool"), memory)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func spoolFiles(t *testing.T, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, FilePrefix+"*"))
	if err != nil {
		t.Fatal(err)
	}
	return names
}

func readAll(t *testing.T, m *Message) []byte {
	t.Helper()
	r, err := m.Open()
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("reading: %v", err)
	}
	return b
}

// writeChunks writes data in pieces of varying size, as milter body
// chunks and header fields arrive.
func writeChunks(t *testing.T, m *Message, data []byte) {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	for len(data) > 0 {
		k := min(len(data), 1+rng.IntN(70000))
		if n, err := m.Write(data[:k]); err != nil || n != k {
			t.Fatalf("Write(%d bytes) = %d, %v", k, n, err)
		}
		data = data[k:]
	}
}

func TestNewCreatesPrivateDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "spool")
	if _, err := New(dir, 1024); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o700 {
		t.Errorf("spool directory mode = %o, want 700", perm)
	}
}

func TestNewRefusesBadSettings(t *testing.T) {
	if _, err := New("relative/spool", 1024); err == nil {
		t.Error("relative directory accepted")
	}
	if _, err := New(t.TempDir(), 0); err == nil {
		t.Error("zero memory threshold accepted")
	}
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o600)
	if _, err := New(file, 1024); err == nil {
		t.Error("a regular file accepted as spool directory")
	}
}

func TestSmallMessageStaysInMemory(t *testing.T) {
	s := newSpool(t, 1024)
	m := s.NewMessage()
	defer m.Close()
	msg := []byte("Subject: hi\r\n\r\nhello\r\n")
	writeChunks(t, m, msg)
	if m.Spilled() || len(spoolFiles(t, s.Dir())) != 0 {
		t.Error("a message under the threshold went to disk")
	}
	if got := readAll(t, m); !bytes.Equal(got, msg) {
		t.Errorf("read %q, want %q", got, msg)
	}
	if m.Size() != int64(len(msg)) {
		t.Errorf("Size = %d, want %d", m.Size(), len(msg))
	}
}

func TestLargeMessageSpillsAndReadsBackExactly(t *testing.T) {
	s := newSpool(t, 64<<10)
	m := s.NewMessage()
	data := make([]byte, 5<<20)
	rand.NewChaCha8([32]byte{3, 4}).Read(data)
	writeChunks(t, m, data)

	if !m.Spilled() {
		t.Fatal("5 MB message with a 64 KB threshold did not spill")
	}
	if len(m.mem) > 64<<10 || cap(m.mem) > 64<<10 {
		t.Errorf("memory part holds len %d cap %d, over the 64 KiB threshold", len(m.mem), cap(m.mem))
	}
	files := spoolFiles(t, s.Dir())
	if len(files) != 1 {
		t.Fatalf("spool files = %v, want one", files)
	}
	fi, err := os.Stat(files[0])
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("spool file mode = %o, want 600", perm)
	}
	if m.Size() != int64(len(data)) {
		t.Errorf("Size = %d, want %d", m.Size(), len(data))
	}
	// Every Open starts over: a scan that fails over to a second clamd
	// sends the message again.
	for i := range 2 {
		if got := readAll(t, m); !bytes.Equal(got, data) {
			t.Fatalf("read %d: %d bytes differ from the %d written", i, len(got), len(data))
		}
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if files := spoolFiles(t, s.Dir()); len(files) != 0 {
		t.Errorf("Close left %v", files)
	}
	if _, err := m.Open(); !errors.Is(err, ErrClosed) {
		t.Errorf("Open after Close: %v, want ErrClosed", err)
	}
	if err := m.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestReadersAreIndependent(t *testing.T) {
	s := newSpool(t, 10)
	m := s.NewMessage()
	defer m.Close()
	msg := []byte(strings.Repeat("0123456789", 100))
	writeChunks(t, m, msg)
	r1, _ := m.Open()
	r2, _ := m.Open()
	a := make([]byte, 25)
	io.ReadFull(r1, a)
	rest2, _ := io.ReadAll(r2)
	rest1, _ := io.ReadAll(r1)
	if got := append(a, rest1...); !bytes.Equal(got, msg) || !bytes.Equal(rest2, msg) {
		t.Error("interleaved readers did not each see the whole message")
	}
}

func TestEmptyMessage(t *testing.T) {
	m := newSpool(t, 10).NewMessage()
	defer m.Close()
	if got := readAll(t, m); len(got) != 0 || m.Size() != 0 {
		t.Errorf("empty message reads %q, size %d", got, m.Size())
	}
}

// TestSpillFailureIsSticky covers a spool directory that vanished: the
// message must not be readable as if it were whole.
func TestSpillFailureIsSticky(t *testing.T) {
	s := newSpool(t, 8)
	m := s.NewMessage()
	defer m.Close()
	os.RemoveAll(s.Dir())
	if _, err := m.Write([]byte("12345678")); err != nil {
		t.Fatalf("write within memory: %v", err)
	}
	if _, err := m.Write([]byte("9")); err == nil {
		t.Fatal("write past memory succeeded with no spool directory")
	}
	if _, err := m.Write([]byte("x")); err == nil {
		t.Error("a later write succeeded after a failure")
	}
	if m.Err() == nil {
		t.Error("Err is nil after a failed write")
	}
	if _, err := m.Open(); err == nil {
		t.Error("Open succeeded on a message with a missing piece")
	}
}

// TestWriteFailureOnDisk simulates a write to the spill file failing
// (a full disk) after the file was created.
func TestWriteFailureOnDisk(t *testing.T) {
	s := newSpool(t, 4)
	s.createTemp = func(dir, pattern string) (*os.File, error) {
		f, err := os.CreateTemp(dir, pattern)
		if err == nil {
			f.Close() // every write now fails
		}
		return f, err
	}
	m := s.NewMessage()
	// Small writes sit in the write buffer; the failure shows when it is
	// flushed, at the latest by Open.
	m.Write([]byte("abcdefgh"))
	w := bytes.Repeat([]byte("x"), 64<<10)
	m.Write(w)
	if _, err := m.Open(); err == nil {
		t.Fatal("Open succeeded although the spill file could not be written")
	}
	if m.Err() == nil {
		t.Error("Err is nil after a failed write")
	}
	if err := m.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if files := spoolFiles(t, s.Dir()); len(files) != 0 {
		t.Errorf("Close left %v", files)
	}
}

func TestCleanRemovesOnlyStaleSpoolFiles(t *testing.T) {
	dir := t.TempDir()
	old := time.Now().Add(-25 * time.Hour)
	write := func(name string, mtime time.Time) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		os.Chtimes(p, mtime, mtime)
		return p
	}
	stale := write(FilePrefix+"123", old)
	fresh := write(FilePrefix+"456", time.Now())
	other := write("keep-me", old)
	os.Mkdir(filepath.Join(dir, FilePrefix+"dir"), 0o700)

	n, err := Clean(dir)
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("removed %d files, want 1", n)
	}
	for p, want := range map[string]bool{stale: false, fresh: true, other: true} {
		if _, err := os.Stat(p); (err == nil) != want {
			t.Errorf("%s exists = %v, want %v", filepath.Base(p), err == nil, want)
		}
	}
	if n, err := Clean(filepath.Join(dir, "missing")); n != 0 || err != nil {
		t.Errorf("Clean of a missing dir = %d, %v", n, err)
	}
}

func BenchmarkSmallMessage(b *testing.B) {
	s, err := New(b.TempDir(), 1<<20)
	if err != nil {
		b.Fatal(err)
	}
	hdr := []byte("Subject: benchmark\r\n")
	body := bytes.Repeat([]byte("x"), 2048)
	for b.Loop() {
		m := s.NewMessage()
		for range 10 {
			m.Write(hdr)
		}
		m.Write(body)
		r, _ := m.Open()
		io.Copy(io.Discard, r)
		m.Close()
	}
}
