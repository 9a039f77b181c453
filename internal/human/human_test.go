package human

import (
	"testing"
	"time"
)

func TestDuration(t *testing.T) {
	for _, c := range []struct {
		d         time.Duration
		tight, sp string
	}{
		{0, "0s", "0s"},
		{45 * time.Second, "45s", "45s"},
		{10 * time.Minute, "10m", "10m"},
		{2*time.Hour + 5*time.Minute + 9*time.Second, "2h5m", "2h 5m"},
		{3*24*time.Hour + 4*time.Hour + 59*time.Minute, "3d4h", "3d 4h"},
		{-90 * time.Second, "1m30s", "1m 30s"},
	} {
		if got := Duration(c.d, ""); got != c.tight {
			t.Errorf("Duration(%v, \"\") = %q, want %q", c.d, got, c.tight)
		}
		if got := Duration(c.d, " "); got != c.sp {
			t.Errorf("Duration(%v, \" \") = %q, want %q", c.d, got, c.sp)
		}
	}
}

func TestSetting(t *testing.T) {
	for d, want := range map[time.Duration]string{
		90 * time.Minute:           "1h30m",
		2 * time.Hour:              "2h",
		time.Minute:                "1m",
		1500 * time.Millisecond:    "1.5s",
		25*time.Hour + time.Second: "25h0m1s",
	} {
		if got := Setting(d); got != want {
			t.Errorf("Setting(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestBytes(t *testing.T) {
	for n, want := range map[int64]string{
		512: "512 bytes", 2048: "2.0 kB", 3 << 20: "3.0 MB", 200 << 20: "200 MB",
	} {
		if got := Bytes(n); got != want {
			t.Errorf("Bytes(%d) = %q, want %q", n, got, want)
		}
	}
}
