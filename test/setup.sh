#!/bin/sh
# Installs the real programs the integration tests in test/integration drive:
# Postfix (the MTA in front of mailwarden, plus its smtp-sink test server),
# swaks (the SMTP client), clamd (the virus scanner, with xxd to build a
# signature by hand), nftables (to redirect a connection to the worm
# trap as a firewall would) and Chromium (the headless browser the
# dashboard tests drive, with the fonts it recommends, which
# --no-install-recommends would leave out, so screenshots read as users
# see the pages), and m4 (to build a sendmail.cf). It also unpacks
# Debian's Exim and Sendmail without installing them (see "Exim" and
# "Sendmail" below). Safe to run again: installed packages and an
# unpacked Exim or Sendmail are skipped. As a non-root user it only reports what is missing,
# because the tests skip outside CI when they cannot run.
set -eu

# gcc and libc6-dev: `go test -race` needs cgo.
packages="postfix swaks clamav-daemon xxd nftables chromium fonts-liberation m4 redis-server redis-tools gcc libc6-dev"

# Exim, for test/integration/exim_test.go, which runs Debian's own Exim
# configuration with the snippet from docs/exim.md. Debian's exim4
# packages conflict with postfix (both provide mail-transport-agent), so
# they are never installed: their .debs are downloaded into exim_cache and
# unpacked with dpkg -x into exim_root, where test/harness/exim.go finds
# the exim4 binary, update-exim4.conf and the stock /etc/exim4 tree.
# The daemon is exim4-daemon-heavy, not the default light one: only the
# heavy build has content scanning (the "malware" ACL condition and the
# av_scanner option), which the antivirus path of docs/exim.md needs.
exim_daemon=exim4-daemon-heavy
exim_debs="$exim_daemon exim4-base exim4-config"
exim_cache=/var/cache/mailwarden-test/exim
exim_root=/opt/mailwarden-test/exim

# Sendmail, for test/integration/sendmail_test.go, which builds a
# sendmail.cf with the unpacked sendmail-cf's m4 macros and the snippet
# from docs/sendmail.md. Debian's sendmail packages conflict with postfix
# as Exim's do, so they are downloaded into sendmail_cache and unpacked
# into sendmail_root, where test/harness/sendmail.go finds
# usr/libexec/sendmail/sendmail and usr/share/sendmail/cf.
sendmail_debs="sendmail-bin sendmail-base sendmail-cf"
sendmail_cache=/var/cache/mailwarden-test/sendmail
sendmail_root=/opt/mailwarden-test/sendmail

missing=""
for p in $packages; do
	if ! dpkg -s "$p" >/dev/null 2>&1; then
		missing="$missing $p"
	fi
done

# exim_ready reports whether the heavy Exim is unpacked (a tree left by
# an older run with the light daemon is not ready), has its system user,
# and its binary loads and has content scanning: "exim4 -bV" with an
# empty configuration runs it as far as printing what it was built with.
exim_ready() {
	[ -f "$exim_root/.unpacked" ] &&
		grep -q "^${exim_daemon}_" "$exim_root/.unpacked" &&
		[ -x "$exim_root/usr/sbin/exim4" ] &&
		getent passwd Debian-exim >/dev/null &&
		"$exim_root/usr/sbin/exim4" -C /dev/null -bV 2>/dev/null | grep -q '^Support for:.* Content_Scanning'
}

# sendmail_ready reports whether Sendmail is unpacked with its m4
# macros and can load its libraries.
sendmail_ready() {
	[ -f "$sendmail_root/.unpacked" ] &&
		[ -x "$sendmail_root/usr/libexec/sendmail/sendmail" ] &&
		[ -f "$sendmail_root/usr/share/sendmail/cf/m4/cf.m4" ] &&
		! ldd "$sendmail_root/usr/libexec/sendmail/sendmail" 2>/dev/null | grep -q 'not found'
}

if [ -z "$missing" ] && exim_ready && sendmail_ready; then
	echo "setup: all integration test packages installed:$(printf ' %s' $packages); Exim unpacked in $exim_root; Sendmail unpacked in $sendmail_root"
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	[ -z "$missing" ] || echo "setup: not root; missing packages:$missing"
	exim_ready || echo "setup: not root; Exim is not unpacked in $exim_root"
	sendmail_ready || echo "setup: not root; Sendmail is not unpacked in $sendmail_root"
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
for prog in /usr/sbin/postfix /usr/sbin/smtp-sink /usr/bin/swaks /usr/sbin/clamd /usr/bin/xxd /usr/sbin/nft /usr/bin/chromium /usr/bin/m4; do
	[ -x "$prog" ] || {
		echo "setup: $prog missing after install" >&2
		exit 1
	}
