//! What a server carries besides its lifecycle, over HTTP on both shapes: update (name,
//! description), metadata and tags as resources, lock/unlock and who may undo a lock,
//! `/ips`, the instance-action record; and the admin switches on compute services and the
//! sharing of private flavors. Every response is checked against tempest's schema for the
//! microversion asked for (the client does it).

use e2e::client::{Client, IMAGE};
use e2e::on_both_shapes;
use e2e::stack::{Options, Stack};
use serde_json::{json, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

fn demo(stack: &dyn Stack, version: &str) -> Client {
    Client::new(stack.api_url(), "demo:demo").at_microversion(version)
}

fn admin(stack: &dyn Stack, version: &str) -> Client {
    Client::new(stack.api_url(), "admin:admin").at_microversion(version)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect()
}

/// Creates a server at `c`'s microversion (≥ 2.52, which takes tags) and waits for ACTIVE.
async fn active_server(c: &Client, server: Value) -> anyhow::Result<String> {
    let r = c.post("/servers", &json!({ "server": server })).await?;
    anyhow::ensure!(r.status == 202, "create: {} {}", r.status, r.body);
    let id = r.body["server"]["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("no id in {}", r.body))?;
    c.wait_status(&id, "ACTIVE", WAIT).await?;
    Ok(id)
}

on_both_shapes!(
    a_server_is_updated_described_tagged_and_given_metadata,
    Options::default()
);
async fn a_server_is_updated_described_tagged_and_given_metadata(
    stack: &dyn Stack,
) -> anyhow::Result<()> {
    let c = demo(stack, "2.73");
    let r = c
        .post("/os-keypairs", &json!({"keypair": {"name": "k1"}}))
        .await?;
    assert_eq!(r.status, 201, "{}", r.status);
    let public_key = r.body["keypair"]["public_key"].clone();
    // A key pair that is not the caller's is a 400 and writes nothing.
    let r = c
        .post(
            "/servers",
            &json!({"server": {"name": "s", "imageRef": IMAGE, "flavorRef": "1",
                "networks": "none", "key_name": "nope"}}),
        )
        .await?;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(
        r.body["badRequest"]["message"],
        json!("Invalid key_name provided.")
    );
    assert_eq!(c.get("/servers").await?.body["servers"], json!([]));

    let id = active_server(
        &c,
        json!({"name": "first", "imageRef": IMAGE, "flavorRef": "1", "networks": "none",
            "description": "the first", "tags": ["a", "b"], "key_name": "k1",
            "metadata": {"m": "1"}}),
    )
    .await?;
    let s = c.server(&id).await?.body["server"].clone();
    assert_eq!(s["description"], json!("the first"));
    assert_eq!(s["tags"], json!(["a", "b"]));
    assert_eq!(s["key_name"], json!("k1"));
    assert_eq!(s["locked"], json!(false));
    assert_eq!(s["locked_reason"], Value::Null);
    // The key was copied onto the server: the driver got it in the spec.
    assert_eq!(
        stack.driver().key_of(id.parse()?),
        public_key.as_str().map(str::to_owned)
    );

    // Update: name and description (2.19); Nova's basic view comes back.
    let r = c
        .put(
            &format!("/servers/{id}"),
            &json!({"server": {"name": "renamed", "description": null}}),
        )
        .await?;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["server"]["name"], json!("renamed"));
    assert_eq!(r.body["server"]["description"], Value::Null);
    assert!(r.body["server"]
        .get("OS-EXT-AZ:availability_zone")
        .is_none());
    // From 2.75 the update answers with everything GET shows.
    let r = c
        .at_microversion("2.75")
        .put(
            &format!("/servers/{id}"),
            &json!({"server": {"name": "renamed"}}),
        )
        .await?;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body["server"]["OS-EXT-AZ:availability_zone"],
        json!("nova")
    );
    assert_eq!(r.body["server"]["key_name"], json!("k1"));
    let old = c.at_microversion("2.1");
    let r = old
        .put(
            &format!("/servers/{id}"),
            &json!({"server": {"description": "not yet"}}),
        )
        .await?;
    assert_eq!(r.status, 400, "description is unknown at 2.1: {}", r.body);
    let r = c
        .put(
            &format!("/servers/{id}"),
            &json!({"server": {"name": " x"}}),
        )
        .await?;
    assert_eq!(r.status, 400);
    assert_eq!(
        c.server(&id).await?.body["server"]["name"],
        json!("renamed")
    );

    // Metadata: merge, replace, one item, delete.
    let meta = format!("/servers/{id}/metadata");
    assert_eq!(c.get(&meta).await?.body, json!({"metadata": {"m": "1"}}));
    let r = c.post(&meta, &json!({"metadata": {"n": "2"}})).await?;
    assert_eq!(r.body, json!({"metadata": {"m": "1", "n": "2"}}));
    let r = c.put(&meta, &json!({"metadata": {"x": "9"}})).await?;
    assert_eq!(r.body, json!({"metadata": {"x": "9"}}));
    assert_eq!(
        c.get(&format!("{meta}/x")).await?.body,
        json!({"meta": {"x": "9"}})
    );
    let r = c
        .put(&format!("{meta}/y"), &json!({"meta": {"y": "8"}}))
        .await?;
    assert_eq!((r.status, r.body), (200, json!({"meta": {"y": "8"}})));
    let r = c
        .put(&format!("{meta}/y"), &json!({"meta": {"z": "8"}}))
        .await?;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.body["badRequest"]["message"],
        json!("Request body and URI mismatch")
    );
    assert_eq!(c.delete(&format!("{meta}/x")).await?.status, 204);
    let r = c.delete(&format!("{meta}/x")).await?;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.body["itemNotFound"]["message"],
        json!("Metadata item was not found")
    );
    let r = c
        .post(&meta, &json!({"metadata": {"bad/key": "1"}}))
        .await?;
    assert_eq!(r.status, 400);
    // The project's metadata_items quota holds for updates too (Nova's 403).
    let admin_c = admin(stack, "2.73");
    let r = admin_c
        .put(
            "/os-quota-sets/demo",
            &json!({"quota_set": {"metadata_items": 2}}),
        )
        .await?;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = c
        .post(&meta, &json!({"metadata": {"p": "1", "q": "2"}}))
        .await?;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(
        r.body["forbidden"]["message"],
        json!("Maximum number of metadata items exceeds 2")
    );
    assert_eq!(c.get(&meta).await?.body, json!({"metadata": {"y": "8"}}));

    // Tags (2.26): one by one, all at once, and as list filters.
    let tags = format!("/servers/{id}/tags");
    assert_eq!(strings(&c.get(&tags).await?.body["tags"]), ["a", "b"]);
    let r = c.put(&format!("{tags}/c"), &Value::Null).await?;
    assert_eq!(r.status, 201);
    assert!(r.headers["location"]
        .to_str()?
        .ends_with(&format!("/servers/{id}/tags/c")));
    assert_eq!(c.put(&format!("{tags}/c"), &Value::Null).await?.status, 204);
    // A tag may hold spaces; its location is a valid URL.
    let r = c.put(&format!("{tags}/two%20words"), &Value::Null).await?;
    assert_eq!(r.status, 201);
    assert!(r.headers["location"]
        .to_str()?
        .ends_with(&format!("/servers/{id}/tags/two%20words")));
    assert_eq!(c.delete(&format!("{tags}/two%20words")).await?.status, 204);
    assert_eq!(c.get(&format!("{tags}/c")).await?.status, 204);
    assert_eq!(c.get(&format!("{tags}/zz")).await?.status, 404);
    assert_eq!(c.delete(&format!("{tags}/a")).await?.status, 204);
    assert_eq!(c.delete(&format!("{tags}/a")).await?.status, 404);
    let found = |q: &'static str| {
        let c = c.clone();
        async move {
            let r = c.get(&format!("/servers?{q}")).await?;
            anyhow::Ok(r.body["servers"].as_array().map_or(0, Vec::len))
        }
    };
    assert_eq!(found("tags=b,c").await?, 1);
    assert_eq!(found("tags=a,b").await?, 0);
    assert_eq!(found("tags-any=a,c").await?, 1);
    assert_eq!(found("not-tags=b,c").await?, 0);
    assert_eq!(found("not-tags-any=a,z").await?, 1);
    let r = c.put(&tags, &json!({"tags": ["x/y"]})).await?;
    assert_eq!(r.status, 400);
    let r = c.put(&tags, &json!({"tags": ["q", "q", "r"]})).await?;
    assert_eq!((r.status, r.body), (200, json!({"tags": ["q", "r"]})));
    let too_many: Vec<String> = (0..51).map(|i| format!("t{i}")).collect();
    assert_eq!(
        c.put(&tags, &json!({ "tags": too_many })).await?.status,
        400
    );
    assert_eq!(c.delete(&tags).await?.status, 204);
    assert_eq!(c.get(&tags).await?.body, json!({"tags": []}));
    assert_eq!(c.at_microversion("2.25").get(&tags).await?.status, 404);

    // Addresses: none while servers have no networks.
    let r = c.get(&format!("/servers/{id}/ips")).await?;
    assert_eq!((r.status, r.body), (200, json!({"addresses": {}})));
    assert_eq!(
        c.get(&format!("/servers/{id}/ips/private")).await?.status,
        404
    );
    let other = Client::new(stack.api_url(), "eve:other");
    assert_eq!(other.get(&format!("/servers/{id}/ips")).await?.status, 404);
    assert_eq!(other.get(&meta).await?.status, 404);
    assert_eq!(other.get(&tags).await?.status, 404);
    Ok(())
}

