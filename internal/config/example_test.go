package config

import (
	"os"
	"reflect"
	"slices"
	"testing"

	"go.yaml.in/yaml/v3"
)

// exampleFile is the commented example configuration shipped in etc/.
const exampleFile = "../../etc/mailwarden.yaml"

// TestExampleIsDefault keeps the documented values in step with Default().
func TestExampleIsDefault(t *testing.T) {
	cfg, err := Load(exampleFile)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg, Default()) {
		got, _ := cfg.YAML()
		want, _ := Default().YAML()
		t.Errorf("%s does not describe Default()\nfile gives:\n%s\nDefault():\n%s", exampleFile, got, want)
	}
}

// TestExampleListsEveryKey fails when a Config field has no entry, with a
// comment explaining it, in the example file: docs are code.
func TestExampleListsEveryKey(t *testing.T) {
	data, err := os.ReadFile(exampleFile)
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{} // key -> has a comment
	collectKeys(doc.Content[0], "", documented)
	keys := configKeys(reflect.TypeFor[Config](), "")
	if len(keys) < 30 {
		t.Fatalf("found only %d keys in Config by reflection: %q", len(keys), keys)
	}
	// Older spellings are still read but not offered: an example that
	// set store.backend beside store.kind would turn an edit of kind
	// alone into a conflict.
	older := map[string]bool{"store.backend": true}
	for _, k := range keys {
		hasComment, ok := documented[k]
		switch {
		case older[k]:
		case !ok:
			t.Errorf("%s does not list key %s", exampleFile, k)
		case !hasComment:
			t.Errorf("%s lists key %s without a comment above it", exampleFile, k)
		}
	}
}

// configKeys returns the dotted YAML path of every setting in t.
func configKeys(t reflect.Type, prefix string) []string {
	var keys []string
	for i := range t.NumField() {
		f := t.Field(i)
		name := yamlName(f)
		if name == "" {
			continue
		}
		path := joinKey(prefix, name)
		keys = append(keys, path)
		// Duration and Prefix are structs or numbers written as one
		// scalar; only plain sections have keys inside.
		if f.Type.Kind() == reflect.Struct && !reflect.PointerTo(f.Type).Implements(unmarshalerType) {
			keys = append(keys, configKeys(f.Type, path)...)
		}
	}
	slices.Sort(keys)
	return keys
}

// collectKeys records every mapping key under n by dotted path, and
// whether a comment sits directly above it.
func collectKeys(n *yaml.Node, prefix string, out map[string]bool) {
	if n.Kind != yaml.MappingNode {
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		path := joinKey(prefix, k.Value)
		out[path] = k.HeadComment != ""
		collectKeys(v, path, out)
	}
}
