package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"mailwarden/internal/human"
)

// UnmarshalYAML accepts a Go duration string ("300s", "5m", "48h"). Bare
// numbers are refused because their unit would be a guess.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("expected a duration such as 5m, got %s", describeNode(n))
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		// postgrey and many other tools count in days; say how to
		// write that here instead of only rejecting it.
		if days, ok := strings.CutSuffix(n.Value, "d"); ok {
			if k, err := strconv.Atoi(days); err == nil && k > 0 && k < 100000 {
				return fmt.Errorf("invalid duration %q (Go durations have no days unit; write %dh)", n.Value, 24*k)
			}
		}
		return fmt.Errorf("invalid duration %q (use Go durations such as 300s, 5m, 48h)", n.Value)
	}
	if v < 0 {
		return fmt.Errorf("invalid duration %q (must not be negative)", n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration the way an administrator would: "5m",
// "48h", "5m30s" rather than time.Duration's "5m0s" and "48h0m0s".
func (d Duration) MarshalYAML() (any, error) {
	return human.Setting(d.D()), nil
}

// UnmarshalYAML accepts a network in CIDR notation or a bare address.
func (p *Prefix) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("expected a network such as 10.0.0.0/8, got %s", describeNode(n))
	}
	v, err := ParsePrefix(n.Value)
	// ParsePrefix drops the zone of a bare address ("fe80::1%eth0"); a
	// network has no zone, so such an entry is a mistake.
	if err != nil || !v.IsValid() || strings.Contains(n.Value, "%") {
		return fmt.Errorf("invalid network %q", n.Value)
	}
	*p = v
	return nil
}

// MarshalYAML writes the network in CIDR notation.
func (p Prefix) MarshalYAML() (any, error) {
	if !p.IsValid() {
		return nil, fmt.Errorf("config: invalid network %v", p.Prefix)
	}
	return p.String(), nil
}

// describeNode names what a YAML node holds, for "expected X, got Y".
func describeNode(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.ScalarNode:
		if n.ShortTag() == "!!null" {
			return "an empty value"
		}
		return strconv.Quote(n.Value)
	}
	return "a YAML document"
}
