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

func TestWithin(t *testing.T) {
	cases := []struct {
		a, b string
		want int
	}{
		{"office", "office", 0},
		{"ofice", "office", 1},
		{"offfice", "office", 1},
		{"offcie", "office", 1}, // a swap is one edit
		{"servises", "services", 1},
		{"suport", "support", 1},
		{"sales", "james", 2},
		{"", "info", 4},
		{"info", "", 4},
	}
	for _, c := range cases {
		if got := Within(c.a, c.b, 10); got != c.want {
			t.Errorf("Within(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
	if got := Within("abcdefgh", "zyxwvuts", 2); got != 3 {
		t.Errorf("a distance beyond the limit returns limit+1; got %d", got)
	}
}
