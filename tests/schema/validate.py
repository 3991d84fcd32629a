"""Validates Compute API responses against tempest.lib's response schemas.

A filter, one JSON object per line on stdin, one answer per line on stdout:

  in:  {"method": "GET", "path": "/servers/detail", "version": "2.47", "status": 200,
        "headers": {"name": "value", ...}, "body": {...} or null, "request": {...} or null}
  out: {"result": "valid"} | {"result": "invalid", "error": "..."}
       | {"result": "unchecked", "why": "..."}

`path` is relative to the compute endpoint (`/v2.1`), query string included or not; `version`
is the microversion the client asked for (null: none asked, i.e. 2.1). The schema is chosen as
tempest's service clients choose it (their `schema_versions_info` for that microversion), and
checked as they check it (`RestClient.validate_response`: status code, body, headers), so that
a response passes here exactly when tempest would accept it. Error responses (4xx/5xx) are
outside the schemas and come back "unchecked", as do routes tempest has no schema for.
"""

import json
import re
import sys

from tempest.lib.api_schema.response.compute.v2_1 import flavors as flavors_v21
from tempest.lib.api_schema.response.compute.v2_1 import flavors_access
from tempest.lib.api_schema.response.compute.v2_1 import flavors_extra_specs
from tempest.lib.api_schema.response.compute.v2_1 import services as services_v21
from tempest.lib.api_schema.response.compute.v2_11 import services as services_v211
from tempest.lib.api_schema.response.compute.v2_1 import servers as servers_v21
from tempest.lib.api_schema.response.compute.v2_1 import versions as versions_schema
from tempest.lib.common import rest_client
from tempest.lib.services.compute import base_compute_client
from tempest.lib.api_schema.response.compute.v2_1 import availability_zone as az_schema
from tempest.lib.services.compute import flavors_client
from tempest.lib.services.compute import hypervisor_client
from tempest.lib.services.compute import keypairs_client
from tempest.lib.services.compute import limits_client
from tempest.lib.services.compute import quotas_client
from tempest.lib.services.compute import servers_client
from tempest.lib.services.compute import services_client

ID = r"[^/]+"


class Picker(base_compute_client.BaseComputeClient):
    """Only `get_schema` is used: tempest's choice of schema module per microversion."""

    def __init__(self):  # no auth provider, no HTTP: nothing is sent
        pass


def module(versions_info, version):
    base_compute_client.COMPUTE_MICROVERSION = version
    try:
        return Picker().get_schema(versions_info)
    finally:
        base_compute_client.COMPUTE_MICROVERSION = None


def servers(version):
    return module(servers_client.ServersClient.schema_versions_info, version)


def flavors(version):
    return module(flavors_client.FlavorsClient.schema_versions_info, version)


def services(version):
    return module(services_client.ServicesClient.schema_versions_info, version)


def hypervisors(version, name):
    # Nova dropped the capacity fields and /statistics at 2.88; tempest's newest hypervisor
    # schema (2.53) still requires them, so tempest has no schema for 2.88 and later.
    if version and version != "latest" and tuple(map(int, version.split("."))) >= (2, 88):
        return None
    return getattr(module(hypervisor_client.HypervisorClient.schema_versions_info, version), name)


def keypairs(version):
    return module(keypairs_client.KeyPairsClient.schema_versions_info, version)


def quota_sets(version):
    return module(quotas_client.QuotasClient.schema_versions_info, version)


def server_create(version, body):
    # tempest's create_server uses the 2.1 module whatever the microversion.
    s = servers_v21
    # As tempest's client: a reservation id (return_reservation_id) is not validated.
    if isinstance(body, dict) and "reservation_id" in body:
        return None
    if isinstance(body, dict) and "adminPass" in body.get("server", {}):
        return s.create_server_with_admin_pass
    return s.create_server


def server_action(version, request):
    """The schema tempest's servers client uses for the action in the request body."""
    name = next(iter(request or {}), None)
    s = servers_v21  # as tempest's `action`: the 2.1 module's schemas
    if name in ("os-stop", "os-start", "reboot", "lock", "unlock"):
        return s.server_actions_common_schema
    if name == "os-getConsoleOutput":
        return s.get_console_output
    return None