done

# deb_in_cache prints the newest .deb of package $1 cached in directory
# $2 (Exim's cache if not given), if any.
deb_in_cache() {
	ls "${2:-$exim_cache}/$1"_*.deb 2>/dev/null | sort -V | tail -n 1
}

# download_debs downloads (does not install) the packages $2... into
# directory $1, skipping those already there.
download_debs() {
	dir=$1
	shift
	mkdir -p "$dir"
	need=""
	for p in "$@"; do
		[ -n "$(deb_in_cache "$p" "$dir")" ] || need="$need $p"
	done
	[ -n "$need" ] || return 0
	echo "setup: downloading (not installing):$need"
	# apt-get download runs as _apt, which may not write to a root
	# directory; the cache is root's, so let apt stay root here.
	# shellcheck disable=SC2086 # word splitting of the package list is intended
	(cd "$dir" && apt-get -o APT::Sandbox::User=root download $need) || {
		apt-get update
		(cd "$dir" && apt-get -o APT::Sandbox::User=root download $need)
	}
}

# install_libs installs with apt-get the lib* packages the .deb $1
# depends on that are missing: plain library packages that do not
# conflict with postfix.
install_libs() {
	libs=""
	for dep in $(dpkg-deb -f "$1" Depends | tr ',|' '\n\n' | sed 's/(.*//; s/[[:space:]]//g' | grep '^lib'); do
		dpkg -s "$dep" >/dev/null 2>&1 || libs="$libs $dep"
	done
	[ -n "$libs" ] || return 0
	echo "setup: installing the libraries of $(basename "$1"):$libs"
	# shellcheck disable=SC2086 # word splitting of the package list is intended
	apt-get install -y --no-install-recommends $libs || {
		apt-get update
		apt-get install -y --no-install-recommends $libs
	}
}

if ! exim_ready; then
	# shellcheck disable=SC2086 # word splitting of the package list is intended
	download_debs "$exim_cache" $exim_debs

	# Unpack into a fresh directory and move it into place, so an
	# interrupted run never leaves a half-unpacked tree that looks ready.
	rm -rf "$exim_root.new"
	mkdir -p "$exim_root.new"
	for p in $exim_debs; do
		dpkg -x "$(deb_in_cache "$p")" "$exim_root.new"
	done

	# The shared libraries exim4-daemon-heavy depends on (libidn12,
	# libspf2-2 and libmariadb3 are the ones a Postfix machine usually
	# lacks; none conflicts with postfix).
	install_libs "$(deb_in_cache "$exim_daemon")"
	if ldd "$exim_root.new/usr/sbin/exim4" | grep 'not found'; then
		echo "setup: the unpacked exim4 cannot load the libraries above" >&2
		exit 1
	fi
	if ! "$exim_root.new/usr/sbin/exim4" -C /dev/null -bV >/dev/null 2>&1; then
		echo "setup: the unpacked exim4 does not run:" >&2
		"$exim_root.new/usr/sbin/exim4" -C /dev/null -bV >&2 || true
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

if ! sendmail_ready; then
	# shellcheck disable=SC2086 # word splitting of the package list is intended
	download_debs "$sendmail_cache" $sendmail_debs
	# As for Exim: a fresh directory moved into place when complete.
	rm -rf "$sendmail_root.new"
	mkdir -p "$sendmail_root.new"
	for p in $sendmail_debs; do
		dpkg -x "$(deb_in_cache "$p" "$sendmail_cache")" "$sendmail_root.new"
	done
	# sendmail-bin's shared libraries (libwrap0 and liblockfile1 are the
	# ones a Postfix machine usually lacks).
	install_libs "$(deb_in_cache sendmail-bin "$sendmail_cache")"
	if ldd "$sendmail_root.new/usr/libexec/sendmail/sendmail" | grep 'not found'; then
		echo "setup: the unpacked sendmail cannot load the libraries above" >&2
		exit 1
	fi
	# No system user to create: the harness runs sendmail as root with
	# DefaultUser mail, which base-passwd always has.
	for p in $sendmail_debs; do
		basename "$(deb_in_cache "$p" "$sendmail_cache")"
	done >"$sendmail_root.new/.unpacked"
	rm -rf "$sendmail_root"
	mv "$sendmail_root.new" "$sendmail_root"
	sendmail_ready || {
		echo "setup: Sendmail in $sendmail_root is still not usable" >&2
		exit 1
	}
	echo "setup: Sendmail unpacked in $sendmail_root from$(printf ' %s' $(cat "$sendmail_root/.unpacked"))"
fi
echo "setup: done"
