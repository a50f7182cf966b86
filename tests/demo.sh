#!/usr/bin/env bash
# The demo: set everything up, start the test FHIR server with a few
# synthetic patients and the REDCap API emulator with the example study
# (conf/example-project), pull the patients into an encrypted store, curate
# them through conf/example-project/mapping.json and push them into REDCap
# with one `sync --once`; then show `status`, one record as REDCap holds it,
# and where one of its values came from (`explain`). Then downtime
# charting: the EHR goes dark, a nurse charts a heart rate into the bridge
# and reads the cached summary; the EHR comes back and the entry is written
# to it exactly once (with its Provenance) and on to REDCap. Everything
# lands in ./demo/ (made anew on every run).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
bash tests/setup.sh

# The servers start empty each time, so the bridge's store does too (and a
# rerun never reads the last run's server URLs).
rm -rf demo
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
  "downtime": { "identifier_system": "urn:oid:2.16.840.1.113883.3.9999.1" },
  "ui": { "password_log2n": 12 },
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

echo
echo "demo: downtime charting. A clinician (password on stdin):"
echo "demo: fhir-redcap-bridge users add nurse1 --config demo/bridge.json"
build/bridge/fhir-redcap-bridge users list --json --config demo/bridge.json | grep -q '"nurse1"' ||
	echo 'demo password 1234' | build/bridge/fhir-redcap-bridge users add nurse1 --display "Nurse One" \
		--config demo/bridge.json
echo "demo: the EHR goes dark (the test server drops every request)"
node -e 'fetch(new URL("/__control/outage", process.argv[1]), {method: "POST", body: JSON.stringify({mode: "drop"})})
  .then((r) => r.json()).then((j) => console.log("demo: outage", j.mode))' "$base"
echo "demo: fhir-redcap-bridge chart vitals --user nurse1 --patient MRN00000001 --code hr --value 84"
uuid=$(build/bridge/fhir-redcap-bridge chart vitals --config demo/bridge.json --user nurse1 --patient MRN00000001 \
	--code hr --value 84)
echo "demo: saved as entry $uuid"
echo "demo: fhir-redcap-bridge summary --patient MRN00000001 (the cached copy, first lines)"
build/bridge/fhir-redcap-bridge summary --config demo/bridge.json --user nurse1 --patient MRN00000001 | head -n 12
echo "..."
echo "demo: sync --once while the EHR is dark: the entry stays pending"
build/bridge/fhir-redcap-bridge sync --once --config demo/bridge.json >/dev/null 2>&1 || true
build/bridge/fhir-redcap-bridge chart list --config demo/bridge.json | head -n 3
echo "demo: the EHR is back"
node -e 'fetch(new URL("/__control/outage", process.argv[1]), {method: "POST", body: JSON.stringify({mode: "off"})})
  .then((r) => r.json()).then((j) => console.log("demo: outage", j.mode))' "$base"
build/bridge/fhir-redcap-bridge sync --once --config demo/bridge.json 2>&1 | grep -E "downtime|sync complete" || true
build/bridge/fhir-redcap-bridge chart list --config demo/bridge.json | head -n 3
echo "demo: the EHR has it once, with its Provenance:"
node -e '
const [base, sys, uuid] = process.argv.slice(1);
(async () => {
  const o = await (await fetch(`${base}/Observation?identifier=${encodeURIComponent(sys + "|" + uuid)}`)).json();
  const p = await (await fetch(`${base}/Provenance/dt-${uuid}`)).json();
  console.log(`demo: Observation matches: ${o.total ?? (o.entry || []).length}; Provenance ${p.id} -> ${p.target[0].reference}, recorded ${p.recorded}`);
})();' "$base" "urn:oid:2.16.840.1.113883.3.9999.1" "$uuid"
