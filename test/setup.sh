#!/bin/sh
# Installs the real programs the integration tests in test/integration drive:
# Postfix (the MTA in front of mailwarden, plus its smtp-sink test server),
# swaks (the SMTP client), clamd (the virus scanner, with xxd to build a
# signature by hand), nftables (to redirect a connection to the worm
# trap as a firewall would) and Chromium (the headless browser the
# dashboard tests drive, with the fonts it recommends, which
# --no-install-recommends would leave out, so screenshots read as users
# see the pages). It also unpacks Debian's Exim without installing it (see
# "Exim" below). Safe to run again: installed packages and an unpacked
# Exim are skipped. As a non-root user it only reports what is missing,
# because the tests skip outside CI when they cannot run.
set -eu

packages="postfix swaks clamav-daemon xxd nftables chromium fonts-liberation"

# Exim, for test/integration/exim_test.go, which runs Debian's own Exim
# configuration with the snippet from docs/exim.md. Debian's exim4
# packages conflict with postfix (both provide mail-transport-agent), so
# they are never installed: their .debs are downloaded into exim_cache and
# unpacked with dpkg -x into exim_root, where test/harness/exim.go finds
# the exim4 binary, update-exim4.conf and the stock /etc/exim4 tree.
exim_debs="exim4-daemon-light exim4-base exim4-config"
exim_cache=/var/cache/mailwarden-test/exim
exim_root=/opt/mailwarden-test/exim

missing=""
for p in $packages; do
	if ! dpkg -s "$p" >/dev/null 2>&1; then
		missing="$missing $p"
	fi
done

# exim_ready reports whether Exim is unpacked, can load its libraries and
# has its system user.
exim_ready() {
	[ -f "$exim_root/.unpacked" ] &&
		[ -x "$exim_root/usr/sbin/exim4" ] &&
		! ldd "$exim_root/usr/sbin/exim4" 2>/dev/null | grep -q 'not found' &&
		getent passwd Debian-exim >/dev/null
}

if [ -z "$missing" ] && exim_ready; then
	echo "setup: all integration test packages installed:$(printf ' %s' $packages); Exim unpacked in $exim_root"
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	[ -z "$missing" ] || echo "setup: not root; missing packages:$missing"
	exim_ready || echo "setup: not root; Exim is not unpacked in $exim_root"
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

if [ -n "$missing" ]; then
	echo "setup: installing:$missing"
	apt-get update
	# shellcheck disable=SC2086 # word splitting of the package list is intended
	apt-get install -y --no-install-recommends $missing
fi

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

# deb_in_cache prints the newest cached .deb of package $1, if any.
deb_in_cache() {
	ls "$exim_cache/$1"_*.deb 2>/dev/null | sort -V | tail -n 1
}

if ! exim_ready; then
	mkdir -p "$exim_cache"
	need=""
	for p in $exim_debs; do
		[ -n "$(deb_in_cache "$p")" ] || need="$need $p"
	done
	if [ -n "$need" ]; then
		echo "setup: downloading (not installing):$need"
		# apt-get download runs as _apt, which may not write to a root
		# directory; the cache is root's, so let apt stay root here.
		# shellcheck disable=SC2086 # word splitting of the package list is intended
		(cd "$exim_cache" && apt-get -o APT::Sandbox::User=root download $need) || {
			apt-get update
			(cd "$exim_cache" && apt-get -o APT::Sandbox::User=root download $need)
		}
	fi

	# Unpack into a fresh directory and move it into place, so an
	# interrupted run never leaves a half-unpacked tree that looks ready.
	rm -rf "$exim_root.new"
	mkdir -p "$exim_root.new"
	for p in $exim_debs; do
		dpkg -x "$(deb_in_cache "$p")" "$exim_root.new"
	done

	# The shared libraries exim4-daemon-light depends on: plain library
	# packages that do not conflict with postfix (libidn12 is the one a
	# Postfix machine usually lacks).
	libs=""
	for dep in $(dpkg-deb -f "$(deb_in_cache exim4-daemon-light)" Depends | tr ',|' '\n\n' | sed 's/(.*//; s/[[:space:]]//g' | grep '^lib'); do
		dpkg -s "$dep" >/dev/null 2>&1 || libs="$libs $dep"
	done
	if [ -n "$libs" ]; then
		echo "setup: installing Exim's libraries:$libs"
		# shellcheck disable=SC2086 # word splitting of the package list is intended
		apt-get install -y --no-install-recommends $libs || {
			apt-get update
			apt-get install -y --no-install-recommends $libs
		}
	fi
	if ldd "$exim_root.new/usr/sbin/exim4" | grep 'not found'; then
		echo "setup: the unpacked exim4 cannot load the libraries above" >&2
		exit 1
	fi

	# Debian's exim4 binary runs as the user Debian-exim (its compiled-in
	# exim_user) and update-exim4.conf gives its output to that group, so
	# create the system user as exim4-base's postinst does. It owns no
	# files outside the tests' own temporary directories.
	if ! getent passwd Debian-exim >/dev/null; then
		adduser --system --group --quiet --home /var/spool/exim4 \
			--no-create-home --disabled-login --force-badname Debian-exim
	fi

	for p in $exim_debs; do
		basename "$(deb_in_cache "$p")"
	done >"$exim_root.new/.unpacked"
	rm -rf "$exim_root"
	mv "$exim_root.new" "$exim_root"
	exim_ready || {
		echo "setup: Exim in $exim_root is still not usable" >&2
		exit 1
	}
	echo "setup: Exim unpacked in $exim_root from$(printf ' %s' $(cat "$exim_root/.unpacked"))"
fi
echo "setup: done"