# (method, path regex, schema chooser(version, body, request)); first match wins.
ROUTES = [
    ("GET", r"/?", lambda v, b, r: versions_schema.get_one_version),
    ("GET", r"/servers", lambda v, b, r: servers(v).list_servers),
    ("GET", r"/servers/detail", lambda v, b, r: servers(v).list_servers_detail),
    ("POST", r"/servers", lambda v, b, r: server_create(v, b)),
    ("GET", rf"/servers/{ID}", lambda v, b, r: servers(v).get_server),
    ("PUT", rf"/servers/{ID}", lambda v, b, r: servers(v).update_server),
    # As tempest: delete and actions use the 2.1 module's schemas at every microversion.
    ("DELETE", rf"/servers/{ID}", lambda v, b, r: servers_v21.delete_server),
    ("POST", rf"/servers/{ID}/action", lambda v, b, r: server_action(v, r)),
    # As tempest's servers client: metadata and addresses use the 2.1 module's schemas.
    ("GET", rf"/servers/{ID}/metadata", lambda v, b, r: servers_v21.list_server_metadata),
    # tempest: POST merges (update_server_metadata), PUT replaces (set_server_metadata).
    ("POST", rf"/servers/{ID}/metadata", lambda v, b, r: servers_v21.update_server_metadata),
    ("PUT", rf"/servers/{ID}/metadata", lambda v, b, r: servers_v21.set_server_metadata),
    ("GET", rf"/servers/{ID}/metadata/{ID}",
     lambda v, b, r: servers_v21.set_show_server_metadata_item),
    ("PUT", rf"/servers/{ID}/metadata/{ID}",
     lambda v, b, r: servers_v21.set_show_server_metadata_item),
    ("DELETE", rf"/servers/{ID}/metadata/{ID}",
     lambda v, b, r: servers_v21.delete_server_metadata_item),
    ("GET", rf"/servers/{ID}/tags", lambda v, b, r: servers(v).list_tags),
    ("PUT", rf"/servers/{ID}/tags", lambda v, b, r: servers(v).update_all_tags),
    ("DELETE", rf"/servers/{ID}/tags", lambda v, b, r: servers(v).delete_all_tags),
    ("GET", rf"/servers/{ID}/tags/{ID}", lambda v, b, r: servers(v).check_tag_existence),
    ("PUT", rf"/servers/{ID}/tags/{ID}", lambda v, b, r: servers(v).update_tag),
    ("DELETE", rf"/servers/{ID}/tags/{ID}", lambda v, b, r: servers(v).delete_tag),
    ("GET", rf"/servers/{ID}/ips", lambda v, b, r: servers_v21.list_addresses),
    ("GET", rf"/servers/{ID}/ips/{ID}", lambda v, b, r: servers_v21.list_addresses_by_network),
    ("GET", rf"/servers/{ID}/os-instance-actions",
     lambda v, b, r: servers(v).list_instance_actions),
    ("GET", rf"/servers/{ID}/os-instance-actions/{ID}",
     lambda v, b, r: servers(v).show_instance_action),
    ("GET", r"/flavors", lambda v, b, r: flavors(v).list_flavors),
    ("GET", r"/flavors/detail", lambda v, b, r: flavors(v).list_flavors_details),
    ("POST", r"/flavors", lambda v, b, r: flavors(v).create_update_get_flavor_details),
    ("GET", rf"/flavors/{ID}", lambda v, b, r: flavors(v).create_update_get_flavor_details),
    ("PUT", rf"/flavors/{ID}", lambda v, b, r: flavors(v).create_update_get_flavor_details),
    ("DELETE", rf"/flavors/{ID}", lambda v, b, r: flavors_v21.delete_flavor),
    ("GET", rf"/flavors/{ID}/os-extra_specs",
     lambda v, b, r: flavors_extra_specs.set_get_flavor_extra_specs),
    ("POST", rf"/flavors/{ID}/os-extra_specs",
     lambda v, b, r: flavors_extra_specs.set_get_flavor_extra_specs),
    ("GET", rf"/flavors/{ID}/os-extra_specs/{ID}",
     lambda v, b, r: flavors_extra_specs.set_get_flavor_extra_specs_key),
    ("PUT", rf"/flavors/{ID}/os-extra_specs/{ID}",
     lambda v, b, r: flavors_extra_specs.set_get_flavor_extra_specs_key),
    ("DELETE", rf"/flavors/{ID}/os-extra_specs/{ID}",
     lambda v, b, r: flavors_extra_specs.unset_flavor_extra_specs),
    ("GET", r"/os-services", lambda v, b, r: services(v).list_services),
    # As tempest's services client: the routes before 2.53 use fixed schemas.
    ("PUT", r"/os-services/enable", lambda v, b, r: services_v21.enable_disable_service),
    ("PUT", r"/os-services/disable", lambda v, b, r: services_v21.enable_disable_service),
    ("PUT", r"/os-services/disable-log-reason",
     lambda v, b, r: services_v21.disable_log_reason),
    ("PUT", r"/os-services/force-down", lambda v, b, r: services_v211.update_forced_down),
    ("PUT", rf"/os-services/{ID}", lambda v, b, r: services(v).update_service),
    ("GET", rf"/flavors/{ID}/os-flavor-access",
     lambda v, b, r: flavors_access.add_remove_list_flavor_access),
    ("POST", rf"/flavors/{ID}/action",
     lambda v, b, r: flavors_access.add_remove_list_flavor_access),
    ("GET", r"/os-hypervisors", lambda v, b, r: hypervisors(v, "list_search_hypervisors")),
    ("GET", r"/os-hypervisors/detail",
     lambda v, b, r: hypervisors(v, "list_hypervisors_detail")),
    ("GET", r"/os-hypervisors/statistics",
     lambda v, b, r: hypervisors(v, "get_hypervisor_statistics")),
    ("GET", rf"/os-hypervisors/{ID}", lambda v, b, r: hypervisors(v, "get_hypervisor")),
    ("GET", r"/os-keypairs", lambda v, b, r: keypairs(v).list_keypairs),
    ("POST", r"/os-keypairs", lambda v, b, r: keypairs(v).create_keypair),
    ("GET", rf"/os-keypairs/{ID}", lambda v, b, r: keypairs(v).get_keypair),
    ("DELETE", rf"/os-keypairs/{ID}", lambda v, b, r: keypairs(v).delete_keypair),
    ("GET", r"/limits",
     lambda v, b, r: module(limits_client.LimitsClient.schema_versions_info, v).get_limit),
    ("GET", rf"/os-quota-sets/{ID}", lambda v, b, r: quota_sets(v).get_quota_set),
    ("GET", rf"/os-quota-sets/{ID}/defaults", lambda v, b, r: quota_sets(v).get_quota_set),
    ("GET", rf"/os-quota-sets/{ID}/detail",
     lambda v, b, r: quota_sets(v).get_quota_set_details),
    ("PUT", rf"/os-quota-sets/{ID}", lambda v, b, r: quota_sets(v).update_quota_set),
    ("DELETE", rf"/os-quota-sets/{ID}", lambda v, b, r: quota_sets(v).delete_quota),
    ("GET", r"/os-availability-zone", lambda v, b, r: az_schema.list_availability_zone_list),
    ("GET", r"/os-availability-zone/detail",
     lambda v, b, r: az_schema.list_availability_zone_list_detail),
]


