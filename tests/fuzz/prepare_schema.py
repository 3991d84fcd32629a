#!/usr/bin/env python3
"""Turns the reference Compute OpenAPI description into one schemathesis can fuzz with.

    prepare_schema.py REFERENCE.yaml OUT.json BASE_URL MICROVERSION

The reference (see /work/shared/reference/openapi/README.md) describes every microversion at
once: operations, parameters, properties and schemas carry `x-openstack: {min-ver, max-ver}`,
and a body or response that changed over time is a `oneOf` of per-version schemas named by the
version they start at (`ServersCreate_20`, `_219`, … `_294`). This keeps only what the given
microversion has:

- operations, parameters and properties outside their min-ver/max-ver are dropped;
- in a `oneOf`/`anyOf`, members outside their range are dropped, and of a group of versioned
  members of one name (`Foo_21`, `Foo_269`) the one with the highest version <= MICROVERSION
  is kept; a `oneOf` left with one member becomes that member;
- `servers` is set to BASE_URL (the paths already start with /v2.1);
- in response schemas only (for the response_schema_conformance check): `format: date-time`
  also admits Nova's naive timestamps (`2026-12-01T02:36:40.462000`, `2026-11-01 00:00:00`:
  Nova's views print them without a zone), the audit log's `hosts_not_run` holds host names,
  not uuids, and a tuple (`prefixItems: [a, b]`, which schemathesis fails to load in a
  response; Nova's image links, in an order Nova does not keep) becomes `items: {anyOf: …}`.

The reference file is only read; the result goes to OUT.json.
"""

import json
import re
import sys

import yaml

HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
VERSIONED = re.compile(r"^(?P<base>.+)_(?P<ver>2\d+)$")


def parse_ver(s):
    major, _, minor = str(s).partition(".")
    return (int(major), int(minor or 0))


def suffix_ver(digits):
    # `_20` is 2.0, `_21` 2.1, `_219` 2.19, `_2100` 2.100.
    return (int(digits[0]), int(digits[1:]))


