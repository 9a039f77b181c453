// Package human writes durations and sizes the way the CLI, the
// dashboard, the config and the alerts show them to a person.
package human

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Duration rounds d to its two largest units, leaving out a zero second
// one, joined by sep: "45s", "2h5m" (sep ""), "3d 4h" (sep " "). A
// negative d is shown as its size.
func Duration(d time.Duration, sep string) string {
	if d < 0 {
		d = -d
	}
	two := func(a time.Duration, ua string, b time.Duration, ub string) string {
		if b == 0 {
			return strconv.FormatInt(int64(a), 10) + ua
		}
		return strconv.FormatInt(int64(a), 10) + ua + sep + strconv.FormatInt(int64(b), 10) + ub
	}
	const day = 24 * time.Hour
	switch {
	case d >= day:
		return two(d/day, "d", d%day/time.Hour, "h")
	case d >= time.Hour:
		return two(d/time.Hour, "h", d%time.Hour/time.Minute, "m")
	case d >= time.Minute:
		return two(d/time.Minute, "m", d%time.Minute/time.Second, "s")
	}
	return strconv.FormatInt(int64(d/time.Second), 10) + "s"
}

// Setting writes d exactly, as a config file takes it, without the zero
// minutes and seconds time.Duration.String prints after a larger unit:
// "90m" is "1h30m", "2h" not "2h0m0s".
func Setting(d time.Duration) string {
	s := d.String()
	if t, ok := strings.CutSuffix(s, "m0s"); ok {
		s = t + "m"
	}
	if t, ok := strings.CutSuffix(s, "h0m"); ok {
		s = t + "h"
	}
	return s
}

// Bytes writes a size in bytes, kB or MB (1024-based), with one decimal
// below 10 MB.
func Bytes(n int64) string {
	switch {
	case n >= 10<<20:
		return fmt.Sprintf("%.0f MB", float64(n)/(1<<20))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f kB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}
