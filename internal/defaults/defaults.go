// Package defaults fills an option left unset: every component's
// Options treat zero or less as "use the default".
package defaults

import "cmp"

// Positive returns v when it is more than zero, else def.
func Positive[T cmp.Ordered](v, def T) T {
	var zero T
	if v <= zero {
		return def
	}
	return v
}
