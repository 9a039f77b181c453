package integration_test

import "testing"

// TestPolicyGreylist puts mailwarden behind Postfix as an access policy
// server (check_policy_service at RCPT, SMTPD_POLICY_README) and checks
// the same greylisting: the delayed mail gets X-Greylist through
// Postfix's PREPEND action.
func TestPolicyGreylist(t *testing.T) {
	t.Parallel()
	const internal, whitelisted = "127.0.12.20", "127.0.12.30"
	s := startStack(t, viaPolicy, greylistYAML(greylistDelay, internal+"/32", whitelisted))

	t.Run("new triplet is delayed then passes", func(t *testing.T) {
		t.Parallel()
		s.greylistSequence(t, "policy", "127.0.11.5", "first@ext.test", "user1@dest.test")
	})
	t.Run("internal client is not delayed", func(t *testing.T) {
		t.Parallel()
		s.requireSkipped(t, internal, "staff@ext.test", "user2@dest.test", "greylist: skipped: internal")
	})
	t.Run("whitelisted client is not delayed", func(t *testing.T) {
		t.Parallel()
		s.requireSkipped(t, whitelisted, "partner@ext.test", "user3@dest.test", "greylist: skipped: whitelisted client")
	})
}
