package account

import (
	"errors"
	"strings"
	"testing"
)

func TestHashAndCheck(t *testing.T) {
	h, err := Hash("correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	if err := Check(h, "correct horse battery"); err != nil {
		t.Errorf("right password refused: %v", err)
	}
	if err := Check(h, "correct horse battery!"); !errors.Is(err, ErrBadPassword) {
		t.Errorf("wrong password: err = %v, want ErrBadPassword", err)
	}
	if err := CheckMissing("x"); !errors.Is(err, ErrBadPassword) {
		t.Errorf("CheckMissing = %v", err)
	}
}

func TestValidation(t *testing.T) {
	for _, pw := range []string{"", "short", strings.Repeat("a", 73)} {
		if _, err := Hash(pw); err == nil {
			t.Errorf("Hash(%d bytes) accepted", len(pw))
		}
	}
	for _, n := range []string{"", "a b", "<script>", strings.Repeat("a", 65), "ali\x00ce"} {
		if ValidName(n) == nil {
			t.Errorf("ValidName(%q) accepted", n)
		}
	}
	for _, n := range []string{"alice", "bob.smith@example.org", "ops-1_x"} {
		if err := ValidName(n); err != nil {
			t.Errorf("ValidName(%q): %v", n, err)
		}
	}
	if ValidRole("admin") != nil || ValidRole("viewer") != nil || ValidRole("root") == nil {
		t.Error("ValidRole accepts the wrong roles")
	}
}
