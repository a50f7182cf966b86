#!/usr/bin/env bash
# Set up everything the build, the tests and the demo need on a Debian 12
# machine: Debian packages (when missing), the Node test peers (npm ci from
# the committed lockfile) and the meson builds. Idempotent; safe to rerun.
#
#   tests/setup.sh            plain build in build/
#   tests/setup.sh asan       also an ASan+UBSan build in build-asan/
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

pkgs=(meson ninja-build pkg-config gcc libc6-dev libjansson-dev libuv1-dev libcurl4-openssl-dev
      libsqlite3-dev libssl-dev libmicrohttpd-dev valgrind nodejs npm ca-certificates tzdata
      chromium)   # the charting page's browser test (playwright-core drives /usr/bin/chromium)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# node/npm may come from elsewhere than Debian (a newer Node on PATH is fine).
if command -v node >/dev/null && command -v npm >/dev/null; then
	missing=("${missing[@]/nodejs}"); missing=("${missing[@]/npm}")
fi
read -r -a missing <<<"${missing[*]}"
if [ "${#missing[@]}" -gt 0 ]; then
	echo "setup: installing ${missing[*]}"
	SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ ! -d tests/servers/node_modules/@medplum/fhir-router ] || [ ! -d tests/servers/node_modules/playwright-core ] ||
   [ tests/servers/package-lock.json -nt tests/servers/node_modules/.package-lock.json ]; then
	echo "setup: npm ci (tests/servers)"
	(cd tests/servers && npm ci --no-audit --no-fund --loglevel=error)
fi

# Quiet when all is well; the whole output when a step fails.
quiet() {
	local log
	log=$(mktemp)
	if ! "$@" >"$log" 2>&1; then
		cat "$log"
		rm -f "$log"
		echo "setup: failed: $*" >&2
		return 1
	fi
	rm -f "$log"
}

[ -f build/build.ninja ] || quiet meson setup build
quiet meson compile -C build

if [ "${1:-}" = asan ]; then
	[ -f build-asan/build.ninja ] || quiet meson setup build-asan -Db_sanitize=address,undefined -Db_lundef=false
	quiet meson compile -C build-asan
fi
echo "setup: done (build/bridge/fhir-redcap-bridge)"
