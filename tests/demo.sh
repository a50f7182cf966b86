#!/usr/bin/env bash
# The demo: set everything up, start the test FHIR server with a few
# synthetic patients, pull them into an encrypted store with `sync --once`,
# and show `status`. Everything lands in ./demo/ (delete it to start over).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
bash tests/setup.sh

mkdir -p demo
chmod 700 demo
node tests/servers/fhir-server.mjs --port 0 --generate "${DEMO_PATIENTS:-25}" --seed 1 \
	--port-file demo/fhir-url >demo/fhir-server.log 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
	[ -s demo/fhir-url ] && break
	kill -0 $server 2>/dev/null || { cat demo/fhir-server.log; exit 1; }
	sleep 0.1
done
base=$(cat demo/fhir-url)
echo "demo: FHIR server with ${DEMO_PATIENTS:-25} synthetic patients at $base"

cat >demo/bridge.json <<JSON
{
  "store": { "path": "bridge.db", "key_file": "store.key" },
  "fhir": {
    "base_url": "$base",
    "resources": ["Patient", "Encounter", "Observation", "Condition", "MedicationRequest", "AllergyIntolerance"],
    "page_size": 100,
    "max_concurrency": 4,
    "poll_interval_s": 60,
    "auth": { "type": "none" }
  }
}
JSON
chmod 600 demo/bridge.json

echo "demo: fhir-redcap-bridge sync --once --config demo/bridge.json"
build/bridge/fhir-redcap-bridge sync --once --config demo/bridge.json
echo
echo "demo: fhir-redcap-bridge status --config demo/bridge.json"
build/bridge/fhir-redcap-bridge status --config demo/bridge.json
echo
echo "demo: run it again: the crawl starts from each type's watermark (less a 30 s safety"
echo "      margin, so here everything is read again) and nothing is stored twice"
build/bridge/fhir-redcap-bridge sync --once --config demo/bridge.json 2>&1 | tail -n 1
