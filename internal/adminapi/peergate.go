package adminapi

import (
	"net/http"
	"os"
	"os/user"
	"slices"
	"strconv"
)

// socketOwners is who may use the admin socket: root, the daemon's own
// user, the socket's owner and the members of its group.
type socketOwners struct {
	uid, gid int
}

// peerGate refuses requests on the socket from anyone else. The socket's
// mode is the first guard; this is the second, for a socket reachable
// more widely than meant (a mode set too wide, a window before it was
// set on an older build, a directory others can write).
func (s *Server) peerGate(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := r.Context().Value(peerKey{}).(peer)
		if ok && p.err == nil && !s.mayUse(p) {
			s.log.Warn("admin API: request refused: the peer is not root, the daemon's user or in the socket's group",
				"uid", p.uid, "gid", p.gid, "method", r.Method, "path", r.URL.Path)
			writeError(w, http.StatusForbidden, "permission denied: only root, the daemon's user and members of the admin socket's group (admin.group) may use the admin API")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// mayUse reports whether p may use the admin API.
func (s *Server) mayUse(p peer) bool {
	if p.uid == 0 || p.uid == os.Geteuid() {
		return true
	}
	o := s.owners.Load()
	if o == nil {
		return false
	}
	if p.uid == o.uid || p.gid == o.gid {
		return true
	}
	u, err := user.LookupId(strconv.Itoa(p.uid))
	if err != nil {
		return false
	}
	groups, err := u.GroupIds()
	return err == nil && slices.Contains(groups, strconv.Itoa(o.gid))
}
