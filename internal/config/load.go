package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"mailwarden/internal/policy/greylist"
	"mailwarden/internal/typo"
)

// MaxFileSize bounds a configuration file. The full example with every
// key and comment is about 20 KiB; a file of megabytes is a mistake, and
// parsing one would take seconds and hundreds of megabytes.
const MaxFileSize = 1 << 20

// Load reads and parses the configuration file at path. Problems with the
// file's content are returned together as *Errors.
func Load(path string) (Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return Config{}, fmt.Errorf("config: loading: %w", err)
	}
	defer f.Close()
	// Read one byte past the bound to tell a file at the bound from a
	// larger one without reading all of a huge file.
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return Config{}, fmt.Errorf("config: loading: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes data on top of Default() and validates the result. name
// labels errors, usually the file path. Unknown keys, values of the wrong
// type and failed validations are all errors, reported together as
// *Errors with their line numbers. Empty data, or only comments, yields
// Default().
func Parse(name string, data []byte) (Config, error) {
	if len(data) > MaxFileSize {
		return Config{}, &Errors{File: name, List: []Error{{
			Msg: fmt.Sprintf("the file is larger than %d KiB; a configuration is a few KiB (is this the right file?)", MaxFileSize>>10)}}}
	}
	root, serr := parseDocument(data)
	if serr != nil {
		return Config{}, &Errors{File: name, List: []Error{*serr}}
	}
	cfg := Default()
	d := decoder{lines: map[string]int{}}
	if root != nil {
		d.value(root, reflect.ValueOf(&cfg).Elem(), "")
	}
	d.storeKind(&cfg)
	// A setting that failed to decode kept its default or zero value;
	// validating that as well would report the same mistake twice.
	failed := map[string]bool{}
	for _, e := range d.errs {
		failed[e.Key] = true
	}
	for _, e := range cfg.Validate() {
		if failed[e.Key] {
			continue
		}
		if e.Line == 0 {
			e.Line = d.line(e.Key)
		}
		d.errs = append(d.errs, e)
	}
	if len(d.errs) > 0 {
		sortErrors(d.errs)
		return Config{}, &Errors{File: name, List: d.errs}
	}
	return cfg, nil
}

// YAML renders c as a configuration file, for showing the effective
// configuration; Parse of the result yields c again.
func (c Config) YAML() ([]byte, error) {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(c); err != nil {
		return nil, fmt.Errorf("config: rendering YAML: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("config: rendering YAML: %w", err)
	}
	return b.Bytes(), nil
}

// parseDocument returns the root node of the only YAML document in data,
// or nil when data holds no document. A syntax error is returned with
// the line it was found on.
func parseDocument(data []byte) (*yaml.Node, *Error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		e := syntaxError(data, err)
		return nil, &e
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		e := syntaxError(data, err)
		return nil, &e
	default:
		return nil, &Error{Line: extra.Line, Msg: "a second YAML document (---) is not allowed; put all settings in one document"}
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	return doc.Content[0], nil
}

// maxSearch bounds the file size for which syntaxError searches for the
// exact line of a syntax error.
const maxSearch = 1 << 20

// yamlLine matches the location yaml.v3 puts in front of syntax errors.
var yamlLine = regexp.MustCompile(`^line (\d+): `)

// syntaxError turns a yaml.v3 parse error into an Error with the line
// the problem is on. yaml.v3 reports the start of the enclosing block,
// sometimes off by one, and no line at all for problems on line 1; so
// the line is found again as the shortest run of leading lines that
// fails with the same message.
func syntaxError(data []byte, err error) Error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = msg[len(m[0]):]
	}
	lines := splitLines(data)
	// Each try parses a prefix again; past a size no real configuration
	// has, keep yaml.v3's line rather than spend quadratic time.
	if len(data) <= maxSearch {
		end := 0
		for k := range lines {
			end += len(lines[k])
			if k+1 < line {
				continue
			}
			if parseError(data[:end]) == msg {
				line = k + 1
				break
			}
		}
	}
	if line > 0 && line <= len(lines) {
		l := lines[line-1]
		indent := l[:len(l)-len(bytes.TrimLeft(l, " \t"))]
		if bytes.IndexByte(indent, '\t') >= 0 && !strings.Contains(msg, "tab") {
			msg += " (a tab is used for indentation; YAML allows only spaces)"
		}
	}
	return Error{Line: line, Msg: "invalid YAML: " + msg}
}

