package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// FuzzParse checks that no input crashes Parse, that every failure is an
// *Errors naming lines inside the input, and that every accepted input
// gives a valid configuration whose printed form loads back unchanged.
// Seeds are the testdata corpus and testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yaml")
	files = append(files, exampleFile)
	for _, path := range files {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("fuzz.yaml", data)
		if err != nil {
			var errs *Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error is %T, want *Errors: %v", err, err)
			}
			if len(errs.List) == 0 {
				t.Fatal("*Errors with no errors")
			}
			lines := len(splitLines(data)) + 1
			for _, e := range errs.List {
				if e.Line < 0 || e.Line > lines || e.Msg == "" {
					t.Errorf("error %+v: line outside 0-%d or empty message", e, lines)
				}
			}
			return
		}
		if v := cfg.Validate(); len(v) > 0 {
			t.Fatalf("accepted config fails validation: %v", v)
		}
		out, err := cfg.YAML()
		if err != nil {
			t.Fatalf("YAML: %v", err)
		}
		back, err := Parse("printed.yaml", out)
		if err != nil {
			t.Fatalf("printed config does not load: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(back, cfg) {
			t.Fatalf("printed config loads differently\n%s", out)
		}
	})
}
