#!/usr/bin/env bash
# Fuzzes the Compute API of an all-in-one of this tree with schemathesis, driven by the reference
# OpenAPI description (/work/shared/reference/openapi/compute-v2.104.yaml, read only).
#
#   scripts/fuzz.sh [--short] [--debug]
#
# Builds the all-in-one (release; --debug: the debug build, as the test script has made it), starts its own on a free loopback port with a fresh state
# directory var/fuzz/run.XXXXXX (SQLite, the in-process bus, the fake driver), gets a Keystone
# token for the bootstrap admin and makes a few real resources (tests/fuzz/seed.py: a server, a
# flavor, an image, a network, …, whose ids the fuzzer uses for half of its path parameters),
# then runs schemathesis rounds against http://127.0.0.1:PORT with the `not_a_server_error` check
# until FUZZ_TARGET requests were sent (10000; --short: one round of a few hundred). Each round
# fuzzes at one microversion: the service's newest, then 2.1 (the deprecated proxies and the
# integer ids), and so on. Every request is counted by tests/fuzz/hooks.py.
#
# While it runs, the all-in-one's RSS (VmRSS) is sampled every second. It fails when the
# all-in-one died or stopped answering, or when any request got a 5xx (or no answer); each
# distinct 5xx is listed with a curl reproduction and its log line (tests/fuzz/report.py).
# Results stay in the run's directory: aio.log, requests.tsv (one line per request), 5xx.jsonl,
# rss.log, schemathesis-*.log, report.txt (var/fuzz/last; the five latest runs are kept).
#
# Environment: FUZZ_TARGET (requests, 10000), FUZZ_SEED (schemathesis seed of the first round),
# FUZZ_WORKERS (2), FUZZ_MAX_EXAMPLES (per operation and round, 25), FUZZ_VERSIONS (e.g.
# "2.96 2.1"; default: the service's newest and 2.1), FUZZ_CHECKS (schemathesis checks, default
# not_a_server_error,response_schema_conformance). Responses are checked against the schema of
# their microversion (tests/fuzz/prepare_schema.py picks it, and relaxes the two places where the
# reference is stricter than Nova); violations are listed in the report but do not fail the run.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/aio.sh
root=$PWD

short=
profile=release
for a in "$@"; do
    case "$a" in
        --short) short=1 ;;
        --debug) profile=debug ;;
        -h | --help) awk 'NR > 1 && /^#/ {sub(/^# ?/, ""); print; next} NR > 1 {exit}' "$0"; exit 0 ;;
        *) echo "usage: $0 [--short] [--debug]" >&2; exit 2 ;;
    esac
done

SCHEMATHESIS_VERSION=4.32.5
# The reference description, beside the repository (FUZZ_OPENAPI elsewhere).
reference=${FUZZ_OPENAPI:-$root/../shared/reference/openapi/compute-v2.104.yaml}
[ -f "$reference" ] || reference=/work/shared/reference/openapi/compute-v2.104.yaml
py=$root/.venv/bin/python

# schemathesis in the project's virtualenv, at the version this script was written against.
if [ ! -x "$py" ]; then
    python3 -m venv .venv
fi
if [ "$("$root/.venv/bin/schemathesis" --version 2>/dev/null | awk '{print $NF}')" != "$SCHEMATHESIS_VERSION" ]; then
    .venv/bin/pip install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
"$py" -c 'import yaml, requests' 2>/dev/null || .venv/bin/pip install -q --disable-pip-version-check pyyaml requests

if ! dpkg -s libssl-dev >/dev/null 2>&1 || ! command -v pkg-config >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libssl-dev pkg-config >/dev/null
fi
build_aio "$profile"