class Resp(dict):
    """What `validate_response` reads of a response: `status` and the headers as a dict."""

    def __init__(self, status, headers):
        super().__init__({k.lower(): v for k, v in headers.items()})
        self.status = status


def brief(message):
    """jsonschema's message without the schema it prints: what failed, and where."""
    head = message.split("\n\nFailed validating", 1)[0]
    where = re.search(r"\n\nOn (instance[^\n]*)", message)
    return head + (f" (at {where.group(1).rstrip(':')})" if where else "")


def check(exchange):
    status = exchange["status"]
    if status >= 400:
        return {"result": "unchecked", "why": "error responses have no schema"}
    path = exchange["path"].split("?", 1)[0]
    method = exchange["method"].upper()
    version = exchange.get("version")
    for route_method, pattern, choose in ROUTES:
        # The path templates overlap (`/servers/detail` is also `/servers/{id}`): the more
        # specific entries come first among those that match.
        if route_method == method and re.fullmatch(pattern, path):
            specific = [
                c for m, p, c in ROUTES
                if m == method and re.fullmatch(p, path) and ID not in p
            ]
            chooser = specific[0] if specific else choose
            schema = chooser(version, exchange.get("body"), exchange.get("request"))
            if schema is None:
                return {"result": "unchecked", "why": f"no schema for {method} {path}"}
            try:
                rest_client.RestClient.validate_response(
                    schema, Resp(status, exchange.get("headers") or {}), exchange.get("body")
                )
            except Exception as e:  # tempest's InvalidHTTPResponseBody/Header, status codes
                return {"result": "invalid", "error": f"{type(e).__name__}: {brief(str(e))}"}
            return {"result": "valid"}
    return {"result": "unchecked", "why": f"no schema for {method} {path}"}


def main():
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            answer = check(json.loads(line))
        except Exception as e:
            answer = {"result": "invalid", "error": f"validator: {type(e).__name__}: {e}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
