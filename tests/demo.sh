#!/usr/bin/env bash
# The demo: set everything up, start the test FHIR server with a few
# synthetic patients and the REDCap API emulator with the example study
# (conf/example-project), pull the patients into an encrypted store, curate
# them through conf/example-project/mapping.json and push them into REDCap
# with one `sync --once`; then show `status`, one record as REDCap holds it,
# and where one of its values came from (`explain`). Everything lands in
# ./demo/ (delete it to start over).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
bash tests/setup.sh

mkdir -p demo
chmod 700 demo
node tests/servers/fhir-server.mjs --port 0 --generate "${DEMO_PATIENTS:-25}" --seed 1 \
	--port-file demo/fhir-url >demo/fhir-server.log 2>&1 &
server=$!
token=0123456789ABCDEF0123456789ABCDEF
node tests/servers/redcap-emulator.mjs --port 0 --port-file demo/redcap-url \
	--project "example=conf/example-project/dictionary.csv,repeating=vitals;labs;conditions;medications;allergies" \
	--token "$token=example" >demo/redcap-emulator.log 2>&1 &
emulator=$!
trap 'kill $server $emulator 2>/dev/null; wait $server $emulator 2>/dev/null || true' EXIT
for f in fhir-url redcap-url; do
	for _ in $(seq 1 300); do
		[ -s demo/$f ] && break
		kill -0 $server 2>/dev/null || { cat demo/fhir-server.log; exit 1; }
		kill -0 $emulator 2>/dev/null || { cat demo/redcap-emulator.log; exit 1; }
		sleep 0.1
	done
done
base=$(cat demo/fhir-url)
redcap=$(cat demo/redcap-url)
echo "demo: FHIR server with ${DEMO_PATIENTS:-25} synthetic patients at $base"
echo "demo: REDCap API emulator with the example study at $redcap"
(umask 077; echo "$token" >demo/redcap.token)
cp conf/example-project/mapping.json demo/mapping.json

cat >demo/bridge.json <<JSON
{
  "store": { "path": "bridge.db", "key_file": "store.key" },
  "fhir": {
    "base_url": "$base",
    "resources": ["Patient", "Encounter", "Observation", "Condition", "MedicationRequest", "AllergyIntolerance"],
    "page_size": 100,
    "max_concurrency": 4,
    "poll_interval_s": 60,
    "auth": { "type": "none" },
    "mrn_system": "urn:oid:1.2.36.146.595.217.0.1"
  },
  "site": { "timezone": "UTC" },
  "redcap": {
    "projects": [
      { "name": "example", "url": "$redcap", "token_file": "redcap.token", "mapping": "mapping.json" }
    ]
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
echo "demo: record MRN00000001 as REDCap holds it (the emulator's view; first rows)"
node -e '
fetch(new URL("/__control/records?project=example", process.argv[1])).then((r) => r.json()).then((d) => {
  for (const r of d.rows.filter((x) => x.record_id === "MRN00000001").slice(0, 6))
    console.log(JSON.stringify(Object.fromEntries(Object.entries(r).filter(([, v]) => v !== ""))));
});' "$redcap"

echo
echo "demo: fhir-redcap-bridge explain --project example --record MRN00000001 --field hr_baseline"
build/bridge/fhir-redcap-bridge explain --config demo/bridge.json --project example --record MRN00000001 \
	--field hr_baseline || true
echo
echo "demo: run it again: nothing new is stored, curated or sent"
build/bridge/fhir-redcap-bridge sync --once --config demo/bridge.json 2>&1 | tail -n 3