// splitLines splits data after each line break as YAML counts them
// (YAML 1.2 §5.4): LF, CR LF, a lone CR, and for yaml.v3 also NEL, LS
// and PS.
func splitLines(data []byte) [][]byte {
	var lines [][]byte
	start := 0
	for i := 0; i < len(data); i++ {
		n := 0
		switch {
		case data[i] == '\n':
			n = 1
		case data[i] == '\r':
			n = 1
			if i+1 < len(data) && data[i+1] == '\n' {
				n = 2
			}
		case bytes.HasPrefix(data[i:], []byte("\u0085")):
			n = 2
		case bytes.HasPrefix(data[i:], []byte("\u2028")),
			bytes.HasPrefix(data[i:], []byte("\u2029")):
			n = 3
		}
		if n > 0 {
			lines = append(lines, data[start:i+n])
			i += n - 1
			start = i + 1
		}
	}
	if start < len(data) {
		lines = append(lines, data[start:])
	}
	return lines
}

// parseError returns the message of the first syntax error in data, with
// no location, or "" when data parses.
func parseError(data []byte) string {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return ""
		}
		if err != nil {
			msg := strings.TrimPrefix(err.Error(), "yaml: ")
			if m := yamlLine.FindStringSubmatch(msg); m != nil {
				msg = msg[len(m[0]):]
			}
			return msg
		}
	}
}

// decoder applies a YAML node tree to a Config by reflection over the
// yaml struct tags, collecting every error instead of stopping at the
// first, and remembering the line each key was set on.
type decoder struct {
	errs  []Error
	lines map[string]int // dotted key path -> line it is set on
}

var unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()

func (d *decoder) errorf(n *yaml.Node, key, format string, args ...any) {
	d.errs = append(d.errs, Error{Line: n.Line, Key: key, Msg: fmt.Sprintf(format, args...)})
}

// line returns the line key was set on, or that of the nearest enclosing
// key that was, so that a problem with a default value inside a section
// the file has points at that section.
func (d *decoder) line(key string) int {
	for key != "" {
		if l, ok := d.lines[key]; ok {
			return l
		}
		i := strings.LastIndexAny(key, ".[")
		if i < 0 {
			break
		}
		key = key[:i]
	}
	return 0
}

// value decodes n into v, the setting at key. An empty (null) value
// keeps the default, as yaml.v3 does, except that an empty list setting
// means no entries.
func (d *decoder) value(n *yaml.Node, v reflect.Value, key string) {
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		if v.Kind() == reflect.Slice {
			v.SetZero()
		}
		return
	}
	if reflect.PointerTo(v.Type()).Implements(unmarshalerType) {
		if err := v.Addr().Interface().(yaml.Unmarshaler).UnmarshalYAML(n); err != nil {
			d.errorf(n, key, "%v", err)
		}
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		d.mapping(n, v, key)
	case reflect.Slice:
		d.sequence(n, v, key)
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			d.errorf(n, key, "expected a string, got %s", describeNode(n))
			return
		}
		v.SetString(n.Value)
	case reflect.Int, reflect.Int64:
		d.scalar(n, v, key, "a whole number")
	case reflect.Float64:
		d.scalar(n, v, key, "a number")
	case reflect.Bool:
		d.scalar(n, v, key, "true or false")
	default:
		// Only reachable if Config gains a field of a new kind.
		d.errorf(n, key, "internal error: cannot decode into %v", v.Type())
	}
}

