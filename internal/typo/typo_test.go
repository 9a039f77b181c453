package typo

import "testing"

func TestClosest(t *testing.T) {
	opts := []string{"greylist", "latch list", "latch show", "scan"}
	for typed, want := range map[string]string{
		"greylst":    "greylist",
		"latch shwo": "latch show",
		"x":          "",
		"frobnicate": "",
		"scna":       "scan",
	} {
		if got := Closest(typed, opts, 3); got != want {
			t.Errorf("Closest(%q) = %q, want %q", typed, got, want)
		}
	}
	if d := Distance("kitten", "sitting"); d != 3 {
		t.Errorf("Distance = %d, want 3", d)
	}
}