mkdir -p var/fuzz
# The five latest runs are kept.
# (None yet on a fresh clone: ls fails, which pipefail would make fatal.)
{ ls -1dt var/fuzz/run.* 2>/dev/null || true; } | tail -n +5 | xargs -r rm -rf
work=$(mktemp -d "$root/var/fuzz/run.XXXXXX")
ln -sfn "$(basename "$work")" var/fuzz/last
port=$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url=http://127.0.0.1:$port
admin_password=fuzz-admin-$RANDOM$RANDOM
echo "fuzz: all-in-one on $url, state in ${work#"$root"/}"

aio=
sampler=
st=
cleanup() {
    # (errexit holds in a trap: a process already gone must not end the clean-up.)
    [ -z "$st" ] || kill "$st" 2>/dev/null || true
    [ -z "$sampler" ] || kill "$sampler" 2>/dev/null || true
    if [ -n "$aio" ] && kill -0 "$aio" 2>/dev/null; then
        kill -INT "$aio" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$aio" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$aio" 2>/dev/null || true
    fi
    wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_aio "$work" "$port" "$admin_password" "fuzz-demo-$RANDOM$RANDOM" "$profile"
up() { curl -sf -o /dev/null --max-time 5 "$url/v2.1/"; }
for _ in $(seq 1 150); do
    up && break
    kill -0 "$aio" 2>/dev/null || { cat "$work/aio.log" >&2; echo "fuzz: the all-in-one did not start" >&2; exit 1; }
    sleep 0.2
done
up || { echo "fuzz: the all-in-one does not answer on $url" >&2; exit 1; }

rss() { awk '/^VmRSS:/ {print $2}' "/proc/$aio/status" 2>/dev/null || true; }
( while kill -0 "$aio" 2>/dev/null; do echo "$(date +%s) $(rss)"; sleep 1; done ) >"$work/rss.log" 2>/dev/null &
sampler=$!

"$py" tests/fuzz/seed.py "$url" "$admin_password" "$work/token" "$work/seed.json"
token=$(cat "$work/token")
maxver=$(curl -sf "$url/v2.1/" | "$py" -c 'import json,sys; print(json.load(sys.stdin)["version"]["version"])')

if [ -n "$short" ]; then
    target=${FUZZ_TARGET:-200}
    versions=(${FUZZ_VERSIONS:-$maxver})
    max_examples=${FUZZ_MAX_EXAMPLES:-2}
    phases_first=fuzzing
    rounds_max=1
else
    target=${FUZZ_TARGET:-10000}
    versions=(${FUZZ_VERSIONS:-$maxver 2.1})
    max_examples=${FUZZ_MAX_EXAMPLES:-25}
    phases_first=examples,coverage,fuzzing,stateful
    rounds_max=${FUZZ_MAX_ROUNDS:-20}
fi
seed=${FUZZ_SEED:-$RANDOM$RANDOM}
checks=${FUZZ_CHECKS:-not_a_server_error,response_schema_conformance}

export FUZZ_REQUESTS_LOG=$work/requests.tsv FUZZ_5XX_LOG=$work/5xx.jsonl FUZZ_SEED_IDS=$work/seed.json
export SCHEMATHESIS_HOOKS=$root/tests/fuzz/hooks.py
: >"$FUZZ_REQUESTS_LOG"
: >"$FUZZ_5XX_LOG"
count() { wc -l <"$FUZZ_REQUESTS_LOG" | tr -d ' '; }

rss_start=$(rss)
start=$(date +%s)
round=0
declare -A seen_version
round_logs=()
while [ "$(count)" -lt "$target" ] && [ "$round" -lt "$rounds_max" ]; do
    mv=${versions[$((round % ${#versions[@]}))]}
    # Examples and the coverage phase are deterministic: once per microversion.
    if [ -z "${seen_version[$mv]:-}" ]; then phases=$phases_first; else phases=fuzzing,stateful; fi
    seen_version[$mv]=1
    "$py" tests/fuzz/prepare_schema.py "$reference" "$work/compute-$mv.json" "$url" "$mv" >/dev/null
    before=$(count)
    log=$work/schemathesis-$round.log
    round_logs+=("$mv=$log")
    # In the background, so that a signal reaches the trap at once, not when the round ends.
    (
        cd "$work"
        FUZZ_MICROVERSION=$mv exec "$root/.venv/bin/schemathesis" run "$work/compute-$mv.json" \
            --url "$url" \
            -H "X-Auth-Token: $token" \
            -H "OpenStack-API-Version: compute $mv" \
            -H "X-OpenStack-Nova-API-Version: $mv" \
            --checks "$checks" \
            --continue-on-failure \
            --phases "$phases" \
            --max-examples "$max_examples" \
            --workers "${FUZZ_WORKERS:-2}" \
            --seed $((seed + round)) \
            --suppress-health-check all \
            --generation-database none \
            --request-timeout 30 \
            --warnings off \
            --no-color
    ) >"$log" 2>&1 &
    st=$!
    st_status=0
    wait "$st" || st_status=$?
    st=
    sent=$(($(count) - before))
    echo "fuzz: round $round at microversion $mv ($phases, seed $((seed + round))): $sent requests, schemathesis exit $st_status ($(grep -E '^ *[0-9]+ generated' "$log" | tail -1 | sed 's/^ *//'))"
    if [ "$sent" -eq 0 ]; then
        tail -30 "$log" >&2
        echo "fuzz: schemathesis sent nothing" >&2
        exit 1
    fi
    kill -0 "$aio" 2>/dev/null || break
    round=$((round + 1))
done
end=$(date +%s)
duration=$((end - start))

alive=yes
if ! kill -0 "$aio" 2>/dev/null; then
    alive="no (died)"
elif ! up; then
    alive="no (does not answer)"
fi
rss_end=$(rss)
kill "$sampler" 2>/dev/null || true
wait "$sampler" 2>/dev/null || true
sampler=
rss_peak=$(awk 'NF == 2 && $2 > m {m = $2} END {print m + 0}' "$work/rss.log")
mib() { awk -v k="${1:-0}" 'BEGIN {printf "%.1f MiB", k / 1024}'; }

requests=$(count)
# Nova's own 501s are not failures: os-hosts' host power and maintenance actions, which Nova's
# drivers do not implement either (the README's compatibility notes).
nova_501='^/v2\.1/os-hosts/\{id\}(/(reboot|shutdown|startup))?$'
n501=$(awk -F'\t' -v re="$nova_501" '$3 == "501" && $2 ~ re' "$FUZZ_REQUESTS_LOG" | wc -l | tr -d ' ')
n5xx=$(awk -F'\t' -v re="$nova_501" '$3 == "ERR" || (($3 + 0) >= 500 && !($3 == "501" && $2 ~ re))' "$FUZZ_REQUESTS_LOG" | wc -l | tr -d ' ')
"$py" tests/fuzz/report.py "$FUZZ_REQUESTS_LOG" "$FUZZ_5XX_LOG" "$work/aio.log" "${round_logs[@]}" | tee "$work/report.txt"
violations=$(sed -n 's/^response schema violations: //p' "$work/report.txt")
echo "fuzz: RSS start $(mib "$rss_start"), peak $(mib "$rss_peak"), end $(mib "${rss_end:-0}"); all-in-one alive: $alive"
echo "fuzz summary: $requests requests, $n5xx 5xx (and $n501 of Nova's 501s), peak RSS $(mib "$rss_peak"), ${duration}s; ${violations:-0} response schema violation(s) (schemathesis $SCHEMATHESIS_VERSION, microversions ${versions[*]}, $round round(s); results in ${work#"$root"/})"

status=0
[ "$alive" = yes ] || { echo "fuzz: FAILED: the all-in-one is not alive: $alive" >&2; tail -20 "$work/aio.log" >&2; status=1; }
[ "$n5xx" -eq 0 ] || { echo "fuzz: FAILED: $n5xx requests got a 5xx or no answer" >&2; status=1; }
[ "$requests" -ge "$target" ] || { echo "fuzz: FAILED: only $requests of $target requests sent" >&2; status=1; }
exit $status