// scalar decodes a number or boolean with yaml.v3's own rules.
func (d *decoder) scalar(n *yaml.Node, v reflect.Value, key, want string) {
	if n.Kind != yaml.ScalarNode {
		d.errorf(n, key, "expected %s, got %s", want, describeNode(n))
		return
	}
	p := reflect.New(v.Type())
	if err := n.Decode(p.Interface()); err != nil {
		d.errorf(n, key, "expected %s, got %s", want, describeNode(n))
		return
	}
	v.Set(p.Elem())
}

// mapping decodes a YAML mapping into the struct v, reporting keys the
// struct does not have and keys given twice.
func (d *decoder) mapping(n *yaml.Node, v reflect.Value, key string) {
	if n.Kind != yaml.MappingNode {
		d.errorf(n, key, "expected a mapping of settings, got %s", describeNode(n))
		return
	}
	fields := yamlFields(v.Type())
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		for k.Kind == yaml.AliasNode {
			k = k.Alias
		}
		if k.Kind != yaml.ScalarNode {
			d.errorf(k, key, "expected a setting name, got %s", describeNode(k))
			continue
		}
		if k.ShortTag() == "!!merge" {
			d.errorf(k, key, "merge keys (<<) are not supported")
			continue
		}
		path := joinKey(key, k.Value)
		if first, dup := seen[k.Value]; dup {
			d.errorf(k, path, "set twice (first on line %d)", first)
			continue
		}
		seen[k.Value] = k.Line
		idx, ok := fields[k.Value]
		if !ok {
			d.errorf(k, key, "unknown key %q%s", k.Value, suggest(k.Value, fields))
			continue
		}
		d.lines[path] = k.Line
		d.value(val, v.Field(idx), path)
	}
}

// sequence decodes a YAML list into the slice v. The list replaces the
// default rather than adding to it.
func (d *decoder) sequence(n *yaml.Node, v reflect.Value, key string) {
	if n.Kind != yaml.SequenceNode {
		d.errorf(n, key, "expected a list, got %s", describeNode(n))
		return
	}
	if len(n.Content) == 0 {
		v.SetZero()
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, el := range n.Content {
		path := fmt.Sprintf("%s[%d]", key, i)
		d.lines[path] = el.Line
		if el.Kind == yaml.ScalarNode && el.ShortTag() == "!!null" {
			d.errorf(el, path, "empty list entry")
			continue
		}
		d.value(el, s.Index(i), path)
	}
	v.Set(s)
}

// yamlFields maps the YAML key of each exported field of t to its index.
func yamlFields(t reflect.Type) map[string]int {
	m := make(map[string]int, t.NumField())
	for i := range t.NumField() {
		if name := yamlName(t.Field(i)); name != "" {
			m[name] = i
		}
	}
	return m
}

// yamlName returns the YAML key of f as yaml.v3 would choose it, or ""
// for fields that are not encoded.
func yamlName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	switch name {
	case "-":
		return ""
	case "":
		return strings.ToLower(f.Name)
	}
	return name
}

func joinKey(parent, name string) string {
	if parent == "" {
		return name
	}
	return parent + "." + name
}

// suggest offers the known key closest to a misspelt one, if any is
// close enough to be a likely typo.
func suggest(name string, fields map[string]int) string {
	if best := typo.Closest(name, slices.Collect(maps.Keys(fields)), 3); best != "" {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	return ""
}

// storeKind settles store.kind and its older spelling store.backend
// from what the file set (Validate reports a file that set both
// differently), and gives a Redis store its default fail_open: when
// Redis is unreachable greylisting lets mail through, while latches and
// freezes still tempfail it. A file that sets fail_open, even to [],
// keeps its own.
func (d *decoder) storeKind(cfg *Config) {
	_, kind := d.lines["store.kind"]
	_, backend := d.lines["store.backend"]
	switch {
	case backend && !kind:
		cfg.Store.Kind = cfg.Store.Backend
		d.lines["store.kind"] = d.lines["store.backend"]
	case kind && !backend:
		cfg.Store.Backend = cfg.Store.Kind
	}
	if _, set := d.lines["fail_open"]; !set && cfg.Store.Kind == StoreRedis {
		cfg.FailOpen = []string{greylist.Name}
	}
}
