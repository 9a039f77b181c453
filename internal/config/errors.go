package config

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
)

// Error is one problem found in a configuration.
type Error struct {
	// Line is the 1-based line in the file, or 0 when not known (for
	// example a problem with a default value the file did not set).
	Line int
	// Key is the dotted YAML path of the setting, such as
	// "greylist.delay" or "fail_open[1]"; "" means the file as a whole.
	Key string
	// Msg says what is wrong, without the key or line.
	Msg string
}

// Error renders "key: message", or only the message when there is no key.
func (e Error) Error() string {
	if e.Key == "" {
		return e.Msg
	}
	return e.Key + ": " + e.Msg
}

// Errors is every problem found in one configuration file. Load and Parse
// return all of them at once so that an administrator fixes the file in
// one pass rather than one error per restart.
type Errors struct {
	// File names the configuration as given to Parse or Load.
	File string
	// List holds the problems in file order; those without a line last.
	List []Error
}

// Error renders one problem per line as "FILE:LINE: key: message", or
// "FILE: key: message" when the line is not known.
func (e *Errors) Error() string {
	var b strings.Builder
	for i, x := range e.List {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.File)
		b.WriteByte(':')
		if x.Line > 0 {
			b.WriteString(strconv.Itoa(x.Line))
			b.WriteByte(':')
		}
		b.WriteByte(' ')
		b.WriteString(x.Error())
	}
	return b.String()
}

// sortErrors orders errors by line, keeping the order they were found in
// within a line; errors without a line go last.
func sortErrors(list []Error) {
	key := func(e Error) int {
		if e.Line <= 0 {
			return int(^uint(0) >> 1)
		}
		return e.Line
	}
	slices.SortStableFunc(list, func(a, b Error) int { return cmp.Compare(key(a), key(b)) })
}
