package mailboxtest

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"
)

// Node is one file, directory or link as Capture saw it.
type Node struct {
	Mode     fs.FileMode
	UID, GID int
	Data     string // a file's content, a link's target
}

// Capture records every file, directory and symbolic link under roots
// with content, mode and owner, to compare a tree before and after.
func Capture(roots ...string) (map[string]Node, error) {
	out := map[string]Node{}
	for _, root := range roots {
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			st, err := os.Lstat(path)
			if err != nil {
				return err
			}
			n := Node{Mode: st.Mode()}
			if s, ok := st.Sys().(*syscall.Stat_t); ok {
				n.UID, n.GID = int(s.Uid), int(s.Gid)
			}
			switch {
			case st.Mode().IsRegular():
				data, err := os.ReadFile(path)
				if err != nil {
					return err
				}
				n.Data = string(data)
			case st.Mode()&fs.ModeSymlink != 0:
				n.Data, _ = os.Readlink(path)
			}
			out[path] = n
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Diff lists the paths that differ between two captures, at most max.
func Diff(before, after map[string]Node, max int) []string {
	var out []string
	for p, a := range before {
		b, ok := after[p]
		switch {
		case !ok:
			out = append(out, "gone: "+p)
		case a != b:
			out = append(out, fmt.Sprintf("changed: %s (mode %v→%v, owner %d:%d→%d:%d, %d→%d bytes)", p, a.Mode, b.Mode, a.UID, a.GID, b.UID, b.GID, len(a.Data), len(b.Data)))
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			out = append(out, "new: "+p)
		}
	}
	slices.Sort(out)
	if len(out) > max {
		out = append(out[:max], fmt.Sprintf("… and %d more", len(out)-max))
	}
	return out
}