class Pruner:
    def __init__(self, doc, mv):
        self.doc = doc
        self.mv = mv

    def resolve(self, node):
        seen = 0
        while isinstance(node, dict) and "$ref" in node and seen < 20:
            ref = node["$ref"]
            if not ref.startswith("#/"):
                break
            target = self.doc
            for part in ref[2:].split("/"):
                target = target.get(part.replace("~1", "/").replace("~0", "~"), {})
            node = target
            seen += 1
        return node

    def in_range(self, node):
        """Whether `node` (or what its $ref names) exists at this microversion."""
        for n in (node, self.resolve(node)):
            if not isinstance(n, dict):
                continue
            xo = n.get("x-openstack")
            if not isinstance(xo, dict):
                continue
            if "min-ver" in xo and parse_ver(xo["min-ver"]) > self.mv:
                return False
            if "max-ver" in xo and parse_ver(xo["max-ver"]) < self.mv:
                return False
        return True

    def pick_versions(self, members):
        """Of members `$ref: …/Foo_2NN`, keeps per `Foo` the highest version <= mv."""
        groups = {}
        out = []
        for m in members:
            ref = m.get("$ref") if isinstance(m, dict) else None
            match = VERSIONED.match(ref.rsplit("/", 1)[-1]) if ref else None
            if not match:
                out.append(m)
                continue
            v = suffix_ver(match["ver"])
            if v > self.mv:
                continue
            base = match["base"]
            if base not in groups:
                out.append(base)  # placeholder keeps the order
                groups[base] = (v, m)
            elif v > groups[base][0]:
                groups[base] = (v, m)
        return [groups[m][1] if isinstance(m, str) else m for m in out]

    def schema(self, node):
        if isinstance(node, list):
            return [self.schema(n) for n in node]
        if not isinstance(node, dict):
            return node
        node = {k: self.schema(v) for k, v in node.items()}
        for key in ("oneOf", "anyOf"):
            if key in node and isinstance(node[key], list):
                members = [m for m in node[key] if self.in_range(m)]
                members = self.pick_versions(members)
                if not members:
                    # Nothing of it exists at this version: an empty object stands in.
                    del node[key]
                    node.setdefault("type", "object")
                elif len(members) == 1 and key == "oneOf":
                    del node[key]
                    only = members[0]
                    if set(node) - {"x-openstack", "description"}:
                        node["allOf"] = node.get("allOf", []) + [only]
                    else:
                        node = only
                else:
                    node[key] = members
        props = node.get("properties")
        if isinstance(props, dict):
            dropped = [k for k, v in props.items() if not self.in_range(v)]
            for k in dropped:
                del props[k]
            if dropped and isinstance(node.get("required"), list):
                node["required"] = [r for r in node["required"] if r not in dropped]
        return node

    def run(self, base_url):
        doc = self.doc
        # Components first (schemas referenced from everywhere), then the paths.
        comps = doc.get("components", {})
        for section in ("schemas", "requestBodies", "responses", "headers"):
            for name, s in list(comps.get(section, {}).items()):
                comps[section][name] = self.schema(s)
        for name, p in list(comps.get("parameters", {}).items()):
            if "schema" in p:
                p["schema"] = self.schema(p["schema"])
        paths = {}
        for path, item in doc["paths"].items():
            new_item = {}
            for key, op in item.items():
                if key == "parameters":
                    new_item[key] = [p for p in op if self.in_range(p)]
                elif key in HTTP_METHODS:
                    if not self.in_range(op):
                        continue
                    op = dict(op)
                    if "parameters" in op:
                        op["parameters"] = [p for p in op["parameters"] if self.in_range(p)]
                    if "requestBody" in op:
                        op["requestBody"] = self.schema(op["requestBody"])
                    if "responses" in op:
                        op["responses"] = self.schema(op["responses"])
                    new_item[key] = op
                else:
                    new_item[key] = item[key]
            if any(k in HTTP_METHODS for k in new_item):
                paths[path] = new_item
        doc["paths"] = paths
        doc["servers"] = [{"url": base_url}]
        return doc


# Nova's timestamps: ISO 8601 with or without a zone, `T` or a space between date and time.
NOVA_TIMESTAMP = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})?$"


def relax_response(node, key=None):
    if isinstance(node, list):
        for n in node:
            relax_response(n)
        return
    if not isinstance(node, dict):
        return
    tuple_items = node.get("prefixItems", node.get("items"))
    if isinstance(tuple_items, list):
        # A tuple (Nova's image links: alternate, bookmark, self, in an order Nova does not
        # keep); schemathesis 4.32 cannot load `prefixItems` in a response: any of them.
        node.pop("prefixItems", None)
        node["items"] = {"anyOf": tuple_items}
    if node.get("format") == "date-time":
        del node["format"]
        node["pattern"] = NOVA_TIMESTAMP
    if key == "hosts_not_run" and isinstance(node.get("items"), dict):
        node["items"].pop("format", None)
    for k, v in node.items():
        relax_response(v, k)


def relax_responses(doc):
    for name, schema in doc.get("components", {}).get("schemas", {}).items():
        if "Response" in name:
            relax_response(schema)
    for item in doc["paths"].values():
        for key, op in item.items():
            if key in HTTP_METHODS:
                relax_response(op.get("responses"))


def main():
    ref, out, base_url, mv = sys.argv[1:5]
    with open(ref) as f:
        doc = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    doc = Pruner(doc, parse_ver(mv)).run(base_url)
    relax_responses(doc)
    with open(out, "w") as f:
        json.dump(doc, f)
    ops = sum(1 for item in doc["paths"].values() for k in item if k in HTTP_METHODS)
    print(f"{ops} operations at microversion {mv} in {out}")


if __name__ == "__main__":
    main()
