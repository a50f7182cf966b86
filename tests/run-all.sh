#!/usr/bin/env bash
# Set up and run every test:
#   1. unit + integration tests on the ASan+UBSan build (the integration
#      tests drive the real binary against the real FHIR server);
#   2. the unit tests again under valgrind on the plain build, and the
#      integration scenarios that do not hinge on timing with the binary
#      itself under valgrind.
# Prints one closing line "N passed, N failed" and exits non-zero on failure.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
bash tests/setup.sh asan || { echo "0 passed, 1 failed"; exit 1; }

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
status=0
logs=()

meson test -C build-asan --suite unit --suite examples --suite integration --print-errorlogs \
	--num-processes 2 || status=1
logs+=(build-asan/meson-logs/testlog.json)

meson test -C build --setup valgrind --suite unit --print-errorlogs --num-processes 2 || status=1
logs+=(build/meson-logs/testlog-valgrind.json)

meson test -C build --suite valgrind-integration --print-errorlogs || status=1
logs+=(build/meson-logs/testlog.json)

read -r passed failed skipped < <(python3 - "${logs[@]}" <<'PY'
import json, sys
p = f = s = 0
for path in sys.argv[1:]:
    try:
        for line in open(path):
            r = json.loads(line).get("result")
            if r in ("OK", "EXPECTEDFAIL"): p += 1
            elif r == "SKIP": s += 1
            else: f += 1
    except FileNotFoundError:
        f += 1
print(p, f, s)
PY
)
[ "$failed" -eq 0 ] || status=1
echo "${passed} passed, ${failed} failed, ${skipped} skipped"
exit $status