on_both_shapes!(a_locked_server_refuses_until_unlocked, Options::default());
async fn a_locked_server_refuses_until_unlocked(stack: &dyn Stack) -> anyhow::Result<()> {
    let c = demo(stack, "2.73");
    let a = admin(stack, "2.73");
    let id = active_server(
        &c,
        json!({"name": "locked", "imageRef": IMAGE, "flavorRef": "1", "networks": "none"}),
    )
    .await?;
    let r = c
        .action(&id, &json!({"lock": {"locked_reason": "maintenance"}}))
        .await?;
    assert_eq!(r.status, 202, "{}", r.body);
    let s = c.server(&id).await?.body["server"].clone();
    assert_eq!(s["locked"], json!(true));
    assert_eq!(s["locked_reason"], json!("maintenance"));
    // Before 2.73 a lock takes no reason.
    let r = c
        .at_microversion("2.72")
        .action(&id, &json!({"lock": {"locked_reason": "x"}}))
        .await?;
    assert_eq!(r.status, 400);

    let locked =
        json!({"conflictingRequest": {"code": 409, "message": format!("Instance {id} is locked")}});
    let r = c.action(&id, &json!({"os-stop": null})).await?;
    assert_eq!((r.status, &r.body), (409, &locked));
    assert_eq!(c.delete(&format!("/servers/{id}")).await?.body, locked);
    let r = c
        .post(
            &format!("/servers/{id}/metadata"),
            &json!({"metadata": {"k": "v"}}),
        )
        .await?;
    assert_eq!(r.status, 409);

    // An admin's lock is the admin's to undo.
    assert_eq!(a.action(&id, &json!({"lock": null})).await?.status, 202);
    let r = c.action(&id, &json!({"unlock": null})).await?;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(
        r.body["forbidden"]["message"],
        json!("Policy doesn't allow os_compute_api:os-lock-server:unlock:unlock_override to be performed.")
    );
    assert_eq!(a.action(&id, &json!({"unlock": null})).await?.status, 202);
    let s = c.server(&id).await?.body["server"].clone();
    assert_eq!(
        (s["locked"].clone(), s["locked_reason"].clone()),
        (json!(false), Value::Null)
    );
    // The owner's own lock is the owner's to undo; unlocking twice is fine. As Nova, a second
    // lock by the owner changes and records nothing; every unlock is recorded.
    assert_eq!(c.action(&id, &json!({"lock": null})).await?.status, 202);
    assert_eq!(c.action(&id, &json!({"lock": null})).await?.status, 202);
    assert_eq!(c.action(&id, &json!({"unlock": null})).await?.status, 202);
    assert_eq!(c.action(&id, &json!({"unlock": null})).await?.status, 202);
    assert_eq!(c.action(&id, &json!({"os-stop": null})).await?.status, 202);
    c.wait_status(&id, "SHUTOFF", WAIT).await?;

    // The record: newest first; paged from 2.58; events for the owner from 2.51.
    let actions = format!("/servers/{id}/os-instance-actions");
    let r = c.at_microversion("2.58").get(&actions).await?;
    assert_eq!(r.status, 200, "{}", r.body);
    let names: Vec<String> = r.body["instanceActions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["action"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        names,
        ["stop", "unlock", "unlock", "lock", "unlock", "lock", "lock", "create"]
    );
    let page = c
        .at_microversion("2.58")
        .get(&format!("{actions}?limit=2"))
        .await?;
    assert_eq!(
        page.body["instanceActions"].as_array().map(Vec::len),
        Some(2)
    );
    assert!(page.body["links"][0]["href"]
        .as_str()
        .unwrap_or_default()
        .contains("marker="));
    let create_req = r.body["instanceActions"][7]["request_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let one = format!("{actions}/{create_req}");
    let r = c.at_microversion("2.84").get(&one).await?;
    assert_eq!(r.status, 200, "{}", r.body);
    let events = r.body["instanceAction"]["events"].clone();
    assert_eq!(events[0]["result"], json!("Success"), "{events}");
    assert!(events[0]["hostId"].as_str().is_some_and(|h| !h.is_empty()));
    assert!(events[0].get("host").is_none(), "host is for admins");
    let r = c.at_microversion("2.1").get(&one).await?;
    assert!(
        r.body["instanceAction"].get("events").is_none(),
        "events for admins only at 2.1"
    );
    let r = a.at_microversion("2.62").get(&one).await?;
    assert!(r.body["instanceAction"]["events"][0]["host"].is_string());
    assert_eq!(c.get(&format!("{actions}/req-nope")).await?.status, 404);

    // From 2.21 a deleted server's record stays readable.
    assert_eq!(c.delete(&format!("/servers/{id}")).await?.status, 204);
    c.wait_gone(&id, WAIT).await?;
    let r = c.at_microversion("2.21").get(&actions).await?;
    assert_eq!(r.body["instanceActions"][0]["action"], json!("delete"));
    assert_eq!(c.at_microversion("2.20").get(&actions).await?.status, 404);
    Ok(())
}

on_both_shapes!(
    compute_services_are_disabled_forced_down_and_deleted,
    Options::default()
);
async fn compute_services_are_disabled_forced_down_and_deleted(
    stack: &dyn Stack,
) -> anyhow::Result<()> {
    let a = admin(stack, "2.53");
    let c = demo(stack, "2.53");
    let services = a.get("/os-services?binary=nova-compute").await?;
    let compute = services.body["services"][0].clone();
    let (uuid, host) = (compute["id"].clone(), compute["host"].clone());
    let path = format!("/os-services/{}", uuid.as_str().unwrap_or_default());

    let r = a
        .put(
            &path,
            &json!({"status": "disabled", "disabled_reason": "maintenance"}),
        )
        .await?;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["service"]["status"], json!("disabled"));
    assert_eq!(r.body["service"]["disabled_reason"], json!("maintenance"));
    // A disabled host takes no new servers.
    let r = c
        .post(
            "/servers",
            &json!({"server": {"name": "nowhere", "imageRef": IMAGE, "flavorRef": "1",
                "networks": "none"}}),
        )
        .await?;
    let id = r.body["server"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let s = c.wait_error(&id, WAIT).await?;
    assert!(s["fault"]["message"]
        .as_str()
        .unwrap_or_default()
        .starts_with("No valid host"));
    // Nova's rules for the body.
    let r = a
        .put(&path, &json!({"status": "enabled", "disabled_reason": "x"}))
        .await?;
    assert_eq!(r.status, 400);
    assert_eq!(a.put(&path, &json!({})).await?.status, 400);
    assert_eq!(
        c.put(&path, &json!({"status": "enabled"})).await?.status,
        403
    );
    let r = a.put(&path, &json!({"status": "enabled"})).await?;
    assert_eq!(r.body["service"]["disabled_reason"], Value::Null);

    // Forced down: shown down at once, and not scheduled to.
    let r = a.put(&path, &json!({"forced_down": true})).await?;
    assert_eq!(
        (
            r.body["service"]["forced_down"].clone(),
            r.body["service"]["state"].clone()
        ),
        (json!(true), json!("down"))
    );
    let r = a.put(&path, &json!({"forced_down": false})).await?;
    assert_eq!(r.body["service"]["state"], json!("up"));

    // The routes before 2.53 name the service by host and binary.
    let old = admin(stack, "2.11");
    let by_host = json!({"host": host, "binary": "nova-compute"});
    let r = old.put("/os-services/disable", &by_host).await?;
    assert_eq!(
        (r.status, r.body.clone()),
        (
            200,
            json!({"service": {"host": host, "binary": "nova-compute", "status": "disabled"}})
        )
    );
    let mut with_reason = by_host.clone();
    with_reason["disabled_reason"] = json!("cabling");
    let r = old
        .put("/os-services/disable-log-reason", &with_reason)
        .await?;
    assert_eq!(r.body["service"]["disabled_reason"], json!("cabling"));
    let r = old.put("/os-services/enable", &by_host).await?;
    assert_eq!(r.body["service"]["status"], json!("enabled"));
    let mut down = by_host.clone();
    down["forced_down"] = json!(false);
    let r = old.put("/os-services/force-down", &down).await?;
    assert_eq!(r.body["service"]["forced_down"], json!(false));
    let r = old
        .put(
            "/os-services/enable",
            &json!({"host": "nohost", "binary": "nova-compute"}),
        )
        .await?;
    assert_eq!(r.status, 404);

    // The host serves again; a compute service that still hosts servers is not deleted.
    let id = active_server(
        &c,
        json!({"name": "here", "imageRef": IMAGE, "flavorRef": "1", "networks": "none"}),
    )
    .await?;
    let r = a.delete(&path).await?;
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(a.delete("/os-services/not-a-uuid").await?.status, 400);
    for server in c.get("/servers").await?.body["servers"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let sid = server["id"].as_str().unwrap_or_default();
        assert_eq!(c.delete(&format!("/servers/{sid}")).await?.status, 204);
        c.wait_gone(sid, WAIT).await?;
    }
    let _ = id;
    assert_eq!(a.delete(&path).await?.status, 204);
    assert_eq!(a.delete(&path).await?.status, 404);
    let left = a.get("/os-services?binary=nova-compute").await?;
    assert_eq!(left.body["services"], json!([]));
    assert_eq!(
        a.get("/os-hypervisors").await?.body["hypervisors"],
        json!([])
    );
    Ok(())
}

on_both_shapes!(
    a_private_flavor_is_for_the_projects_it_is_shared_with,
    Options::default()
);
async fn a_private_flavor_is_for_the_projects_it_is_shared_with(
    stack: &dyn Stack,
) -> anyhow::Result<()> {
    let a = admin(stack, "2.61");
    let c = demo(stack, "2.61");
    let other = Client::new(stack.api_url(), "eve:other").at_microversion("2.61");
    let private = json!({"flavor": {"name": "p1.tiny", "ram": 512, "vcpus": 1, "disk": 1,
        "id": "p1", "os-flavor-access:is_public": false}});
    assert_eq!(a.post("/flavors", &private).await?.status, 200);
    let ids = |r: &Value| -> Vec<String> {
        r["flavors"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f["id"].as_str().map(str::to_owned))
            .collect()
    };
    assert!(!ids(&c.get("/flavors").await?.body).contains(&"p1".to_owned()));
    assert_eq!(c.get("/flavors/p1").await?.status, 404);
    // As Nova, not even the creator's project is on a new flavor's access list.
    let r = a.get("/flavors/p1/os-flavor-access").await?;
    assert_eq!(r.body, json!({"flavor_access": []}));
    assert!(!ids(&a.get("/flavors").await?.body).contains(&"p1".to_owned()));
    assert!(ids(&a.get("/flavors?is_public=false").await?.body).contains(&"p1".to_owned()));
    // As Nova, an admin's default listing has public flavors and those shared with the
    // admin's project; `is_public=false` only the private ones.
    assert!(!ids(&a.get("/flavors?is_public=false").await?.body).contains(&"1".to_owned()));
    // Not usable until shared.
    let server = json!({"server": {"name": "p", "imageRef": IMAGE, "flavorRef": "p1",
        "networks": "none"}});
    assert_eq!(c.post("/servers", &server).await?.status, 400);

    let add = json!({"addTenantAccess": {"tenant": "demo"}});
    assert_eq!(c.post("/flavors/p1/action", &add).await?.status, 403);
    let r = a.post("/flavors/p1/action", &add).await?;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body,
        json!({"flavor_access": [{"flavor_id": "p1", "tenant_id": "demo"}]})
    );
    assert_eq!(a.post("/flavors/p1/action", &add).await?.status, 409);
    assert!(ids(&c.get("/flavors/detail").await?.body).contains(&"p1".to_owned()));
    assert_eq!(c.get("/flavors/p1").await?.status, 200);
    assert_eq!(other.get("/flavors/p1").await?.status, 404);
    let r = c.post("/servers", &server).await?;
    assert_eq!(r.status, 202, "{}", r.body);

    let remove = json!({"removeTenantAccess": {"tenant": "demo"}});
    assert_eq!(a.post("/flavors/p1/action", &remove).await?.status, 200);
    assert_eq!(a.post("/flavors/p1/action", &remove).await?.status, 404);
    assert_eq!(c.get("/flavors/p1").await?.status, 404);
    // Public flavors have no access list.
    assert_eq!(a.get("/flavors/1/os-flavor-access").await?.status, 404);
    assert_eq!(a.post("/flavors/1/action", &add).await?.status, 409);

    // Extra specs one by one, and the description (2.55).
    let spec = "/flavors/p1/os-extra_specs/hw:cpu_policy";
    let r = a.put(spec, &json!({"hw:cpu_policy": "shared"})).await?;
    assert_eq!(
        (r.status, r.body),
        (200, json!({"hw:cpu_policy": "shared"}))
    );
    assert_eq!(a.get(spec).await?.body, json!({"hw:cpu_policy": "shared"}));
    assert_eq!(a.put(spec, &json!({"other": "x"})).await?.status, 400);
    assert_eq!(a.delete(spec).await?.status, 200);
    assert_eq!(a.get(spec).await?.status, 404);
    let r = a
        .put("/flavors/p1", &json!({"flavor": {"description": "for p"}}))
        .await?;
    assert_eq!(
        (r.status, r.body["flavor"]["description"].clone()),
        (200, json!("for p"))
    );
    assert_eq!(
        a.at_microversion("2.54")
            .put("/flavors/p1", &json!({"flavor": {"description": "x"}}))
            .await?
            .status,
        404
    );
    Ok(())
}

