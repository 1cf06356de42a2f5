#!/usr/bin/env bash
# Measures connect-identity-sync-reconcile on a large instance: seeds N users (default
# 5000) into the Connect emulator through its control API, writes an Okta-style export
# of them (1 % differing, national mobiles, padded and decomposed names), runs the
# command at its default rate and reports the wall time and the Connect calls the
# emulator journalled, with the most requests seen in any one-second window.
#
#   bench/reconcile.sh [USERS] [extra reconcile arguments...]
#
# Needs the debug builds of the emulator and the command (cargo build -p connect-emulator
# -p connect-identity-sync --bin connect-emulator --bin connect-identity-sync-reconcile),
# found in cargo's target directory wherever it is, and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-5000}
shift || true
target_dir=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
BIN=${RECONCILE_BIN:-$target_dir/debug/connect-identity-sync-reconcile}
EMU=${EMULATOR_BIN:-$target_dir/debug/connect-emulator}
WORK=$(mktemp -d)
trap 'kill "$EMU_PID" 2>/dev/null || true; rm -rf "$WORK"' EXIT

"$EMU" --listen 127.0.0.1:0 --quiet >"$WORK/emulator.out" 2>&1 &
EMU_PID=$!
for _ in $(seq 100); do
  grep -q "listening on" "$WORK/emulator.out" 2>/dev/null && break
  sleep 0.1
done
URL=$(sed -n 's/.*listening on \(http:[^ ]*\).*/\1/p' "$WORK/emulator.out" | head -1)
INSTANCE=11111111-2222-3333-4444-555555555555

python3 - "$N" "$URL" "$INSTANCE" "$WORK" <<'PY'
import json, sys, urllib.request, unicodedata
n, url, instance, work = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
first = ["José", "Zoë", "Ana", "Chen", "Noor", "Kwame", "Lucía", "Hiro"]
users, rows = [], ["login,firstName,lastName,email,secondEmail,mobilePhone,title"]
for i in range(1, n + 1):
    fn, ln = first[i % len(first)], f"Agent{i:05d}"
    mobile = f"+1415{200 + i // 10000}{i % 10000:04d}"
    national = f"(415) {mobile[5:8]}-{mobile[8:12]}"
    users.append({"instanceId": instance, "id": f"{i:08d}-0000-4000-8000-000000000000",
                  "username": f"agent{i:05d}",
                  "identityInfo": {"FirstName": fn, "LastName": ln,
                                   "Email": f"agent{i:05d}@example.com", "Mobile": mobile},
                  "securityProfileIds": ["sp-agent"]})
    # Every 100th user differs (a LastName); the others agree once normalised.
    last = ln + "-Changed" if i % 100 == 0 else ln
    rows.append(",".join([f"agent{i:05d}", f"  {unicodedata.normalize('NFD', fn)} ", last,
                          f"agent{i:05d}@example.com", "", national, "Agent"]))
seed = {"instances": [{"id": instance, "identityManagementType": "CONNECT_MANAGED"}], "users": users}
req = urllib.request.Request(url + "/_emulator/seed", json.dumps(seed).encode(), {"Content-Type": "application/json"})
urllib.request.urlopen(req).read()
urllib.request.urlopen(urllib.request.Request(url + "/_emulator/journal", method="DELETE")).read()
open(f"{work}/export.csv", "w").write("\n".join(rows) + "\n")
PY

echo "reconcile of $N users at the default rate (emulator $URL)"
start=$(date +%s.%N)
set +e
AWS_ENDPOINT_URL_CONNECT=$URL AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE \
AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY AWS_EC2_METADATA_DISABLED=true \
DEFAULT_PHONE_REGION=US \
  /usr/bin/time -f "%e s wall, %U s user, %S s system, %M KiB max RSS" \
  "$BIN" --instance "$INSTANCE" --users "$WORK/export.csv" --preset okta --report "$WORK/report.json" "$@"
code=$?
set -e
end=$(date +%s.%N)
echo "exit status $code, $(python3 -c "print(f'{$end - $start:.1f}')") s"

curl -s "$URL/_emulator/journal" >"$WORK/journal.json"
python3 - "$WORK/journal.json" <<'PY'
import json, sys, collections
journal = json.load(open(sys.argv[1]))
by_op = collections.Counter(e["operation"] for e in journal)
errors = collections.Counter(e.get("errorType") for e in journal if e.get("errorType"))
print("Connect calls:", dict(by_op), "errors:", dict(errors) or "none")
for op in list(by_op) + ["all"]:
    at = sorted(e["at"] for e in journal if op in ("all", e["operation"]))
    # The most requests that arrived in any window of 1000 ms.
    most, j = 0, 0
    for i in range(len(at)):
        while at[i] - at[j] >= 1000:
            j += 1
        most = max(most, i - j + 1)
    span = (at[-1] - at[0]) / 1000 if len(at) > 1 else 0
    rate = (len(at) - 1) / span if span else 0
    print(f"  {op}: {len(at)} calls over {span:.1f} s, {rate:.2f}/s on average, at most {most} in any 1 s")
PY
