"""openstacksdk against the service: `python compute.py` with OS_CLIENT_CONFIG_FILE set to the
all-in-one's clouds.yaml. The same ground as the CLI test, through `conn.compute` (and
`conn.image` for the image's id), with the microversions openstacksdk negotiates. Exits non-zero
with a message on the first thing that is not as Nova would have it.
"""

import sys

import openstack


def check(cond, what):
    if not cond:
        sys.exit(f"sdk check failed: {what}")


def main():
    admin = openstack.connect(cloud="admin")
    demo = openstack.connect(cloud="demo")

    # Flavors (admin), with an extra spec.
    flavor = admin.compute.create_flavor(name="sdk.small", ram=256, vcpus=1, disk=1, id="sdk-1")
    admin.compute.create_flavor_extra_specs(flavor, {"hw:cpu_policy": "shared"})
    specs = admin.compute.fetch_flavor_extra_specs(flavor).extra_specs
    check(specs == {"hw:cpu_policy": "shared"}, f"extra specs {specs}")
    found = demo.compute.find_flavor("sdk.small")
    check(found is not None and found.ram == 256, f"flavor {found}")
    check(any(f.name == "sdk.small" for f in demo.compute.flavors()), "flavor listed")

    # Key pairs.
    kp = demo.compute.create_keypair(
        name="sdk-key",
        public_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOrND+VXGisTsfa2ChfSWGukYJ/3CLC3kflkLOEQxhJT sdk",
    )
    check(kp.fingerprint == "68:d0:61:50:21:d0:21:a9:a7:e6:7c:0f:af:55:75:90", kp.fingerprint)
    check([k.name for k in demo.compute.keypairs()] == ["sdk-key"], "keypair listed")
    demo.compute.delete_keypair("sdk-key")
    check(list(demo.compute.keypairs()) == [], "keypair deleted")

    # A server's life.
    image = demo.image.find_image("test-disk")
    check(image is not None, "image found by name")
    # A network offered to every project, found by name in the networking service.
    admin.network.create_network(name="sdk-net", is_shared=True, provider_physical_network="sdk-phys")
    network = demo.network.find_network("sdk-net")
    check(network is not None and network.is_shared, "network found by name")
    server = demo.compute.create_server(
        name="sdk-web", image_id=image.id, flavor_id=flavor.id, networks=[{"uuid": network.id}]
    )
    server = demo.compute.wait_for_server(server, status="ACTIVE", wait=120)
    check(server.status == "ACTIVE", server.status)
    check(any(s.id == server.id for s in demo.compute.servers()), "server listed")
    demo.compute.stop_server(server)
    demo.compute.wait_for_server(server, status="SHUTOFF", wait=120)
    demo.compute.start_server(server)
    demo.compute.wait_for_server(server, status="ACTIVE", wait=120)
    demo.compute.reboot_server(server, "HARD")
    demo.compute.wait_for_server(server, status="ACTIVE", wait=120)
    shown = demo.compute.get_server(server.id)
    check(shown.flavor is not None, "server shows its flavor")
    # Update, metadata, tags, lock, console, actions.
    demo.compute.update_server(server, name="sdk-web2")
    check(demo.compute.get_server(server.id).name == "sdk-web2", "renamed")
    demo.compute.set_server_metadata(server, role="web")
    check(demo.compute.get_server_metadata(server).metadata == {"role": "web"}, "metadata")
    demo.compute.delete_server_metadata(server, ["role"])
    demo.compute.lock_server(server)
    demo.compute.unlock_server(server)
    console = demo.compute.get_server_console_output(server, length=1)
    check(console["output"].startswith("fake:"), console)
    actions = [a.action for a in demo.compute.server_actions(server)]
    check("lock" in actions and "create" in actions, actions)
    demo.compute.delete_server(server)
    demo.compute.wait_for_delete(server, wait=120)
    admin.network.delete_network(network)
    check(demo.network.find_network("sdk-net") is None, "network deleted")

    # Admin views, limits and quotas.
    services = list(admin.compute.services())
    check(any(s.binary == "nova-compute" and s.state == "up" for s in services), "services")
    hypervisors = list(admin.compute.hypervisors(details=True))
    check(len(hypervisors) == 1 and hypervisors[0].state == "up", f"hypervisors {hypervisors}")
    zones = list(demo.compute.availability_zones())
    check(any(z.name == "nova" for z in zones), "zones")
    limits = demo.compute.get_limits()
    check(limits.absolute.instances is not None, "limits")
    project = demo.current_project_id
    admin.compute.update_quota_set(project, instances=9)
    quota = admin.compute.get_quota_set(project)
    check(quota.instances == 9, f"quota {quota.instances}")
    print("sdk: all checks passed")


if __name__ == "__main__":
    main()
