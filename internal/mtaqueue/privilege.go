package mtaqueue

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ErrPrivilege means the MTA refuses to let this process change its
// queue: postsuper(1) runs only as root or as Postfix's mail_owner.
var ErrPrivilege = errors.New("mtaqueue: not privileged to change the queue")

// PrivilegeChecker is a queue that can tell, before acting, whether this
// process may delete, hold or release its messages.
type PrivilegeChecker interface {
	// CheckPrivilege returns an error wrapping ErrPrivilege when the
	// MTA would refuse; nil when it would not or when it cannot tell.
	CheckPrivilege(ctx context.Context) error
}

// Refused reports whether err is the MTA refusing for want of privilege,
// told up front (ErrPrivilege) or by the MTA's own message.
func Refused(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrPrivilege) || errors.Is(err, os.ErrPermission) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "reserved for the superuser") || strings.Contains(msg, "Permission denied") ||
		strings.Contains(msg, "Operation not permitted")
}

// CheckPrivilege asks whether postsuper would run: root may, and so may
// the instance's mail_owner (postsuper.c refuses everyone else "use of
// this command is reserved for the superuser"). mail_owner is read with
// the postconf beside postsuper; when it cannot be read the answer is
// nil, and postsuper's own refusal is recognised by Refused.
func (p *Postfix) CheckPrivilege(ctx context.Context) error {
	euid := os.Geteuid()
	if euid == 0 {
		return nil
	}
	owner, err := p.mailOwner(ctx)
	if err != nil {
		return nil
	}
	u, err := user.Lookup(owner)
	if err == nil && u.Uid == strconv.Itoa(euid) {
		return nil
	}
	me := "uid " + strconv.Itoa(euid)
	if cu, err := user.LookupId(strconv.Itoa(euid)); err == nil {
		me = cu.Username
	}
	return fmt.Errorf("%w: postsuper runs only as root or Postfix's mail_owner (%s), and this daemon runs as %s", ErrPrivilege, owner, me)
}

// mailOwner is the instance's mail_owner.
func (p *Postfix) mailOwner(ctx context.Context) (string, error) {
	return p.postconf(ctx, "mail_owner")
}

// postconf returns the value of one of the instance's parameters, from
// the postconf beside postsuper.
func (p *Postfix) postconf(ctx context.Context, param string) (string, error) {
	postconf := filepath.Join(filepath.Dir(p.Postsuper), "postconf")
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, postconf, p.args("-h", param)...).Output()
	if err != nil {
		return "", fmt.Errorf("postconf -h %s: %w", param, err)
	}
	v := strings.TrimSpace(string(out))
	if v == "" {
		return "", fmt.Errorf("postconf -h %s: empty", param)
	}
	return v, nil
}
