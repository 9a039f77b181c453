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

// Distance is the number of edits between a and b, in bytes: the
// optimal-string-alignment distance, where inserting, deleting or
// changing a byte and swapping two neighbours are one edit each — the
// mistakes a person makes typing.
func Distance(a, b string) int {
	return Within(a, b, max(len(a), len(b)))
}

// Within is Distance, but stops early and returns limit+1 once a and b
// are known to be more than limit edits apart.
func Within(a, b string, limit int) int {
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		rowMin := cur[0]
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
			rowMin = min(rowMin, cur[j])
		}
		if rowMin > limit {
			return limit + 1
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