on_both_shapes!(the_console_output_comes_from_the_host, Options::default());
async fn the_console_output_comes_from_the_host(stack: &dyn Stack) -> anyhow::Result<()> {
    let c = demo(stack, "2.1");
    let id = c.create_server("talkative", "1").await?;
    c.wait_status(&id, "ACTIVE", WAIT).await?;
    let console = |arg: Value| {
        let c = c.clone();
        let id = id.clone();
        async move { c.action(&id, &json!({ "os-getConsoleOutput": arg })).await }
    };
    let all = console(json!({})).await?;
    assert_eq!(all.status, 200, "{}", all.body);
    let text = all.body["output"].as_str().unwrap_or_default().to_owned();
    assert!(text.starts_with("fake: booting talkative"), "{text}");
    assert_eq!(console(json!({"length": -1})).await?.body, all.body);
    assert_eq!(console(json!({"length": "-1"})).await?.body, all.body);
    // Lines as Nova splits them (and Tempest counts them): at each newline.
    let last = console(json!({"length": 1})).await?;
    assert_eq!(last.body["output"], json!("fake: login: "));
    let three = console(json!({"length": 3})).await?;
    let text3 = three.body["output"].as_str().unwrap_or_default();
    assert_eq!(text3.split('\n').count(), 3, "{text3}");
    assert_eq!(
        console(json!({"length": 0})).await?.body["output"],
        json!("")
    );
    assert_eq!(console(json!({"length": -2})).await?.status, 400);
    assert_eq!(console(json!({"length": "x"})).await?.status, 400);
    assert_eq!(console(json!({"lines": 1})).await?.status, 400);
    // Another project's server stays unknown.
    let other = Client::new(stack.api_url(), "eve:other");
    let r = other
        .action(&id, &json!({"os-getConsoleOutput": {}}))
        .await?;
    assert_eq!(r.status, 404);
    // A server the host no longer has: Nova's 404.
    stack.driver().remove_externally(id.parse()?);
    let r = console(json!({})).await?;
    assert_eq!(r.status, 404, "{}", r.body);
    Ok(())
}

