#!/usr/bin/env python3
"""Summarises a scripts/fuzz.sh run: the distinct 5xx with a curl reproduction and the
all-in-one's log lines for them.

    report.py REQUESTS_LOG 5XX_LOG AIO_LOG [MICROVERSION=SCHEMATHESIS_LOG …]

Prints one block per distinct (method, path template, status): how often, then for the shortest
occurrence the request as sent (as a curl command, the token replaced by $TOKEN) and the
all-in-one's log lines that name its request id. From schemathesis's own logs, it lists the
responses that violated their schema (response_schema_conformance) and the operations
schemathesis could not test (its errors), which do not fail the run.
"""

import collections
import json
import re
import shlex
import sys

requests_log, errors_log, aio_log = sys.argv[1:4]
st_logs = [a.split("=", 1) for a in sys.argv[4:]]


def schemathesis_findings():
    header = re.compile(r"^_{3,} (\S+ \S+) _{3,}$")
    violations = collections.OrderedDict()
    errors = collections.OrderedDict()
    for mv, path in st_logs:
        try:
            lines = open(path, errors="replace").read().splitlines()
        except OSError:
            continue
        op = None
        for i, line in enumerate(lines):
            m = header.match(line)
            if m:
                op = m[1]
                if i + 1 < len(lines) and lines[i + 1].strip() and not lines[i + 1].startswith("1."):
                    errors.setdefault((op, lines[i + 1].strip()), set()).add(mv)
                continue
            if op and line.strip() == "- ST108 Response violates schema" or (
                op and line.strip().startswith("- ST108 Response violates schema (")
            ):
                msg = next((l.strip() for l in lines[i + 1:i + 4] if l.strip()), "")
                at = next((l.strip() for l in lines[i + 1:i + 12] if l.strip().startswith("Schema at")), "")
                violations.setdefault((op, at.rstrip(":")), (msg, set()))[1].add(mv)
    return violations, errors


violations, st_errors = schemathesis_findings()
if st_logs:
    print(f"response schema violations: {len(violations)}")
    for (op, at), (msg, mvs) in violations.items():
        print(f"   {op} at {','.join(sorted(mvs))}: {at}: {msg[:200]}")
    if st_errors:
        print(f"operations schemathesis could not test: {len(st_errors)}")
        for (op, what), mvs in st_errors.items():
            print(f"   {op} at {','.join(sorted(mvs))}: {what}")

statuses = collections.Counter()
with open(requests_log) as f:
    for line in f:
        parts = line.rstrip("\n").split("\t")
        if len(parts) >= 3:
            statuses[parts[2]] += 1
print("statuses: " + ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items())))

groups = collections.OrderedDict()
with open(errors_log) as f:
    for line in f:
        e = json.loads(line)
        groups.setdefault((e["method"], e["path"], str(e["status"])), []).append(e)

if not groups:
    print("no 5xx and no unanswered request")
    sys.exit(0)

with open(aio_log, errors="replace") as f:
    log = f.read().splitlines()

SKIP = {"content-length", "user-agent", "accept-encoding", "connection", "x-schemathesis-testcaseid"}
for (method, path, status), entries in groups.items():
    # The shortest reproduction of the group.
    e = min(entries, key=lambda x: len(x.get("body") or "") + len(x.get("url") or ""))
    print(f"\n== {status} {method} {path}: {len(entries)} time(s)")
    cmd = ["curl", "-si", "-X", method, e["url"]]
    for k, v in e["headers"].items():
        if k.lower() in SKIP:
            continue
        if k.lower() == "x-auth-token":
            v = "$TOKEN"
        cmd += ["-H", f"{k}: {v}"]
    if e.get("body") is not None:
        cmd += ["--data-binary", e["body"]]
    print("   " + " ".join(shlex.quote(c) if "$TOKEN" not in c else f'"{c}"' for c in cmd))
    if e.get("response"):
        print(f"   response: {e['response'][:300]}")
    rid = e.get("request_id")
    lines = [l for l in log if rid and rid != "-" and rid in l]
    for l in lines[:5]:
        print(f"   log: {l[:1000]}")
    if not lines:
        print("   log: (no line names its request id)")
