"""Schemathesis hooks of scripts/fuzz.sh (loaded with SCHEMATHESIS_HOOKS=this file).

- Counts every request schemathesis sends: one line `METHOD<TAB>PATH-TEMPLATE<TAB>STATUS<TAB>
  REQUEST-ID<TAB>URL` per request in $FUZZ_REQUESTS_LOG (status `ERR` when no answer came).
- Records each 5xx (and each request that got no answer) as a JSON line in $FUZZ_5XX_LOG: the
  method, path template and the request as sent (URL, headers, body), for reproduction.
- With $FUZZ_SEED_IDS (a JSON file written by tests/fuzz/seed.py), path parameters are, half of
  the time, the ids of real resources instead of generated strings, so that the fuzzer reaches
  past the 404s (a real server, flavor, aggregate, key pair, image, …).
"""

import json
import os
import re
import threading

import schemathesis
from hypothesis import strategies as st

_lock = threading.Lock()
_requests = open(os.environ["FUZZ_REQUESTS_LOG"], "a", buffering=1)
_errors = open(os.environ["FUZZ_5XX_LOG"], "a", buffering=1)

_seed = {}
if os.environ.get("FUZZ_SEED_IDS"):
    with open(os.environ["FUZZ_SEED_IDS"]) as f:
        _seed = json.load(f)

# Which seeded id a path parameter names: (path template prefix, parameter) -> seed key. The
# first match wins; `id` means the last parameter of the path.
_ROUTES = [
    ("/v2.1/servers/{server_id}/metadata/{id}", "id", "metadata_key"),
    ("/v2.1/servers/{server_id}/tags/{id}", "id", "tag"),
    ("/v2.1/servers/{server_id}/os-instance-actions/{id}", "id", "request_id"),
    ("/v2.1/servers/{server_id}/ips/{id}", "id", "network_name"),
    ("/v2.1/servers/", "server_id", "server"),
    ("/v2.1/servers/{id}", "id", "server"),
    ("/v2.1/flavors/{flavor_id}/os-extra_specs/{id}", "id", "extra_spec"),
    ("/v2.1/flavors/", "flavor_id", "flavor"),
    ("/v2.1/flavors/{id}", "id", "flavor"),
    ("/v2.1/images/{image_id}/metadata/{id}", "id", "image_meta_key"),
    ("/v2.1/images/", "image_id", "image"),
    ("/v2.1/images/{id}", "id", "image"),
    ("/v2.1/os-aggregates/{id}", "id", "aggregate"),
    ("/v2.1/os-keypairs/{id}", "id", "keypair"),
    ("/v2.1/os-hypervisors/{id}/search", "id", "hypervisor_hostname"),
    ("/v2.1/os-hypervisors/{id}/servers", "id", "hypervisor_hostname"),
    ("/v2.1/os-hypervisors/{id}", "id", "hypervisor"),
    ("/v2.1/os-services/{id}", "id", "service"),
    ("/v2.1/os-hosts/{id}", "id", "host"),
    ("/v2.1/os-quota-sets/{id}", "id", "project"),
    ("/v2.1/os-quota-class-sets/{id}", "id", "quota_class"),
    ("/v2.1/os-simple-tenant-usage/{id}", "id", "project"),
    ("/v2.1/os-networks/{id}", "id", "network"),
    ("/v2.1/os-tenant-networks/{id}", "id", "network"),
    ("/v2.1/os-instance_usage_audit_log/{id}", "id", "audit_period"),
]
# Hypervisors and services are named by integer ids before 2.53, by uuids from it.
_MV = tuple(int(x) for x in os.environ.get("FUZZ_MICROVERSION", "2.1").split("."))
for _key in ("hypervisor", "service"):
    _v = _seed.get(f"{_key}_uuid" if _MV >= (2, 53) else f"{_key}_int")
    if _v is not None:
        _seed[_key] = _v


# The seeded resources themselves are not deleted (the rest of the run would only see 404s).
_KEEP = re.compile(r"^/v2\.1/[^/]+/\{[^}]+\}$")


def _real_ids(method, path, params):
    if method.upper() == "DELETE" and _KEEP.match(path):
        return None
    out = dict(params)
    changed = False
    for name in params:
        for prefix, pname, key in _ROUTES:
            if name == pname and path.startswith(prefix) and key in _seed:
                out[name] = str(_seed[key])
                changed = True
                break
    return out if changed else None


if _seed:

    @schemathesis.hook
    def flatmap_path_parameters(context, path_parameters):
        op = context.operation
        real = _real_ids(op.method, op.path, path_parameters or {})
        if real is None:
            return st.just(path_parameters)
        return st.sampled_from([path_parameters, real])

    @schemathesis.hook
    def map_case(context, case):
        # forceDelete would delete the seeded server like a DELETE: aimed elsewhere instead.
        body = case.body if isinstance(case.body, dict) else {}
        params = case.path_parameters or {}
        if (
            case.operation.path == "/v2.1/servers/{id}/action"
            and "forceDelete" in body
            and str(params.get("id")) == str(_seed.get("server"))
        ):
            case.path_parameters = {**params, "id": "00000000-0000-0000-0000-000000000000"}
        return case


def _record(case, status, request_id, request, extra=None):
    method = case.method.upper()
    url = request.url if request is not None else "-"
    line = f"{method}\t{case.operation.path}\t{status}\t{request_id}\t{url}\n"
    entry = None
    if status == "ERR" or (isinstance(status, int) and status >= 500):
        body = request.body if request is not None else None
        if isinstance(body, bytes):
            body = body.decode("utf-8", "replace")
        headers = dict(request.headers) if request is not None else {}
        entry = {
            "method": method,
            "path": case.operation.path,
            "status": status,
            "request_id": request_id,
            "url": request.url if request is not None else None,
            "headers": headers,
            "body": body,
        }
        if extra:
            entry.update(extra)
    with _lock:
        _requests.write(line)
        if entry is not None:
            _errors.write(json.dumps(entry) + "\n")


@schemathesis.hook
def after_call(context, case, response):
    rid = response.headers.get("x-openstack-request-id") or response.headers.get(
        "x-compute-request-id"
    )
    if isinstance(rid, list):
        rid = rid[0] if rid else None
    extra = None
    if response.status_code >= 500:
        extra = {"response": response.text[:500]}
    _record(case, response.status_code, rid or "-", response.request, extra)


@schemathesis.hook
def after_network_error(context, case, request):
    _record(case, "ERR", "-", request)