on_both_shapes!(diagnostics_come_from_the_host, Options::default());
/// `GET /servers/{id}/diagnostics`: admins only, asked of the host, in the driver's keys
/// before 2.48 and in Nova's common format from it (Tempest's response schema's fields).
async fn diagnostics_come_from_the_host(stack: &dyn Stack) -> anyhow::Result<()> {
    let c = demo(stack, "2.1");
    let network = admin(stack, "2.1")
        .create_network(json!({"name": "diag-net", "shared": true}))
        .await?;
    let r = c
        .post(
            "/servers",
            &json!({"server": {"name": "diag", "imageRef": IMAGE, "flavorRef": "1",
                               "networks": [{"uuid": network}]}}),
        )
        .await?;
    let id = r.body["server"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    c.wait_status(&id, "ACTIVE", WAIT).await?;
    let path = format!("/servers/{id}/diagnostics");
    let r = c.get(&path).await?;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(
        Client::new(stack.api_url(), "eve:other")
            .get(&path)
            .await?
            .status,
        404
    );
    let legacy = admin(stack, "2.47").get(&path).await?;
    assert_eq!(legacy.status, 200, "{}", legacy.body);
    assert!(legacy.body.get("cpu0_time").is_some(), "{}", legacy.body);
    assert!(legacy.body.get("eth0_rx").is_some(), "{}", legacy.body);
    let r = admin(stack, "2.48").get(&path).await?;
    assert_eq!(r.status, 200, "{}", r.body);
    let d = &r.body;
    assert_eq!(d["state"], json!("running"));
    assert_eq!(
        d["driver"],
        json!("libvirt"),
        "the fake poses as libvirt, as Nova's"
    );
    assert_eq!(d["num_cpus"], json!(1));
    assert_eq!(d["num_nics"], json!(1));
    assert_eq!(
        d["memory_details"]["maximum"],
        json!(512),
        "the flavor's: {d}"
    );
    assert_eq!(d["config_drive"], json!(false));
    for key in [
        "hypervisor",
        "hypervisor_os",
        "uptime",
        "num_disks",
        "cpu_details",
        "nic_details",
        "disk_details",
    ] {
        assert!(d.get(key).is_some(), "{key}: {d}");
    }
    let mac = &d["nic_details"][0]["mac_address"];
    assert!(
        mac.as_str().is_some_and(|m| m.starts_with("fa:16:3e:")),
        "{d}"
    );
    // Only a running guest is asked (Nova's compute manager).
    assert_eq!(c.action(&id, &json!({"os-stop": null})).await?.status, 202);
    c.wait_status(&id, "SHUTOFF", WAIT).await?;
    let r = admin(stack, "2.48").get(&path).await?;
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(
        r.body["conflictingRequest"]["message"],
        json!(format!(
            "Cannot 'get_diagnostics' instance {id} while it is in power state shutdown"
        ))
    );
    Ok(())
}

on_both_shapes!(
    servers_are_listed_in_the_order_asked_for,
    Options::default()
);
async fn servers_are_listed_in_the_order_asked_for(stack: &dyn Stack) -> anyhow::Result<()> {
    let c = demo(stack, "2.1");
    let mut ids = Vec::new();
    for name in ["charlie", "alpha", "bravo", "alpha"] {
        ids.push(c.create_server(name, "1").await?);
    }
    let names = |r: &Value| -> Vec<String> {
        r["servers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["name"].as_str().map(str::to_owned))
            .collect()
    };
    let r = c.get("/servers?sort_key=display_name&sort_dir=asc").await?;
    assert_eq!(names(&r.body), ["alpha", "alpha", "bravo", "charlie"]);
    let r = c.get("/servers?sort_key=display_name").await?;
    assert_eq!(names(&r.body), ["charlie", "bravo", "alpha", "alpha"]);
    // Paged in that order: the marker continues where the page ended, ties included.
    let first = c
        .get("/servers?sort_key=display_name&sort_dir=asc&limit=1")
        .await?;
    assert_eq!(names(&first.body), ["alpha"]);
    let mut seen = names(&first.body);
    let mut next = first.body["servers_links"][0]["href"]
        .as_str()
        .map(str::to_owned);
    while let Some(href) = next {
        let path = href
            .split_once("/v2.1")
            .map(|(_, p)| p.to_owned())
            .unwrap_or_default();
        let page = c.get(&path).await?;
        seen.extend(names(&page.body));
        next = page.body["servers_links"][0]["href"]
            .as_str()
            .map(str::to_owned);
    }
    assert_eq!(seen, ["alpha", "alpha", "bravo", "charlie"]);
    // Two keys, each with its direction.
    let r = c
        .get("/servers?sort_key=display_name&sort_dir=desc&sort_key=created_at&sort_dir=asc")
        .await?;
    assert_eq!(names(&r.body), ["charlie", "bravo", "alpha", "alpha"]);
    // A rename keeps the hostname made at create: by hostname "charlie" stays last.
    let rename = |name: &str| json!({"server": {"name": name}});
    let path = format!("/servers/{}", ids[0]);
    assert_eq!(c.put(&path, &rename("aardvark")).await?.status, 200);
    let r = c.get("/servers?sort_key=hostname&sort_dir=asc").await?;
    assert_eq!(names(&r.body), ["alpha", "alpha", "bravo", "aardvark"]);
    let r = c
        .get("/servers?sort_key=hostname&sort_dir=asc&limit=3")
        .await?;
    let marker = r.body["servers"][2]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let r = c
        .get(&format!(
            "/servers?sort_key=hostname&sort_dir=asc&marker={marker}"
        ))
        .await?;
    assert_eq!(names(&r.body), ["aardvark"]);
    assert_eq!(c.put(&path, &rename("charlie")).await?.status, 200);
    // Keys Nova knows but nothing here varies by are accepted; unknown ones are not.
    assert_eq!(c.get("/servers?sort_key=progress").await?.status, 200);
    assert_eq!(c.get("/servers?sort_key=bogus").await?.status, 400);
    assert_eq!(c.get("/servers?sort_dir=up").await?.status, 400);
    // #15: a repeated key is refused (its cost grew with the square of the count), and so is
    // a direction without a key to go with it; 2,000 repeats (a 44 KB URL) are answered at once.
    assert_eq!(
        c.get("/servers?sort_key=display_name&sort_key=display_name")
            .await?
            .status,
        400
    );
    let many = "sort_key=display_name&".repeat(2000);
    let r = c.get(&format!("/servers?{many}marker={}", ids[0])).await?;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(
        c.get("/servers?sort_key=display_name&sort_dir=asc&sort_dir=desc")
            .await?
            .status,
        400
    );
    assert_eq!(c.get("/servers?sort_key=host").await?.status, 403);
    let r = admin(stack, "2.1")
        .get("/servers?all_tenants=1&sort_key=host")
        .await?;
    assert_eq!(r.status, 200);
    // As Nova, a marker deleted since its page still marks the place.
    let first = c
        .get("/servers?sort_key=display_name&sort_dir=asc&limit=3")
        .await?;
    assert_eq!(names(&first.body), ["alpha", "alpha", "bravo"]);
    let marker = first.body["servers"][2]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(c.delete(&format!("/servers/{marker}")).await?.status, 204);
    c.wait_gone(&marker, WAIT).await?;
    let rest = c
        .get(&format!(
            "/servers?sort_key=display_name&sort_dir=asc&marker={marker}"
        ))
        .await?;
    assert_eq!(rest.status, 200, "{}", rest.body);
    assert_eq!(names(&rest.body), ["charlie"]);
    // Text orders byte by byte on both backends, whatever the database's locale: capitals
    // before small letters.
    let d = demo(stack, "2.1");
    for name in ["b-case", "B-case", "a-case"] {
        d.create_server(name, "1").await?;
    }
    let r = d
        .get("/servers?sort_key=display_name&sort_dir=asc&name=-case")
        .await?;
    assert_eq!(names(&r.body), ["B-case", "a-case", "b-case"]);
    Ok(())
}

on_both_shapes!(a_server_keeps_the_hostname_it_was_given, Options::default());
async fn a_server_keeps_the_hostname_it_was_given(stack: &dyn Stack) -> anyhow::Result<()> {
    let c = demo(stack, "2.90");
    let server = |extra: Value| {
        let mut s = json!({"name": "Web Server", "imageRef": IMAGE, "flavorRef": "1",
            "networks": "none"});
        if let (Some(s), Some(e)) = (s.as_object_mut(), extra.as_object()) {
            s.extend(e.clone());
        }
        json!({ "server": s })
    };
    // Refused before 2.90, when malformed, for a FQDN before 2.94, for several servers.
    let r = c
        .at_microversion("2.89")
        .post("/servers", &server(json!({"hostname": "web-01"})))
        .await?;
    assert_eq!(r.status, 400, "{}", r.body);
    for bad in ["-web", "web_01", "x", "web.example.com"] {
        let r = c
            .post("/servers", &server(json!({"hostname": bad})))
            .await?;
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
    }
    let r = c
        .post(
            "/servers",
            &server(json!({"hostname": "web-01", "max_count": 2})),
        )
        .await?;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(c.get("/servers").await?.body["servers"], json!([]));

    // Given at create; a rename keeps it; an update (2.90) changes it.
    let id = active_server(&c, server(json!({"hostname": "web-01"}))["server"].clone()).await?;
    let hostname = |c: Client, id: String| async move {
        let r = c.server(&id).await?;
        anyhow::Ok(r.body["server"]["OS-EXT-SRV-ATTR:hostname"].clone())
    };
    assert_eq!(hostname(c.clone(), id.clone()).await?, json!("web-01"));
    let r = c
        .put(
            &format!("/servers/{id}"),
            &json!({"server": {"name": "renamed"}}),
        )
        .await?;
    assert_eq!(
        r.body["server"]["OS-EXT-SRV-ATTR:hostname"],
        json!("web-01")
    );
    let r = c
        .put(
            &format!("/servers/{id}"),
            &json!({"server": {"hostname": "web-02"}}),
        )
        .await?;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(hostname(c.clone(), id.clone()).await?, json!("web-02"));
    let r = c
        .at_microversion("2.89")
        .put(
            &format!("/servers/{id}"),
            &json!({"server": {"hostname": "web-03"}}),
        )
        .await?;
    assert_eq!(r.status, 400);
    // Without one, made from the name at create, as Nova does; FQDNs from 2.94.
    let plain = active_server(&c, server(json!({}))["server"].clone()).await?;
    assert_eq!(hostname(c.clone(), plain).await?, json!("web-server"));
    let fqdn = active_server(
        &c.at_microversion("2.94"),
        server(json!({"hostname": "web.example.com"}))["server"].clone(),
    )
    .await?;
    assert_eq!(hostname(c.clone(), fqdn).await?, json!("web.example.com"));
    Ok(())
}

on_both_shapes!(
    concurrent_creates_cannot_together_pass_the_quota,
    Options::default()
);
/// Each request alone fits the quota; together they do not. The usage is checked again inside
/// the create's transaction, under the project's lock, so exactly the quota's worth get in and
/// the rest get Nova's 403 with nothing written.
async fn concurrent_creates_cannot_together_pass_the_quota(
    stack: &dyn Stack,
) -> anyhow::Result<()> {
    let a = admin(stack, "2.1");
    let r = a
        .put(
            "/os-quota-sets/racing",
            &json!({"quota_set": {"instances": 2}}),
        )
        .await?;
    assert_eq!(r.status, 200, "{}", r.body);
    let c = Client::new(stack.api_url(), "racer:racing").at_microversion("2.1");
    let attempts = (0..8).map(|i| {
        let c = c.clone();
        async move {
            c.post(
                "/servers",
                &json!({"server": {"name": format!("r{i}"), "imageRef": IMAGE,
                    "flavorRef": "1"}}),
            )
            .await
        }
    });
    let answers = futures::future::try_join_all(attempts).await?;
    let accepted = answers.iter().filter(|r| r.status == 202).count();
    let refused: Vec<_> = answers.iter().filter(|r| r.status == 403).collect();
    assert_eq!((accepted, refused.len()), (2, 6), "{answers:?}");
    for r in refused {
        let message = r.body["forbidden"]["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with("Quota exceeded for instances: Requested 1, but already used"),
            "{message}"
        );
    }
    let listed = c.get("/servers").await?;
    assert_eq!(listed.body["servers"].as_array().map(Vec::len), Some(2));
    Ok(())
}

on_both_shapes!(servers_choose_networks_by_uuid, Options::default());
/// The networking service's networks and a create's `networks` list: admins create networks,
/// members see their project's and shared ones, a server may choose those, and a network a
/// server is on is not deleted from under it.
async fn servers_choose_networks_by_uuid(stack: &dyn Stack) -> anyhow::Result<()> {
    use reqwest::Method;
    let a = admin(stack, "2.37");
    let c = demo(stack, "2.37");
    let shared = a
        .create_network(json!({"name": "shared-net", "shared": true,
            "provider:physical_network": "phys-a", "provider:network_type": "flat"}))
        .await?;
    let private = a.create_network(json!({"name": "admins-net"})).await?;
    let r = a
        .networking(Method::GET, &format!("/networks/{private}"), None)
        .await?;
    assert_eq!(r.status, 200, "{}", r.body);
    let n = &r.body["network"];
    assert_eq!(
        (
            &n["name"],
            &n["shared"],
            &n["status"],
            &n["provider:physical_network"]
        ),
        (
            &json!("admins-net"),
            &json!(false),
            &json!("ACTIVE"),
            &json!("admins-net")
        )
    );

    // The project's network quota counts them, and is enforced.
    let r = a
        .networking(
            Method::PUT,
            "/quotas/admin",
            Some(&json!({"quota": {"network": 2}})),
        )
        .await?;
    assert_eq!(
        r.body,
        json!({"quota": {"network": 2, "subnet": 100, "port": 500, "security_group": 10,
            "security_group_rule": 100}}),
        "{}",
        r.status
    );
    let r = a
        .networking(Method::GET, "/quotas/admin/details.json", None)
        .await?;
    assert_eq!(
        r.body,
        json!({"quota": {
            "network": {"limit": 2, "used": 2, "reserved": 0},
            "subnet": {"limit": 100, "used": 0, "reserved": 0},
            "port": {"limit": 500, "used": 0, "reserved": 0},
            "security_group": {"limit": 10, "used": 0, "reserved": 0},
            "security_group_rule": {"limit": 100, "used": 0, "reserved": 0},
        }})
    );
    let r = a
        .networking(
            Method::POST,
            "/networks",
            Some(&json!({"network": {"name": "third"}})),
        )
        .await?;
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(r.body["NeutronError"]["type"], json!("OverQuota"));
    // A limit under the use is refused unless forced.
    let r = a
        .networking(
            Method::PUT,
            "/quotas/admin",
            Some(&json!({"quota": {"network": 1, "check_limit": true}})),
        )
        .await?;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = a
        .networking(
            Method::PUT,
            "/quotas/admin",
            Some(&json!({"quota": {"network": 1, "force": true}})),
        )
        .await?;
    assert_eq!(r.body["quota"]["network"], json!(1), "{}", r.status);
    let r = c.networking(Method::GET, "/quotas/admin", None).await?;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = a.networking(Method::DELETE, "/quotas/admin", None).await?;
    assert_eq!(r.status, 204, "{}", r.body);
    let r = a.networking(Method::GET, "/quotas/admin", None).await?;
    assert_eq!(r.body["quota"]["network"], json!(100), "{}", r.body);

    // A member makes its project's own networks, as in Neutron, each on a host network of its
    // own (never a hosts' network it names); what only admins may set is refused.
    for (body, rule) in [
        (
            json!({"name": "mine", "shared": true}),
            "create_network:shared",
        ),
        (
            json!({"name": "mine", "provider:physical_network": "phys-a"}),
            "create_network:provider:physical_network",
        ),
        (
            json!({"name": "mine", "project_id": "admin"}),
            "create_network",
        ),
    ] {
        let r = c
            .networking(Method::POST, "/networks", Some(&json!({ "network": body })))
            .await?;
        assert_eq!(r.status, 403, "{}", r.body);
        assert_eq!(r.body["NeutronError"]["type"], json!("PolicyNotAuthorized"));
        assert_eq!(
            r.body["NeutronError"]["message"],
            json!(format!("(rule:{rule}) is disallowed by policy"))
        );
    }
    let r = c
        .networking(
            Method::POST,
            "/networks",
            Some(&json!({"network": {"name": "shared-net", "shared": false}})),
        )
        .await?;
    assert_eq!(r.status, 201, "{}", r.body);
    let mine = r.body["network"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(r.body["network"]["project_id"], json!("demo"));
    let r = a
        .networking(Method::GET, &format!("/networks/{mine}"), None)
        .await?;
    let backend = r.body["network"]["provider:physical_network"].clone();
    assert!(
        backend.as_str().is_some_and(|b| b.starts_with("p-")),
        "its own host network, not the admins' shared-net: {}",
        r.body
    );
    let r = c
        .networking(Method::DELETE, &format!("/networks/{mine}"), None)
        .await?;
    assert_eq!(r.status, 204, "{}", r.body);
    // Refused values are refused, not ignored.
    let r = a
        .networking(
            Method::POST,
            "/networks",
            Some(&json!({"network": {"name": "v", "provider:network_type": "vxlan"}})),
        )
        .await?;
    assert_eq!(r.status, 400, "{}", r.body);

    // A member sees the shared network, without its provider attributes, and not the admins'.
    let r = c.networking(Method::GET, "/networks", None).await?;
    assert_eq!(r.status, 200, "{}", r.body);
    let listed = r.body["networks"].as_array().cloned().unwrap_or_default();
    assert_eq!(listed.len(), 1, "{}", r.body);
    assert_eq!(listed[0]["id"], json!(shared));
    assert!(listed[0].get("provider:physical_network").is_none());
    let r = c
        .networking(Method::GET, &format!("/networks/{private}"), None)
        .await?;
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(r.body["NeutronError"]["type"], json!("NetworkNotFound"));
    // Filters, as openstacksdk's lookup by name uses them.
    let r = a
        .networking(Method::GET, "/networks?name=shared-net&fields=id", None)
        .await?;
    assert_eq!(r.body["networks"], json!([{ "id": shared }]));
    let r = a
        .networking(Method::GET, "/networks?shared=False", None)
        .await?;
    assert_eq!(r.body["networks"][0]["id"], json!(private), "{}", r.body);
    assert_eq!(r.body["networks"].as_array().map(Vec::len), Some(1));
    let r = a
        .networking(Method::GET, "/networks?colour=red", None)
        .await?;
    assert_eq!(r.status, 400, "{}", r.body);

    // Networks a member may not use, or that are not networks, are refused and write nothing.
    for (networks, message) in [
        (
            json!([{ "uuid": private }]),
            format!("Network {private} could not be found."),
        ),
        (
            json!([{"uuid": "not-a-uuid"}]),
            "Bad networks format: network uuid is not in proper format (not-a-uuid)".to_owned(),
        ),
    ] {
        let r = c
            .post(
                "/servers",
                &json!({"server": {"name": "s", "imageRef": IMAGE, "flavorRef": "1",
                    "networks": networks}}),
            )
            .await?;
        assert_eq!(r.status, 400, "{}", r.body);
        assert_eq!(r.body["badRequest"]["message"], json!(message));
    }
    let r = c
        .post(
            "/servers",
            &json!({"server": {"name": "s", "imageRef": IMAGE, "flavorRef": "1",
                "networks": [{"port": shared}]}}),
        )
        .await?;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(c.get("/servers").await?.body["servers"], json!([]));

    // An upper-case uuid names the same network.
    let id = active_server(
        &c,
        json!({"name": "chosen", "imageRef": IMAGE, "flavorRef": "1",
            "networks": [{ "uuid": shared.to_uppercase() }]}),
    )
    .await?;
    // In use: not deleted (Neutron's 409), until the server is gone.
    let r = a
        .networking(Method::DELETE, &format!("/networks/{shared}"), None)
        .await?;
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(r.body["NeutronError"]["type"], json!("NetworkInUse"));
    assert_eq!(c.delete(&format!("/servers/{id}")).await?.status, 204);
    c.wait_gone(&id, WAIT).await?;

    // `auto`, as Nova: the one network the project may use...
    let auto = active_server(
        &c,
        json!({"name": "auto", "imageRef": IMAGE, "flavorRef": "1", "networks": "auto"}),
    )
    .await?;
    let r = a
        .networking(Method::DELETE, &format!("/networks/{shared}"), None)
        .await?;
    assert_eq!(r.status, 409, "the auto server is on it: {}", r.body);
    assert_eq!(c.delete(&format!("/servers/{auto}")).await?.status, 204);
    c.wait_gone(&auto, WAIT).await?;
    // ... and a 409 when it may use several.
    let second = a
        .create_network(json!({"name": "second", "shared": true}))
        .await?;
    let r = c
        .post(
            "/servers",
            &json!({"server": {"name": "s", "imageRef": IMAGE, "flavorRef": "1",
                "networks": "auto"}}),
        )
        .await?;
    assert_eq!(r.status, 409, "{}", r.body);
    // Two networks that are one network on the hosts: a 400 for a container (one endpoint
    // per engine network; a VM takes two NICs there).
    let alias = a
        .create_network(json!({"name": "alias", "shared": true,
            "provider:physical_network": "phys-a"}))
        .await?;
    let r = a
        .post(
            "/flavors",
            &json!({"flavor": {"name": "c-alias", "id": "c-alias", "ram": 64, "vcpus": 1,
                "disk": 1}}),
        )
        .await?;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = a
        .post(
            "/flavors/c-alias/os-extra_specs",
            &json!({"extra_specs": {"node:type": "container"}}),
        )
        .await?;
    assert_eq!(r.status, 200, "{}", r.body);
    let archive = c
        .create_image("c-img", "docker", "raw", b"an archive".to_vec())
        .await?;
    let r = c
        .post(
            "/servers",
            &json!({"server": {"name": "s", "imageRef": archive, "flavorRef": "c-alias",
                "networks": [{ "uuid": shared }, { "uuid": alias }]}}),
        )
        .await?;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(
        r.body["badRequest"]["message"],
        json!(format!(
            "Networks {shared} and {alias} are the same network on the hosts (phys-a): a \
             container is on each host network once."
        ))
    );
    assert_eq!(c.get("/servers").await?.body["servers"], json!([]));
    // The next page keeps the query's filters.
    let r = a
        .networking(Method::GET, "/networks?shared=true&limit=1", None)
        .await?;
    let next = r.body["networks_links"][0]["href"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(next.contains("shared=true"), "{}", r.body);
    let mut seen = strings(&json!([r.body["networks"][0]["name"]]));
    let mut next = Some(next);
    while let Some(href) = next {
        let path = href
            .split_once("/network/v2.0")
            .map(|(_, p)| p.to_owned())
            .unwrap_or_default();
        let page = a.networking(Method::GET, &path, None).await?;
        seen.extend(
            page.body["networks"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|n| n["name"].as_str().map(str::to_owned)),
        );
        next = page.body["networks_links"][0]["href"]
            .as_str()
            .map(str::to_owned);
    }
    assert_eq!(seen, ["shared-net", "second", "alias"]);
    // Tags (standard-attr-tag): all at once, one by one, as filters.
    let tags = format!("/networks/{second}/tags");
    let r = a
        .networking(Method::PUT, &tags, Some(&json!({"tags": ["red", "blue"]})))
        .await?;
    assert_eq!(r.body, json!({"tags": ["red", "blue"]}), "{}", r.status);
    let r = a
        .networking(Method::PUT, &format!("{tags}/green"), None)
        .await?;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = a
        .networking(Method::DELETE, &format!("{tags}/red"), None)
        .await?;
    assert_eq!(r.status, 204, "{}", r.body);
    let r = a
        .networking(Method::DELETE, &format!("{tags}/red"), None)
        .await?;
    assert_eq!(r.status, 404, "{}", r.body);
    let r = c
        .networking(Method::PUT, &format!("{tags}/mine"), None)
        .await?;
    assert_eq!(
        r.status, 403,
        "a member tags no admin's network: {}",
        r.body
    );
    let names_of = |r: &e2e::client::Reply| -> Vec<String> {
        r.body["networks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n["name"].as_str().map(str::to_owned))
            .collect()
    };
    for (query, expected) in [
        ("tags=blue,green", vec!["second"]),
        ("tags=blue,red", vec![]),
        ("tags-any=red,green", vec!["second"]),
        (
            "not-tags-any=green&shared=true",
            vec!["shared-net", "alias"],
        ),
        // A filter given twice is one list of both, as Neutron joins them.
        ("tags=blue&tags=green", vec!["second"]),
        ("tags=blue&tags=red", vec![]),
        ("tags-any=red&tags-any=green", vec!["second"]),
    ] {
        let r = a
            .networking(Method::GET, &format!("/networks?{query}"), None)
            .await?;
        assert_eq!(names_of(&r), expected, "{query}");
    }
    let r = a.networking(Method::GET, &tags, None).await?;
    assert_eq!(r.body, json!({"tags": ["blue", "green"]}));
    // Updates: port security is the network's to say (what its new ports take).
    let path = format!("/networks/{second}");
    let r = a
        .networking(
            Method::PUT,
            &path,
            Some(&json!({"network": {"name": "2nd", "port_security_enabled": false}})),
        )
        .await?;
    assert_eq!(r.body["network"]["name"], json!("2nd"), "{}", r.body);
    assert_eq!(
        r.body["network"]["port_security_enabled"],
        json!(false),
        "{}",
        r.body
    );
    let r = a
        .networking(
            Method::PUT,
            &path,
            Some(&json!({"network": {"port_security_enabled": "maybe"}})),
        )
        .await?;
    assert_eq!(r.status, 400, "{}", r.body);
    // Docker's modes that are not networks are refused.
    let r = a
        .networking(
            Method::POST,
            "/networks",
            Some(&json!({"network": {"name": "h", "provider:physical_network": "host"}})),
        )
        .await?;
    assert_eq!(r.status, 400, "{}", r.body);
    for network in [&shared, &private, &second, &alias] {
        let r = a
            .networking(Method::DELETE, &format!("/networks/{network}"), None)
            .await?;
        assert_eq!(r.status, 204, "{}", r.body);
    }
    let r = a.networking(Method::GET, "/networks", None).await?;
    assert_eq!(r.body["networks"], json!([]));
    Ok(())
}

/// Nova's `same_host` and `different_host` scheduler hints across two hosts: a server follows,
/// or avoids, the hosts of the servers it names; both at once leave no valid host. A group
/// that does not exist, or a hint for a filter this scheduler lacks, is a 400; a hint no
/// filter knows is ignored, as in Nova.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduler_hints_place_a_server_with_or_away_from_others() -> anyhow::Result<()> {
    let mut stack = e2e::stack::Distributed::start(Options::default()).await?;
    stack.start_agent_on("compute-2").await?;
    let a = admin(&stack, "2.1");
    let create = |hints: Value| {
        let a = a.clone();
        async move {
            a.post(
                "/servers",
                &json!({"server": {"name": "s", "imageRef": IMAGE, "flavorRef": "1"},
                        "os:scheduler_hints": hints}),
            )
            .await
        }
    };
    let host_of = |body: &Value| body["server"]["OS-EXT-SRV-ATTR:host"].clone();
    let first = active_server(
        &a,
        json!({"name": "first", "imageRef": IMAGE, "flavorRef": "1"}),
    )
    .await?;
    let home = host_of(&a.server(&first).await?.body);
    assert!(home.is_string(), "{home}");
    // The weigher alone would send each of these to the emptier host: they go where the
    // hints say. First with `first`, on its host...
    let placed = |hints: Value| {
        let a = a.clone();
        async move {
            let r = create(hints.clone()).await?;
            anyhow::ensure!(r.status == 202, "{hints}: {}", r.body);
            let id = r.body["server"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            a.wait_status(&id, "ACTIVE", WAIT).await?;
            Ok::<Value, anyhow::Error>(
                a.server(&id).await?.body["server"]["OS-EXT-SRV-ATTR:host"].clone(),
            )
        }
    };
    for hints in [
        json!({ "same_host": first }),
        json!({ "same_host": [first] }),
    ] {
        for _ in 0..2 {
            assert_eq!(placed(hints.clone()).await?, home, "{hints}");
        }
    }
    // ... then away from a server on the other, emptier host.
    let second = active_server(
        &a,
        json!({"name": "second", "imageRef": IMAGE, "flavorRef": "1"}),
    )
    .await?;
    let other = host_of(&a.server(&second).await?.body);
    assert_ne!(other, home);
    for hints in [
        json!({ "different_host": [second] }),
        json!({ "different_host": second, "a_custom_hint": "x" }),
    ] {
        for _ in 0..2 {
            assert_eq!(placed(hints.clone()).await?, home, "{hints}");
        }
    }
    let r = create(json!({ "same_host": [first], "different_host": [first] })).await?;
    assert_eq!(r.status, 202, "{}", r.body);
    let id = r.body["server"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let s = a.wait_error(&id, WAIT).await?;
    assert!(
        s["fault"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("No valid host"),
        "{s}"
    );
    let before = a.get("/servers").await?.body["servers"].clone();
    for hints in [
        json!({ "group": first }),
        json!({ "query": "[\">=\", \"$free_ram_mb\", 1024]" }),
        json!({ "same_host": ["not-a-uuid"] }),
        json!("not an object"),
    ] {
        let r = create(hints.clone()).await?;
        assert_eq!(r.status, 400, "{hints}: {}", r.body);
    }
    assert_eq!(a.get("/servers").await?.body["servers"], before);
    Ok(())
}

/// Host aggregates as Nova's os-aggregates, and the availability zones they make: a zone's
/// servers land on its hosts, show its name, and a zone without an enabled host is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregates_make_availability_zones_that_placement_honours() -> anyhow::Result<()> {
    let mut stack = e2e::stack::Distributed::start(Options::default()).await?;
    stack.start_agent_on("compute-2").await?;
    let a = admin(&stack, "2.41");
    let member = demo(&stack, "2.41");

    // Admins only; Nova's schema, messages and codes.
    assert_eq!(member.get("/os-aggregates").await?.status, 403);
    let r = member
        .post("/os-aggregates", &json!({"aggregate": {"name": "x"}}))
        .await?;
    assert_eq!(r.status, 403, "{}", r.body);
    for bad in [
        json!({"aggregate": {"name": ""}}),
        json!({"aggregate": {"name": "n".repeat(256)}}),
        json!({"aggregate": {"name": " padded "}}),
        json!({"aggregate": {"name": "ok", "availability_zone": "a:b"}}),
        json!({"aggregate": {"name": "ok", "other": 1}}),
        json!({"aggregate": {}}),
    ] {
        assert_eq!(a.post("/os-aggregates", &bad).await?.status, 400, "{bad}");
    }
    let r = a
        .post(
            "/os-aggregates",
            &json!({"aggregate": {"name": "rack-b", "availability_zone": "zone-b"}}),
        )
        .await?;
    assert_eq!(r.status, 200, "{}", r.body);
    let agg = r.body["aggregate"].clone();
    assert_eq!(agg["availability_zone"], json!("zone-b"));
    assert!(
        agg["uuid"].is_string() && agg.get("hosts").is_none(),
        "{agg}"
    );
    let id = agg["id"].as_i64().unwrap_or_default();
    let path = format!("/os-aggregates/{id}");
    let action = format!("{path}/action");
    let r = a
        .post("/os-aggregates", &json!({"aggregate": {"name": "rack-b"}}))
        .await?;
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(
        r.body["conflictingRequest"]["message"],
        json!("Aggregate rack-b already exists.")
    );
    assert_eq!(a.get("/os-aggregates/999999").await?.status, 404);
    assert_eq!(a.get("/os-aggregates/abc").await?.status, 400);
    assert_eq!(a.get("/os-aggregates/-1").await?.status, 404);
    assert_eq!(a.delete("/os-aggregates/-1").await?.status, 404);

    // Hosts: a compute host, once.
    let r = a
        .post(&action, &json!({"add_host": {"host": "nowhere"}}))
        .await?;
    assert_eq!(r.status, 404, "{}", r.body);
    let r = a
        .post(&action, &json!({"add_host": {"host": "compute-2"}}))
        .await?;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["aggregate"]["hosts"], json!(["compute-2"]));
    assert_eq!(
        r.body["aggregate"]["metadata"],
        json!({"availability_zone": "zone-b"})
    );
    let r = a
        .post(&action, &json!({"add_host": {"host": "compute-2"}}))
        .await?;
    assert_eq!(r.status, 409, "{}", r.body);
    let r = a
        .post(&action, &json!({"remove_host": {"host": "compute-1"}}))
        .await?;
    assert_eq!(r.status, 404, "{}", r.body);
    // A host is in one zone only.
    let other = a
        .post(
            "/os-aggregates",
            &json!({"aggregate": {"name": "other", "availability_zone": "zone-c"}}),
        )
        .await?;
    let other_id = other.body["aggregate"]["id"].as_i64().unwrap_or_default();
    let r = a
        .post(
            &format!("/os-aggregates/{other_id}/action"),
            &json!({"add_host": {"host": "compute-2"}}),
        )
        .await?;
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(
        a.delete(&format!("/os-aggregates/{other_id}"))
            .await?
            .status,
        200
    );

    // The zones: zone-b (compute-2) and nova (compute-1); the conductor is internal.
    let r = member.get("/os-availability-zone").await?;
    let names: Vec<&Value> = r.body["availabilityZoneInfo"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|z| &z["zoneName"])
        .collect();
    assert_eq!(names, vec![&json!("nova"), &json!("zone-b")], "{}", r.body);
    let r = a.get("/os-availability-zone/detail").await?;
    assert_eq!(
        r.body["availabilityZoneInfo"][0]["zoneName"],
        json!("internal"),
        "{}",
        r.body
    );
    let r = a
        .get("/os-services?binary=nova-compute&host=compute-2")
        .await?;
    assert_eq!(r.body["services"][0]["zone"], json!("zone-b"));

    // Placement honours the zone; the server shows its host's zone.
    let in_zone = |zone: Option<&str>| {
        let member = member.clone();
        let zone = zone.map(str::to_owned);
        async move {
            let mut server =
                json!({"name": "z", "imageRef": IMAGE, "flavorRef": "1", "networks": "none"});
            if let Some(z) = zone {
                server["availability_zone"] = json!(z);
            }
            member.post("/servers", &json!({ "server": server })).await
        }
    };
    for (zone, host) in [("zone-b", "compute-2"), ("nova", "compute-1")] {
        for _ in 0..2 {
            let r = in_zone(Some(zone)).await?;
            assert_eq!(r.status, 202, "{}", r.body);
            let id = r.body["server"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let s = member.wait_status(&id, "ACTIVE", WAIT).await?;
            assert_eq!(s["OS-EXT-AZ:availability_zone"], json!(zone));
            let s = a.server(&id).await?.body;
            assert_eq!(s["server"]["OS-EXT-SRV-ATTR:host"], json!(host), "{zone}");
        }
    }
    let r = in_zone(Some("zone-x")).await?;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(
        r.body["badRequest"]["message"],
        json!("The requested availability zone is not available")
    );
    let r = in_zone(Some("zone-b:compute-2")).await?;
    assert_eq!(r.status, 403, "a forced host is for admins: {}", r.body);

    // A zone with servers keeps its hosts and its name.
    let r = a
        .post(&action, &json!({"remove_host": {"host": "compute-2"}}))
        .await?;
    assert_eq!(r.status, 409, "{}", r.body);
    let r = a
        .put(
            &path,
            &json!({"aggregate": {"availability_zone": "zone-z"}}),
        )
        .await?;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = a
        .post(
            &action,
            &json!({"set_metadata": {"metadata": {"availability_zone": "zone-z"}}}),
        )
        .await?;
    assert_eq!(r.status, 400, "{}", r.body);
    // Other metadata and the name change freely; null removes a key.
    let r = a
        .post(
            &action,
            &json!({"set_metadata": {"metadata": {"ssd": "true"}}}),
        )
        .await?;
    assert_eq!(
        r.body["aggregate"]["metadata"],
        json!({"availability_zone": "zone-b", "ssd": "true"})
    );
    let r = a
        .post(
            &action,
            &json!({"set_metadata": {"metadata": {"ssd": null}}}),
        )
        .await?;
    assert_eq!(
        r.body["aggregate"]["metadata"],
        json!({"availability_zone": "zone-b"})
    );
    let r = a
        .put(&path, &json!({"aggregate": {"name": "rack-b2"}}))
        .await?;
    assert_eq!(r.body["aggregate"]["name"], json!("rack-b2"), "{}", r.body);
    // An aggregate with hosts is not deleted.
    let r = a.delete(&path).await?;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = a.get("/os-aggregates").await?;
    assert_eq!(r.body["aggregates"].as_array().map(Vec::len), Some(1));
    Ok(())
}

on_both_shapes!(server_groups_follow_novas_api, Options::default());
/// Server groups as Nova's os-server-groups, on one host: the view by microversion, the
/// create's checks, the project's own groups, the quotas; a second anti-affinity member has no
/// valid host and stays a member in ERROR; a deleted group is gone from its servers.
async fn server_groups_follow_novas_api(stack: &dyn Stack) -> anyhow::Result<()> {
    let c = demo(stack, "2.64");
    let create = |c: &Client, group: Value| {
        let c = c.clone();
        async move {
            c.post("/os-server-groups", &json!({ "server_group": group }))
                .await
        }
    };
    let r = create(&c, json!({"name": "apart", "policy": "anti-affinity"})).await?;
    assert_eq!(r.status, 200, "{}", r.body);
    let apart = r.body["server_group"].clone();
    let apart_id = apart["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(apart["policy"], json!("anti-affinity"));
    assert_eq!(apart["rules"], json!({}));
    assert_eq!(apart["members"], json!([]));
    assert!(apart.get("policies").is_none() && apart.get("metadata").is_none());
    let r = create(
        &c,
        json!({"name": "two", "policy": "anti-affinity", "rules": {"max_server_per_host": 2}}),
    )
    .await?;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body["server_group"]["rules"],
        json!({"max_server_per_host": 2})
    );
    // Before 2.64 a list of one policy, and an empty metadata; the soft ones from 2.15.
    let r = create(
        &c.at_microversion("2.15"),
        json!({"name": "near", "policies": ["soft-affinity"]}),
    )
    .await?;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["server_group"]["policies"], json!(["soft-affinity"]));
    assert_eq!(r.body["server_group"]["metadata"], json!({}));
    let old = c.at_microversion("2.1");
    let r = old.get(&format!("/os-server-groups/{apart_id}")).await?;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["server_group"]["policies"], json!(["anti-affinity"]));
    assert!(r.body["server_group"].get("project_id").is_none());

    // Bad input changes nothing.
    for (c, group, message) in [
        (
            &c,
            json!({"name": "x", "policy": "affinity", "rules": {"max_server_per_host": 2}}),
            Some("Only anti-affinity policy supports rules."),
        ),
        (&c, json!({"name": "x", "policy": "friends"}), None),
        (&c, json!({"name": "x", "policies": ["affinity"]}), None),
        (
            &c,
            json!({"name": "x", "policy": "anti-affinity", "rules": {"max_server_per_host": 0}}),
            None,
        ),
        (
            &c,
            json!({"name": "x", "policy": "anti-affinity", "rules": {"other": 1}}),
            None,
        ),
        (
            &old,
            json!({"name": "x", "policies": ["soft-affinity"]}),
            None,
        ),
        (
            &old,
            json!({"name": "x", "policies": ["affinity", "anti-affinity"]}),
            None,
        ),
        (&old, json!({"name": "", "policies": ["affinity"]}), None),
    ] {
        let r = create(c, group.clone()).await?;
        assert_eq!(r.status, 400, "{group}: {}", r.body);
        if let Some(m) = message {
            assert_eq!(r.body["badRequest"]["message"], json!(m));
        }
    }
    let listed = c.get("/os-server-groups").await?;
    assert_eq!(listed.status, 200, "{}", listed.body);
    let names: Vec<&str> = listed.body["server_groups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|g| g["name"].as_str())
        .collect();
    assert_eq!(names, ["apart", "two", "near"]);
    let page = c.get("/os-server-groups?limit=1&offset=1").await?;
    assert_eq!(page.body["server_groups"][0]["name"], json!("two"));
    assert_eq!(page.body["server_groups"].as_array().map(Vec::len), Some(1));
    // As Nova's `limited`, a limit of 0 is the most there is.
    let all = c.get("/os-server-groups?limit=0").await?;
    assert_eq!(all.body["server_groups"].as_array().map(Vec::len), Some(3));
    assert_eq!(
        c.get("/os-server-groups?limit=-1").await?.status,
        400,
        "a negative limit"
    );

    // Another project sees none of them: not found, as Nova scopes a member's lookup.
    let other = Client::new(stack.api_url(), "other:other").at_microversion("2.64");
    assert_eq!(
        other.get("/os-server-groups").await?.body["server_groups"],
        json!([])
    );
    let path = format!("/os-server-groups/{apart_id}");
    assert_eq!(other.get(&path).await?.status, 404);
    assert_eq!(other.delete(&path).await?.status, 404);
    // An admin lists every project's with all_projects.
    let a = admin(stack, "2.64");
    let all = a.get("/os-server-groups?all_projects=True").await?;
    assert!(all.body["server_groups"]
        .as_array()
        .is_some_and(|g| g.len() >= 3));
    // Nor may it put its servers into them.
    let server = |name: &str, group: &str| {
        json!({"server": {"name": name, "imageRef": IMAGE, "flavorRef": "1", "networks": "none"},
               "os:scheduler_hints": {"group": group}})
    };
    let r = other.post("/servers", &server("x", &apart_id)).await?;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(
        r.body["badRequest"]["message"],
        json!(format!("Instance group {apart_id} could not be found."))
    );

    // One host: the first member of an anti-affinity group takes it, the second finds no
    // valid host and is a member all the same, in ERROR (as Nova adds members at create).
    let r = c.post("/servers", &server("one", &apart_id)).await?;
    assert_eq!(r.status, 202, "{}", r.body);
    let one = r.body["server"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    c.wait_status(&one, "ACTIVE", WAIT).await?;
    let r = c.post("/servers", &server("two", &apart_id)).await?;
    assert_eq!(r.status, 202, "{}", r.body);
    let two = r.body["server"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let failed = c.wait_error(&two, WAIT).await?;
    assert!(
        failed["fault"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("No valid host was found")),
        "{failed}"
    );
    let shown = c.get(&path).await?.body["server_group"]["members"].clone();
    assert_eq!(shown, json!([one, two]));
    let s = c.at_microversion("2.71").server(&one).await?;
    assert_eq!(s.body["server"]["server_groups"], json!([apart_id]));
    assert!(c.at_microversion("2.70").server(&one).await?.body["server"]
        .get("server_groups")
        .is_none());

    // The quotas: members per group, and groups per project.
    let r = a
        .put(
            "/os-quota-sets/demo",
            &json!({"quota_set": {"server_group_members": 2, "server_groups": 3}}),
        )
        .await?;
    assert_eq!(r.status, 200, "{}", r.body);
    let before = c.get("/servers").await?.body["servers"].clone();
    let r = c.post("/servers", &server("three", &apart_id)).await?;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(
        r.body["forbidden"]["message"],
        json!("Quota exceeded, too many servers in group")
    );
    assert_eq!(c.get("/servers").await?.body["servers"], before);
    // Counted per user, as Nova's: another user's member does not use the owner's.
    let r = a.post("/servers", &server("admins", &apart_id)).await?;
    assert_eq!(r.status, 202, "{}", r.body);
    let admins = r.body["server"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    a.wait_error(&admins, WAIT).await?;
    assert_eq!(a.delete(&format!("/servers/{admins}")).await?.status, 204);
    a.wait_gone(&admins, WAIT).await?;
    let r = create(&c, json!({"name": "fourth", "policy": "affinity"})).await?;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(
        r.body["forbidden"]["message"],
        json!("Quota exceeded, too many server groups.")
    );
    let limits = c.get("/limits").await?.body["limits"]["absolute"].clone();
    assert_eq!(
        (&limits["maxServerGroups"], &limits["totalServerGroupsUsed"]),
        (&json!(3), &json!(3)),
        "{limits}"
    );

    // A deleted member is no member; a deleted group is gone from its servers.
    assert_eq!(c.delete(&format!("/servers/{two}")).await?.status, 204);
    c.wait_gone(&two, WAIT).await?;
    assert_eq!(
        c.get(&path).await?.body["server_group"]["members"],
        json!([one])
    );
    assert_eq!(c.delete(&path).await?.status, 204);
    assert_eq!(c.get(&path).await?.status, 404);
    assert_eq!(c.delete(&path).await?.status, 404);
    let s = c.at_microversion("2.71").server(&one).await?;
    assert_eq!(s.body["server"]["server_groups"], json!([]));
    let r = c.post("/servers", &server("late", &apart_id)).await?;
    assert_eq!(r.status, 400, "{}", r.body);
    Ok(())
}

/// A group's policy across two hosts: anti-affinity spreads its members (one per host, or as
/// many as its rule allows) and refuses a third, even when the members are created at once;
/// affinity keeps them on one host; the soft policies prefer, and never refuse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_groups_place_their_members_together_or_apart() -> anyhow::Result<()> {
    let mut stack = e2e::stack::Distributed::start(Options::default()).await?;
    stack.start_agent_on("compute-2").await?;
    let a = admin(&stack, "2.64");
    let group = |policy: &str, rules: Value| {
        let a = a.clone();
        let body = json!({"server_group": {"name": policy, "policy": policy, "rules": rules}});
        async move {
            let r = a.post("/os-server-groups", &body).await?;
            anyhow::ensure!(r.status == 200, "{}", r.body);
            Ok::<String, anyhow::Error>(
                r.body["server_group"]["id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        }
    };
    // Each member's host once it settled, or None for one in ERROR.
    let members = |group: String, n: usize| {
        let a = a.clone();
        async move {
            let creates = (0..n).map(|i| {
                let a = a.clone();
                let group = group.clone();
                async move {
                    let r = a
                        .post(
                            "/servers",
                            &json!({"server": {"name": format!("m{i}"), "imageRef": IMAGE,
                                               "flavorRef": "1", "networks": "none"},
                                    "os:scheduler_hints": {"group": group}}),
                        )
                        .await?;
                    anyhow::ensure!(r.status == 202, "{}", r.body);
                    let id = r.body["server"]["id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned();
                    let deadline = tokio::time::Instant::now() + WAIT;
                    loop {
                        let s = a.server(&id).await?.body["server"].clone();
                        match s["status"].as_str() {
                            Some("ACTIVE") => {
                                return Ok(s["OS-EXT-SRV-ATTR:host"].as_str().map(str::to_owned))
                            }
                            Some("ERROR") => return Ok(None),
                            _ => {}
                        }
                        anyhow::ensure!(tokio::time::Instant::now() < deadline, "{s}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            });
            let mut hosts = futures::future::try_join_all(creates).await?;
            hosts.sort();
            Ok::<Vec<Option<String>>, anyhow::Error>(hosts)
        }
    };
    let (one, two) = (Some("compute-1".to_owned()), Some("compute-2".to_owned()));
    // Created at once: each host takes one, the third has none left.
    let apart = group("anti-affinity", json!({})).await?;
    assert_eq!(members(apart, 3).await?, [None, one.clone(), two.clone()]);
    let two_each = group("anti-affinity", json!({"max_server_per_host": 2})).await?;
    assert_eq!(
        members(two_each, 5).await?,
        [None, one.clone(), one.clone(), two.clone(), two.clone()]
    );
    // Together: all on the host the first went to.
    let together = group("affinity", json!({})).await?;
    let hosts = members(together, 3).await?;
    assert!(
        hosts[0].is_some() && hosts.iter().all(|h| *h == hosts[0]),
        "{hosts:?}"
    );
    // Soft (one after another: a soft policy is a preference, not checked under the group's
    // lock): spread while they can, and never refused. (The weigher's most-free-RAM order
    // alone would spread these two too; soft affinity, below, goes against it.)
    let spread = group("soft-anti-affinity", json!({})).await?;
    let first = members(spread.clone(), 1).await?;
    let second = members(spread.clone(), 1).await?;
    assert!(
        first[0].is_some() && second[0].is_some() && first != second,
        "{first:?} {second:?}"
    );
    assert!(members(spread, 1).await?[0].is_some());
    let near = group("soft-affinity", json!({})).await?;
    let first = members(near.clone(), 1).await?;
    assert_eq!(members(near, 1).await?, first);
    Ok(())
}
