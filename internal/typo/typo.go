// Package typo finds what a user probably meant: the config loader for a
// misspelt key, the CLI for a misspelt command.
package typo

// Closest returns the option nearest to typed, ties going to the one that
// sorts first, if it is fewer than maxDist edits away and closer than
// typed is long (so "x" does not suggest "scan"); else "".
func Closest(typed string, options []string, maxDist int) string {
	best, bestDist := "", maxDist
	for _, o := range options {
		if d := Distance(typed, o); d < bestDist || d == bestDist && best != "" && o < best {
			best, bestDist = o, d
		}
	}
	if best == "" || bestDist >= len(typed) {
		return ""
	}
	return best
}

// Distance is the Levenshtein distance between a and b, in bytes.
func Distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
