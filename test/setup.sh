#!/bin/sh
# Installs the real programs the integration tests in test/integration drive:
# Postfix (the MTA in front of mailwarden, plus its smtp-sink test server),
# swaks (the SMTP client), clamd (the virus scanner, with xxd to build a
# signature by hand), nftables (to redirect a connection to the worm
# trap as a firewall would) and Chromium (the headless browser the
# dashboard tests drive, with the fonts it recommends, which
# --no-install-recommends would leave out, so screenshots read as users
# see the pages). Safe to run again: installed packages are
# skipped. As a non-root user it only reports what is missing, because the
# tests skip outside CI when they cannot run.
set -eu

packages="postfix swaks clamav-daemon xxd nftables chromium fonts-liberation"

missing=""
for p in $packages; do
	if ! dpkg -s "$p" >/dev/null 2>&1; then
		missing="$missing $p"
	fi
done

if [ -z "$missing" ]; then
	echo "setup: all integration test packages installed:$(printf ' %s' $packages)"
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	echo "setup: not root; missing packages:$missing"
	echo "setup: run 'sudo $0' to install them; the integration tests skip until then"
	exit 0
fi

export DEBIAN_FRONTEND=noninteractive

# Keep maintainer scripts from starting the system Postfix, clamd or
# freshclam: the tests run their own instances on private ports, and
# freshclam would try to download signatures over a network there is none
# of (the tests bring their own EICAR-only database).
# policy-rc.d exiting 101 means "action forbidden" (invoke-rc.d(8)).
created_policy_rc=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
	chmod 755 /usr/sbin/policy-rc.d
	created_policy_rc=yes
fi
cleanup() {
	if [ -n "$created_policy_rc" ]; then
		rm -f /usr/sbin/policy-rc.d
	fi
}
trap cleanup EXIT

# "No configuration" leaves /etc/postfix/main.cf absent, so the package
# does not configure a system mail server the tests would collide with.
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
echo "postfix postfix/mailname string mx.test" | debconf-set-selections
# "manual" leaves freshclam unconfigured as a daemon, so nothing on this
# machine tries to update signatures later either.
echo "clamav-freshclam clamav-freshclam/autoupdate_freshclam select manual" | debconf-set-selections

echo "setup: installing:$missing"
apt-get update
# shellcheck disable=SC2086 # word splitting of the package list is intended
apt-get install -y --no-install-recommends $missing

for p in $packages; do
	dpkg -s "$p" >/dev/null 2>&1 || {
		echo "setup: $p still not installed" >&2
		exit 1
	}
done
for prog in /usr/sbin/postfix /usr/sbin/smtp-sink /usr/bin/swaks /usr/sbin/clamd /usr/bin/xxd /usr/sbin/nft /usr/bin/chromium; do
	[ -x "$prog" ] || {
		echo "setup: $prog missing after install" >&2
		exit 1
	}
done
echo "setup: done"
