//! Identity end to end: the real `openstack` CLI against the all-in-one, and the ways a token
//! must be refused. `scripts/test.sh` installs python-openstackclient into `.venv`.

use base64::Engine;
use e2e::client::Client;
use e2e::stack::{AllInOneStack, Options};
use keystone_auth::keys::KeyRing;
use keystone_auth::tokens::{NewToken, RoleRef, TokenService};
use keystone_auth::{AuthSettings, Strategy};
use serde_json::{json, Value};
use std::time::Duration;

const ADMIN_PASSWORD: &str = "admin-secret";
const DEMO_PASSWORD: &str = "demo-secret";

fn keystone() -> AuthSettings {
    AuthSettings {
        strategy: Strategy::Keystone,
        admin_password: Some(ADMIN_PASSWORD.into()),
        demo_password: Some(DEMO_PASSWORD.into()),
        ..Default::default()
    }
}

async fn start() -> anyhow::Result<AllInOneStack> {
    AllInOneStack::start(Options {
        auth: Some(keystone()),
        ..Options::default()
    })
    .await
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

use e2e::client::password_token as token;

/// A fresh SQLite database of the schema (its directory goes when the first is dropped).
async fn fresh_db() -> anyhow::Result<(tempfile::TempDir, nova_db::Db)> {
    let (dir, url) = e2e::env::fresh_sqlite_database()?;
    let db = nova_db::Db::connect(&nova_db::DatabaseSettings {
        url,
        max_connections: 1,
    })
    .await?;
    Ok((dir, db))
}

async fn cli(stack: &AllInOneStack, cloud: &str, args: &[&str]) -> anyhow::Result<String> {
    e2e::cli::run(stack, cloud, args).await
}

async fn cli_json(stack: &AllInOneStack, cloud: &str, args: &[&str]) -> anyhow::Result<Value> {
    e2e::cli::run_json(stack, cloud, args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openstack_cli_logs_in_and_administers_identity() -> anyhow::Result<()> {
    let stack = start().await?;
    let url = e2e::stack::Stack::api_url(&stack).to_owned();

    let issued = cli_json(&stack, "admin", &["token", "issue"]).await?;
    let admin_token = issued["id"].as_str().unwrap_or_default().to_owned();
    assert!(admin_token.split('.').count() == 3, "a JWS token: {issued}");

    let catalog = cli_json(&stack, "demo", &["catalog", "list"]).await?;
    let types: Vec<&str> = catalog
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["Type"].as_str())
        .collect();
    assert!(
        types.contains(&"identity") && types.contains(&"compute") && types.contains(&"network"),
        "{catalog}"
    );

    let project = cli_json(
        &stack,
        "admin",
        &["project", "create", "--domain", "default", "team"],
    )
    .await?;
    assert_eq!(project["name"], json!("team"));
    let user = cli_json(
        &stack,
        "admin",
        &[
            "user",
            "create",
            "--domain",
            "default",
            "--password",
            "pw-1",
            "alice",
        ],
    )
    .await?;
    assert_eq!(user["name"], json!("alice"));
    cli(
        &stack,
        "admin",
        &[
            "role",
            "add",
            "--project",
            "team",
            "--user",
            "alice",
            "member",
        ],
    )
    .await?;
    let shown = cli_json(&stack, "admin", &["project", "show", "team"]).await?;
    assert_eq!(shown["id"], project["id"]);

    // The new user logs in to the new project and uses compute with the token.
    let alice = token(&url, "alice", "pw-1", "team").await?;
    let c = Client::new(&url, &alice);
    let id = c.create_server("alices", "1").await?;
    let server = c
        .wait_status(&id, "ACTIVE", Duration::from_secs(60))
        .await?;
    assert_eq!(server["tenant_id"], project["id"]);
    assert_eq!(
        cli_json(&stack, "demo", &["server", "list"]).await?,
        json!([]),
        "demo sees only demo's"
    );

    // Revocation through the CLI: the token stops working everywhere.
    let demo_token = cli_json(&stack, "demo", &["token", "issue"]).await?["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(
        Client::new(&url, &demo_token).get("/servers").await?.status,
        200
    );
    cli(&stack, "demo", &["token", "revoke", &demo_token]).await?;
    assert_eq!(
        Client::new(&url, &demo_token).get("/servers").await?.status,
        401
    );

    let listed = cli_json(&stack, "admin", &["user", "list"]).await?;
    let names: Vec<&str> = listed
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|u| u["Name"].as_str())
        .collect();
    assert!(
        names.contains(&"alice") && names.contains(&"admin") && names.contains(&"demo"),
        "{listed}"
    );
    cli(&stack, "admin", &["user", "delete", "alice"]).await?;
    assert_eq!(
        Client::new(&url, &alice).get("/servers").await?.status,
        401,
        "a deleted user's token dies"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_refused() -> anyhow::Result<()> {
    let stack = start().await?;
    let url = e2e::stack::Stack::api_url(&stack).to_owned();
    let good = token(&url, "demo", DEMO_PASSWORD, "demo").await?;
    assert_eq!(Client::new(&url, &good).get("/servers").await?.status, 200);

    // No token: 401 naming the identity endpoint.
    let r = Client::new(&url, "").get("/servers").await?;
    assert_eq!(r.status, 401);
    let www = r
        .headers
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        www.starts_with("Keystone uri=") && www.contains("/identity"),
        "{www}"
    );

    let parts: Vec<&str> = good.split('.').collect();
    // Forged: the payload changed (another user), the signature kept.
    let mut claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(parts[1])?,
    )?;
    claims["sub"] = json!("someone-else");
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        b64(&serde_json::to_vec(&claims)?),
        parts[2]
    );
    // alg none: no signature at all.
    let none = format!("{}.{}.", b64(br#"{"alg":"none","typ":"JWT"}"#), parts[1]);
    // HS256 with the public key as the shared secret (the classic key-confusion attack).
    let public_pem = std::fs::read_dir(stack.key_repository.join("public"))?
        .next()
        .ok_or_else(|| anyhow::anyhow!("no public key"))??
        .path();
    let header = json!({"alg": "HS256", "typ": "JWT"});
    let signing_input = format!("{}.{}", b64(&serde_json::to_vec(&header)?), parts[1]);
    let hmac = jsonwebtoken::crypto::sign(
        signing_input.as_bytes(),
        &jsonwebtoken::EncodingKey::from_secret(&std::fs::read(public_pem)?),
        jsonwebtoken::Algorithm::HS256,
    )?;
    let confused = format!("{signing_input}.{hmac}");
    // Expired: properly signed with the service's own key, but past its expiry.
    let keys = KeyRing::load_or_create(&stack.key_repository)?;
    let past = TokenService::new(keys, -10, e2e::stack::Stack::db(&stack).clone());
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(parts[1])?,
    )?;
    let (expired, _) = past
        .issue(NewToken {
            user_id: claims["sub"].as_str().unwrap_or_default(),
            methods: vec!["password".into()],
            project_id: claims["openstack_project_id"].as_str().map(str::to_owned),
            domain_id: None,
            system: None,
            roles: vec![RoleRef {
                id: "x".into(),
                name: "member".into(),
            }],
            parent: None,
        })
        .map_err(anyhow::Error::msg)?;
    for (what, bad) in [
        ("forged", forged),
        ("alg none", none),
        ("HS256 with the public key", confused),
        ("expired", expired),
        ("garbage", "abc".into()),
    ] {
        let r = Client::new(&url, &bad).get("/servers").await?;
        assert_eq!(r.status, 401, "{what} token was accepted");
    }

    // A wrong password and an unknown user get the same answer.
    let try_login = |user: &'static str, password: &'static str| {
        let url = url.clone();
        async move {
            let body = json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
                "name": user, "domain": {"id": "default"}, "password": password}}}}});
            let res = reqwest::Client::new()
                .post(format!("{url}/identity/v3/auth/tokens"))
                .json(&body)
                .send()
                .await?;
            anyhow::Ok((res.status().as_u16(), res.text().await?))
        }
    };
    let wrong_password = try_login("demo", "nope").await?;
    let no_such_user = try_login("nobody", "nope").await?;
    assert_eq!(wrong_password.0, 401);
    assert_eq!(wrong_password, no_such_user);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_decide_what_a_caller_may_do() -> anyhow::Result<()> {
    let stack = start().await?;
    let url = e2e::stack::Stack::api_url(&stack).to_owned();
    let admin = Client::new(&url, &token(&url, "admin", ADMIN_PASSWORD, "admin").await?);
    let demo_token = token(&url, "demo", DEMO_PASSWORD, "demo").await?;
    let demo = Client::new(&url, &demo_token);

    // A member: compute yes, admin APIs no.
    let id = demo.create_server("mine", "1").await?;
    assert_eq!(demo.get("/servers?all_tenants=1").await?.status, 403);
    let r = reqwest::Client::new()
        .post(format!("{url}/identity/v3/projects"))
        .header("X-Auth-Token", &demo_token)
        .json(&json!({"project": {"name": "sneaky"}}))
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 403);

    // Another project's server is not found, even by name of id.
    let r = admin.server(&id).await?;
    assert_eq!(r.status, 200, "an admin sees every project's servers");
    let admins_own = admin.create_server("admins", "1").await?;
    assert_eq!(demo.server(&admins_own).await?.status, 404);

    // A reader reads and does not write.
    let admin_token = token(&url, "admin", ADMIN_PASSWORD, "admin").await?;
    let http = reqwest::Client::new();
    let v3 = format!("{url}/identity/v3");
    let created = http
        .post(format!("{v3}/users"))
        .header("X-Auth-Token", &admin_token)
        .json(&json!({"user": {"name": "rita", "password": "pw-r", "domain_id": "default"}}))
        .send()
        .await?
        .json::<Value>()
        .await?;
    let rita = created["user"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let roles: Value = http
        .get(format!("{v3}/roles?name=reader"))
        .header("X-Auth-Token", &admin_token)
        .send()
        .await?
        .json()
        .await?;
    let reader = roles["roles"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let projects: Value = http
        .get(format!("{v3}/projects?name=demo"))
        .header("X-Auth-Token", &admin_token)
        .send()
        .await?
        .json()
        .await?;
    let demo_project = projects["projects"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let r = http
        .put(format!(
            "{v3}/projects/{demo_project}/users/{rita}/roles/{reader}"
        ))
        .header("X-Auth-Token", &admin_token)
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 204);
    let rita_c = Client::new(&url, &token(&url, "rita", "pw-r", "demo").await?);
    assert_eq!(rita_c.server(&id).await?.status, 200, "a reader reads");
    let r = rita_c
        .post(
            "/servers",
            &json!({"server": {"name": "no", "imageRef": e2e::client::IMAGE, "flavorRef": "1"}}),
        )
        .await?;
    assert_eq!(r.status, 403, "a reader does not create: {}", r.body);
    assert_eq!(rita_c.delete(&format!("/servers/{id}")).await?.status, 403);
    // A project's reader is not Keystone's system reader: no listing of users or projects, but
    // its own user and project.
    let rita_token = token(&url, "rita", "pw-r", "demo").await?;
    for (path, status) in [
        ("projects".to_owned(), 403),
        ("users".to_owned(), 403),
        ("domains".to_owned(), 403),
        (format!("users/{rita}"), 200),
        (format!("projects/{demo_project}"), 200),
        ("domains/default".to_owned(), 200),
    ] {
        let r = http
            .get(format!("{v3}/{path}"))
            .header("X-Auth-Token", &rita_token)
            .send()
            .await?;
        assert_eq!(r.status().as_u16(), status, "{path}");
    }
    // Keystone's project names are at most 64 characters.
    let r = http
        .post(format!("{v3}/projects"))
        .header("X-Auth-Token", &admin_token)
        .json(&json!({"project": {"name": "p".repeat(65)}}))
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(
        rita_c.action(&id, &json!({"os-stop": null})).await?.status,
        403
    );

    // As keystone-manage bootstrap records: manager implies member, which implies reader, and a
    // token carries the implied roles.
    let roles: Value = http
        .get(format!("{v3}/roles?name=manager"))
        .header("X-Auth-Token", &admin_token)
        .send()
        .await?
        .json()
        .await?;
    let manager = roles["roles"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        !manager.is_empty(),
        "bootstrap made the manager role: {roles}"
    );
    let r = http
        .delete(format!(
            "{v3}/projects/{demo_project}/users/{rita}/roles/{reader}"
        ))
        .header("X-Auth-Token", &admin_token)
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 204);
    let r = http
        .put(format!(
            "{v3}/projects/{demo_project}/users/{rita}/roles/{manager}"
        ))
        .header("X-Auth-Token", &admin_token)
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 204);
    let managers = token(&url, "rita", "pw-r", "demo").await?;
    let body: Value = http
        .get(format!("{v3}/auth/tokens"))
        .header("X-Auth-Token", &admin_token)
        .header("X-Subject-Token", &managers)
        .send()
        .await?
        .json()
        .await?;
    let mut names: Vec<&str> = body["token"]["roles"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["name"].as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(names, vec!["manager", "member", "reader"], "{body}");
    let r = Client::new(&url, &managers)
        .post(
            "/servers",
            &json!({"server": {"name": "managed", "imageRef": e2e::client::IMAGE, "flavorRef": "1"}}),
        )
        .await?;
    assert_eq!(r.status, 202, "a manager is a member: {}", r.body);
    Ok(())
}

#[tokio::test]
async fn a_rotated_key_keeps_older_tokens_valid() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (_db_dir, db) = fresh_db().await?;
    let issue = |svc: &TokenService| {
        svc.issue(NewToken {
            user_id: "u",
            methods: vec!["password".into()],
            project_id: Some("p".into()),
            domain_id: None,
            system: None,
            roles: vec![],
            parent: None,
        })
        .map(|(t, _)| t)
        .map_err(anyhow::Error::msg)
    };
    let before = TokenService::new(KeyRing::load_or_create(dir.path())?, 3600, db.clone());
    let old_token = issue(&before)?;
    let new_kid = KeyRing::rotate(dir.path())?;
    let after = TokenService::new(KeyRing::load_or_create(dir.path())?, 3600, db.clone());
    assert!(
        after.validate(&old_token).is_ok(),
        "a token of the previous key still validates"
    );
    let new_token = issue(&after)?;
    let header = jsonwebtoken::decode_header(&new_token)?;
    assert_eq!(
        header.kid.as_deref(),
        Some(new_kid.as_str()),
        "new tokens are signed with the new key"
    );
    assert!(
        before.validate(&new_token).is_err(),
        "a ring without the new key refuses its tokens"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_mode_validates_against_another_keystone() -> anyhow::Result<()> {
    // The "existing cloud": an all-in-one with its own identity service.
    let keystone_side = start().await?;
    let remote_url = e2e::stack::Stack::api_url(&keystone_side).to_owned();
    // This service joins it: tokens are checked remotely, with the admin as service account.
    let mut remote = AuthSettings {
        strategy: Strategy::Remote,
        ..Default::default()
    };
    remote.remote.auth_url = format!("{remote_url}/identity/v3");
    remote.remote.username = "admin".into();
    remote.remote.password = ADMIN_PASSWORD.into();
    remote.remote.project_name = "admin".into();
    remote.remote.cache_ttl_s = 1;
    let joined = AllInOneStack::start(Options {
        auth: Some(remote),
        ..Options::default()
    })
    .await?;
    let url = e2e::stack::Stack::api_url(&joined).to_owned();

    let demo_token = token(&remote_url, "demo", DEMO_PASSWORD, "demo").await?;
    let demo = Client::new(&url, &demo_token);
    let id = demo.create_server("joined", "1").await?;
    demo.wait_status(&id, "ACTIVE", Duration::from_secs(60))
        .await?;
    assert_eq!(
        Client::new(&url, "not-a-token")
            .get("/servers")
            .await?
            .status,
        401
    );

    // Revoked at the remote Keystone: refused here once the cache entry ages out.
    let r = reqwest::Client::new()
        .delete(format!("{remote_url}/identity/v3/auth/tokens"))
        .header("X-Auth-Token", &demo_token)
        .header("X-Subject-Token", &demo_token)
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 204);
    e2e::wait_until(
        Duration::from_secs(10),
        "the revoked token refused once its cache entry aged out",
        || async { Ok(demo.get("/servers").await?.status == 401) },
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_api_follows_keystone() -> anyhow::Result<()> {
    let mut auth = keystone();
    auth.public_url = Some("https://cloud.example.com".into());
    let stack = AllInOneStack::start(Options {
        auth: Some(auth),
        ..Options::default()
    })
    .await?;
    let url = e2e::stack::Stack::api_url(&stack).to_owned();
    let v3 = format!("{url}/identity/v3");
    let http = reqwest::Client::new();

    // Discovery, with links on the public URL (behind a proxy it differs from the bind address).
    let r = http.get(format!("{url}/identity")).send().await?;
    assert_eq!(r.status().as_u16(), 300);
    let body: Value = r.json().await?;
    assert_eq!(body["versions"]["values"][0]["id"], json!("v3.14"));
    assert_eq!(
        body["versions"]["values"][0]["links"][0]["href"],
        json!("https://cloud.example.com/identity/v3/")
    );
    let body: Value = http.get(&v3).send().await?.json().await?;
    assert_eq!(body["version"]["status"], json!("stable"));

    let admin = token(&url, "admin", ADMIN_PASSWORD, "admin").await?;
    let get = |path: String, token: String, subject: Option<String>| {
        let http = http.clone();
        async move {
            let mut req = http.get(path).header("X-Auth-Token", token);
            if let Some(s) = subject {
                req = req.header("X-Subject-Token", s);
            }
            let res = req.send().await?;
            let status = res.status().as_u16();
            let body = if status == 200 {
                res.json::<Value>().await?
            } else {
                Value::Null
            };
            anyhow::Ok((status, body))
        }
    };

    // Validation shows the token; without ?nocatalog with its catalog, on the public URL.
    let (status, body) = get(
        format!("{v3}/auth/tokens"),
        admin.clone(),
        Some(admin.clone()),
    )
    .await?;
    assert_eq!(status, 200);
    let t = &body["token"];
    assert_eq!(t["user"]["name"], json!("admin"));
    assert_eq!(t["user"]["domain"]["id"], json!("default"));
    assert_eq!(t["project"]["name"], json!("admin"));
    assert!(
        t["expires_at"]
            .as_str()
            .is_some_and(|e| e.ends_with('Z') && e.contains('.')),
        "{t}"
    );
    assert!(t["roles"]
        .as_array()
        .is_some_and(|r| r.iter().any(|r| r["name"] == json!("admin"))));
    let urls: Vec<&str> = t["catalog"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["endpoints"].as_array().into_iter().flatten())
        .filter_map(|e| e["url"].as_str())
        .collect();
    assert!(urls.contains(&"https://cloud.example.com/v2.1"), "{urls:?}");
    let (_, body) = get(
        format!("{v3}/auth/tokens?nocatalog"),
        admin.clone(),
        Some(admin.clone()),
    )
    .await?;
    assert!(body["token"].get("catalog").is_none());
    let head = http
        .head(format!("{v3}/auth/tokens"))
        .header("X-Auth-Token", &admin)
        .header("X-Subject-Token", &admin)
        .send()
        .await?;
    assert_eq!(head.status().as_u16(), 200);

    // Without a scope, as Keystone: the user's default project.
    let body = json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": "demo", "domain": {"name": "Default"}, "password": DEMO_PASSWORD}}}}});
    let res = http
        .post(format!("{v3}/auth/tokens"))
        .json(&body)
        .send()
        .await?;
    assert_eq!(res.status().as_u16(), 201);
    let body: Value = res.json().await?;
    assert_eq!(body["token"]["project"]["name"], json!("demo"));

    // Explicitly unscoped, then rescoped with the token method: same user, chained audit ids.
    let body = json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": "demo", "domain": {"name": "Default"}, "password": DEMO_PASSWORD}}},
        "scope": "unscoped"}});
    let res = http
        .post(format!("{v3}/auth/tokens"))
        .json(&body)
        .send()
        .await?;
    assert_eq!(res.status().as_u16(), 201);
    let unscoped = res.headers()["X-Subject-Token"].to_str()?.to_owned();
    let body: Value = res.json().await?;
    assert!(body["token"].get("project").is_none() && body["token"].get("catalog").is_none());
    let (status, projects) = get(format!("{v3}/auth/projects"), unscoped.clone(), None).await?;
    assert_eq!(status, 200);
    assert_eq!(projects["projects"][0]["name"], json!("demo"));
    let user_id = body["token"]["user"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (status, projects) = get(
        format!("{v3}/users/{user_id}/projects"),
        unscoped.clone(),
        None,
    )
    .await?;
    assert_eq!(
        (status, projects["projects"].as_array().map(Vec::len)),
        (200, Some(1))
    );
    let body = json!({"auth": {"identity": {"methods": ["token"], "token": {"id": unscoped.clone()}},
        "scope": {"project": {"name": "demo", "domain": {"id": "default"}}}}});
    let res = http
        .post(format!("{v3}/auth/tokens"))
        .json(&body)
        .send()
        .await?;
    assert_eq!(res.status().as_u16(), 201);
    let scoped: Value = res.json().await?;
    // As Keystone: the methods that made the first token, and `token`.
    assert_eq!(scoped["token"]["methods"], json!(["password", "token"]));
    assert_eq!(
        scoped["token"]["audit_ids"].as_array().map(Vec::len),
        Some(2)
    );
    let (status, catalog) = get(format!("{v3}/auth/catalog"), admin.clone(), None).await?;
    assert_eq!(status, 200);
    assert!(catalog["catalog"].as_array().is_some_and(|c| c.len() >= 2));

    // The audit chain: a token made from a token made from `unscoped` carries the root's audit
    // id, and revoking the root ends them all, however deep (Keystone's audit chain).
    let rescope = |from: String| {
        let http = http.clone();
        let url = format!("{v3}/auth/tokens");
        async move {
            let body = json!({"auth": {"identity": {"methods": ["token"], "token": {"id": from}},
                "scope": {"project": {"name": "demo", "domain": {"id": "default"}}}}});
            let res = http.post(url).json(&body).send().await?;
            let status = res.status().as_u16();
            let token = res
                .headers()
                .get("X-Subject-Token")
                .and_then(|t| t.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let body = res.json::<Value>().await.unwrap_or(Value::Null);
            anyhow::Ok((status, token, body))
        }
    };
    let (_, child, _) = rescope(unscoped.clone()).await?;
    let (status, grandchild, body) = rescope(child.clone()).await?;
    assert_eq!(status, 201);
    let (_, root) = get(
        format!("{v3}/auth/tokens"),
        admin.clone(),
        Some(unscoped.clone()),
    )
    .await?;
    assert_eq!(
        body["token"]["audit_ids"][1], root["token"]["audit_ids"][0],
        "the grandchild names the chain's root"
    );
    assert_eq!(
        Client::new(&url, &grandchild).get("/servers").await?.status,
        200
    );
    // Revoking a token in the middle of the chain ends what was made from it, not its parent.
    let (_, child2, _) = rescope(unscoped.clone()).await?;
    let (_, grandchild2, _) = rescope(child2.clone()).await?;
    let r = http
        .delete(format!("{v3}/auth/tokens"))
        .header("X-Auth-Token", &admin)
        .header("X-Subject-Token", &child2)
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 204);
    assert_eq!(
        Client::new(&url, &grandchild2)
            .get("/servers")
            .await?
            .status,
        401
    );
    assert_eq!(
        Client::new(&url, &grandchild).get("/servers").await?.status,
        200
    );
    let r = http
        .delete(format!("{v3}/auth/tokens"))
        .header("X-Auth-Token", &admin)
        .header("X-Subject-Token", &unscoped)
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 204);
    assert_eq!(
        Client::new(&url, &grandchild).get("/servers").await?.status,
        401
    );
    assert_eq!(Client::new(&url, &child).get("/servers").await?.status, 401);
    assert_eq!(
        rescope(grandchild).await?.0,
        401,
        "a revoked chain mints no more"
    );

    // Domain scope, once the user has a role on the domain.
    let (_, roles) = get(format!("{v3}/roles?name=admin"), admin.clone(), None).await?;
    let (_, users) = get(format!("{v3}/users?name=admin"), admin.clone(), None).await?;
    let (role, user) = (
        roles["roles"][0]["id"].as_str().unwrap_or_default(),
        users["users"][0]["id"].as_str().unwrap_or_default(),
    );
    let r = http
        .put(format!("{v3}/domains/default/users/{user}/roles/{role}"))
        .header("X-Auth-Token", &admin)
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 204);
    let body = json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "id": user, "password": ADMIN_PASSWORD}}}, "scope": {"domain": {"id": "default"}}}});
    let res = http
        .post(format!("{v3}/auth/tokens"))
        .json(&body)
        .send()
        .await?;
    assert_eq!(res.status().as_u16(), 201);
    let body: Value = res.json().await?;
    assert_eq!(body["token"]["domain"]["id"], json!("default"));
    assert!(body["token"].get("project").is_none());

    // A scope the user has no role on is refused.
    let body = json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": "demo", "domain": {"id": "default"}, "password": DEMO_PASSWORD}}},
        "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}});
    let res = http
        .post(format!("{v3}/auth/tokens"))
        .json(&body)
        .send()
        .await?;
    assert_eq!(res.status().as_u16(), 401);
    Ok(())
}

/// A token by password for a user of `domain`, with the given scope (`{"project": …}`,
/// `{"system": …}`, …): the status, and the token when issued.
async fn scoped_token(
    url: &str,
    user: &str,
    password: &str,
    domain: &str,
    scope: Value,
) -> anyhow::Result<(u16, Option<String>, Value)> {
    let body = json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": user, "domain": {"name": domain}, "password": password}}},
        "scope": scope}});
    let res = reqwest::Client::new()
        .post(format!("{url}/identity/v3/auth/tokens"))
        .json(&body)
        .send()
        .await?;
    let status = res.status().as_u16();
    let token = res
        .headers()
        .get("X-Subject-Token")
        .and_then(|t| t.to_str().ok())
        .map(str::to_owned);
    let body = res.json::<Value>().await.unwrap_or(Value::Null);
    Ok((status, token, body))
}

/// Domains, groups, system roles, user and project updates and project tags, as an admin drives
/// them with the `openstack` CLI, and the tokens each change must end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_administers_domains_groups_and_system_roles() -> anyhow::Result<()> {
    let stack = start().await?;
    let url = e2e::stack::Stack::api_url(&stack).to_owned();
    let v3 = format!("{url}/identity/v3");
    let admin = |args: &'static [&'static str]| cli_json(&stack, "admin", args);

    let domain = admin(&["domain", "create", "--description", "Team A", "team-a"]).await?;
    assert_eq!(domain["enabled"], json!(true));
    let project = admin(&[
        "project", "create", "--domain", "team-a", "--tag", "blue", "--tag", "gold", "apps",
    ])
    .await?;
    let tags = project["tags"].as_array().cloned().unwrap_or_default();
    assert!(
        tags.contains(&json!("blue")) && tags.contains(&json!("gold")),
        "{project}"
    );
    let listed = admin(&["project", "list", "--tags-any", "gold,green"]).await?;
    assert!(
        listed
            .as_array()
            .into_iter()
            .flatten()
            .any(|p| p["Name"] == json!("apps")),
        "{listed}"
    );
    let listed = admin(&["project", "list", "--not-tags", "blue"]).await?;
    assert!(
        !listed
            .as_array()
            .into_iter()
            .flatten()
            .any(|p| p["Name"] == json!("apps")),
        "{listed}"
    );
    let user = admin(&[
        "user",
        "create",
        "--domain",
        "team-a",
        "--password",
        "pw-1",
        "--description",
        "on call",
        "--email",
        "bob@example.com",
        "bob",
    ])
    .await?;
    assert_eq!(user["description"], json!("on call"));
    admin(&["group", "create", "--domain", "team-a", "oncall"]).await?;
    cli(
        &stack,
        "admin",
        &[
            "group",
            "add",
            "user",
            "--group-domain",
            "team-a",
            "--user-domain",
            "team-a",
            "oncall",
            "bob",
        ],
    )
    .await?;
    cli(
        &stack,
        "admin",
        &[
            "role",
            "add",
            "--group",
            "oncall",
            "--group-domain",
            "team-a",
            "--project",
            "apps",
            "--project-domain",
            "team-a",
            "member",
        ],
    )
    .await?;

    // The group's role is bob's: he scopes to the project, with member and the reader it implies.
    let apps = json!({"project": {"name": "apps", "domain": {"name": "team-a"}}});
    let (status, bob, body) = scoped_token(&url, "bob", "pw-1", "team-a", apps.clone()).await?;
    assert_eq!(status, 201, "{body}");
    let bob = bob.unwrap_or_default();
    let roles: Vec<&str> = body["token"]["roles"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert!(
        roles.contains(&"member") && roles.contains(&"reader"),
        "{roles:?}"
    );
    assert_eq!(Client::new(&url, &bob).get("/servers").await?.status, 200);
    let assignments = admin(&[
        "role",
        "assignment",
        "list",
        "--user",
        "bob",
        "--user-domain",
        "team-a",
        "--effective",
    ])
    .await?;
    // Effective: the group's member role, and the reader role that member implies.
    assert_eq!(
        assignments.as_array().map(Vec::len),
        Some(2),
        "{assignments}"
    );

    // With names, as the CLI shows them (`name@domain`).
    let named = admin(&[
        "role",
        "assignment",
        "list",
        "--names",
        "--group",
        "oncall",
        "--group-domain",
        "team-a",
    ])
    .await?;
    let row = named
        .as_array()
        .and_then(|a| a.first())
        .cloned()
        .unwrap_or_default();
    assert_eq!(row["Role"], json!("member"), "{named}");
    assert_eq!(row["Group"], json!("oncall@team-a"), "{named}");
    assert_eq!(row["Project"], json!("apps@team-a"), "{named}");

    // A disabled project ends its tokens at once, and cannot be scoped to.
    cli(
        &stack,
        "admin",
        &["project", "set", "--domain", "team-a", "--disable", "apps"],
    )
    .await?;
    assert_eq!(Client::new(&url, &bob).get("/servers").await?.status, 401);
    assert_eq!(
        scoped_token(&url, "bob", "pw-1", "team-a", apps.clone())
            .await?
            .0,
        401
    );
    cli(
        &stack,
        "admin",
        &["project", "set", "--domain", "team-a", "--enable", "apps"],
    )
    .await?;
    let (status, bob, _) = scoped_token(&url, "bob", "pw-1", "team-a", apps.clone()).await?;
    assert_eq!(status, 201);
    let bob = bob.unwrap_or_default();

    // Leaving the group takes the role, and the token that named it.
    cli(
        &stack,
        "admin",
        &[
            "group",
            "remove",
            "user",
            "--group-domain",
            "team-a",
            "--user-domain",
            "team-a",
            "oncall",
            "bob",
        ],
    )
    .await?;
    assert_eq!(Client::new(&url, &bob).get("/servers").await?.status, 401);
    assert_eq!(
        scoped_token(&url, "bob", "pw-1", "team-a", apps.clone())
            .await?
            .0,
        401
    );

    // A system reader reads the whole cloud's identity and changes none of it.
    cli(
        &stack,
        "admin",
        &[
            "role",
            "add",
            "--system",
            "all",
            "--user",
            "bob",
            "--user-domain",
            "team-a",
            "reader",
        ],
    )
    .await?;
    let system = json!({"system": {"all": true}});
    let (status, sys, body) = scoped_token(&url, "bob", "pw-1", "team-a", system.clone()).await?;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["token"]["system"], json!({"all": true}));
    assert!(body["token"].get("project").is_none());
    let sys = sys.unwrap_or_default();
    let http = reqwest::Client::new();
    let r = http
        .get(format!("{v3}/users"))
        .header("X-Auth-Token", &sys)
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 200);
    let users: Value = r.json().await?;
    assert!(
        users["users"].as_array().is_some_and(|u| u.len() >= 3),
        "{users}"
    );
    let r = http
        .post(format!("{v3}/projects"))
        .header("X-Auth-Token", &sys)
        .json(&json!({"project": {"name": "nope"}}))
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 403);
    // Project-scoped, the same user reads nothing of the cloud's.
    let demo = token(&url, "demo", DEMO_PASSWORD, "demo").await?;
    let r = http
        .get(format!("{v3}/users"))
        .header("X-Auth-Token", &demo)
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 403);

    // Updating a user: a password change ends the user's tokens; the old password stops working.
    cli(
        &stack,
        "admin",
        &[
            "user",
            "set",
            "--domain",
            "team-a",
            "--password",
            "pw-2",
            "--description",
            "retired",
            "bob",
        ],
    )
    .await?;
    let r = http
        .get(format!("{v3}/users"))
        .header("X-Auth-Token", &sys)
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(
        scoped_token(&url, "bob", "pw-1", "team-a", system.clone())
            .await?
            .0,
        401
    );
    let shown = admin(&["user", "show", "--domain", "team-a", "bob"]).await?;
    assert_eq!(shown["description"], json!("retired"));
    // The user's own change proves the old password.
    let bob_id = shown["id"].as_str().unwrap_or_default().to_owned();
    let change = |old: &str, new: &str| {
        http.post(format!("{v3}/users/{bob_id}/password"))
            .json(&json!({"user": {"original_password": old, "password": new}}))
            .send()
    };
    assert_eq!(change("wrong", "pw-3").await?.status().as_u16(), 401);
    assert_eq!(change("pw-2", "pw-3").await?.status().as_u16(), 204);
    let (status, sys, _) = scoped_token(&url, "bob", "pw-3", "team-a", system.clone()).await?;
    assert_eq!(status, 201);
    let sys = sys.unwrap_or_default();

    // Implied roles: a new role that brings member (and so reader) with it, until it no longer
    // does.
    cli(&stack, "admin", &["role", "create", "lead"]).await?;
    cli(
        &stack,
        "admin",
        &[
            "implied",
            "role",
            "create",
            "lead",
            "--implied-role",
            "member",
        ],
    )
    .await?;
    let rules = admin(&["implied", "role", "list"]).await?;
    assert!(
        rules
            .as_array()
            .into_iter()
            .flatten()
            .any(|r| r["Prior Role Name"] == json!("lead")
                && r["Implied Role Name"] == json!("member")),
        "{rules}"
    );
    cli(
        &stack,
        "admin",
        &["user", "create", "--password", "pw-c", "carol"],
    )
    .await?;
    cli(
        &stack,
        "admin",
        &[
            "role",
            "add",
            "--project",
            "demo",
            "--user",
            "carol",
            "lead",
        ],
    )
    .await?;
    let demo_scope = json!({"project": {"name": "demo", "domain": {"id": "default"}}});
    let role_names = |body: &Value| -> Vec<String> {
        body["token"]["roles"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["name"].as_str().map(str::to_owned))
            .collect()
    };
    let (_, _, body) = scoped_token(&url, "carol", "pw-c", "Default", demo_scope.clone()).await?;
    assert_eq!(role_names(&body), ["lead", "member", "reader"]);
    cli(
        &stack,
        "admin",
        &[
            "implied",
            "role",
            "delete",
            "lead",
            "--implied-role",
            "member",
        ],
    )
    .await?;
    let (_, carol, body) = scoped_token(&url, "carol", "pw-c", "Default", demo_scope).await?;
    assert_eq!(role_names(&body), ["lead"]);
    // A deleted role ends the tokens that carried it.
    let carol = carol.unwrap_or_default();
    assert_eq!(Client::new(&url, &carol).get("/flavors").await?.status, 200);
    cli(&stack, "admin", &["role", "delete", "lead"]).await?;
    assert_eq!(Client::new(&url, &carol).get("/flavors").await?.status, 401);

    // An enabled domain is not deleted; disabling it ends its users' tokens and logins.
    let out = e2e::cli::run(&stack, "admin", &["domain", "delete", "team-a"]).await;
    assert!(out.is_err(), "an enabled domain was deleted: {out:?}");
    cli(&stack, "admin", &["domain", "set", "--disable", "team-a"]).await?;
    let r = http
        .get(format!("{v3}/users"))
        .header("X-Auth-Token", &sys)
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(
        scoped_token(&url, "bob", "pw-3", "team-a", system).await?.0,
        401
    );
    cli(&stack, "admin", &["domain", "delete", "team-a"]).await?;
    let admin_token = token(&url, "admin", ADMIN_PASSWORD, "admin").await?;
    for path in [
        format!("users/{bob_id}"),
        format!("projects/{}", project["id"].as_str().unwrap_or_default()),
    ] {
        let r = http
            .get(format!("{v3}/{path}"))
            .header("X-Auth-Token", &admin_token)
            .send()
            .await?;
        assert_eq!(r.status().as_u16(), 404, "{path} outlived its domain");
    }
    Ok(())
}

/// #15: a token scoped to a domain, to the system or to nothing acts on no project's
/// resources (it used to act as project `""`), and a custom role alone reads no servers or
/// images — Nova's and Glance's project-scoped, reader-or-better defaults.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_project_readers_touch_project_resources() -> anyhow::Result<()> {
    let stack = start().await?;
    let url = e2e::stack::Stack::api_url(&stack).to_owned();
    let v3 = format!("{url}/identity/v3");
    let http = reqwest::Client::new();
    let admin_token = token(&url, "admin", ADMIN_PASSWORD, "admin").await?;
    let demo = Client::new(&url, &token(&url, "demo", DEMO_PASSWORD, "demo").await?);
    let id = demo.create_server("mine", "1").await?;
    let admin_get = |path: &str| {
        let req = http
            .get(format!("{v3}/{path}"))
            .header("X-Auth-Token", admin_token.clone());
        async move { anyhow::Ok(req.send().await?.json::<Value>().await?) }
    };
    let demo_id = admin_get("users?name=demo").await?["users"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let member = admin_get("roles?name=member").await?["roles"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let r = http
        .put(format!(
            "{v3}/domains/default/users/{demo_id}/roles/{member}"
        ))
        .header("X-Auth-Token", &admin_token)
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 204);

    let domain_scope = json!({"domain": {"id": "default"}});
    let (status, domain_token, _) =
        scoped_token(&url, "demo", DEMO_PASSWORD, "Default", domain_scope).await?;
    assert_eq!(status, 201);
    let (status, unscoped, _) =
        scoped_token(&url, "demo", DEMO_PASSWORD, "Default", json!("unscoped")).await?;
    assert_eq!(status, 201);
    let system = json!({"system": {"all": true}});
    let (status, system_token, _) =
        scoped_token(&url, "admin", ADMIN_PASSWORD, "Default", system).await?;
    assert_eq!(status, 201);
    let image = e2e::client::IMAGE;
    for t in [domain_token, unscoped, system_token] {
        let t = t.unwrap_or_default();
        let c = Client::new(&url, &t);
        assert_eq!(c.get("/servers").await?.status, 403);
        assert_eq!(c.get(&format!("/servers/{id}")).await?.status, 403);
        assert_eq!(c.delete(&format!("/servers/{id}")).await?.status, 403);
        assert_eq!(
            c.get(&format!("/images/{image}/metadata")).await?.status,
            403
        );
        for path in [
            format!("/image/v2/images/{image}/file"),
            "/image/v2/images".to_owned(),
            "/network/v2.0/networks".to_owned(),
        ] {
            let r = http
                .get(format!("{url}{path}"))
                .header("X-Auth-Token", &t)
                .send()
                .await?;
            assert_eq!(r.status().as_u16(), 403, "{path}");
        }
        // A valid token still learns that a path does not exist.
        assert_eq!(c.get("/no-such-thing").await?.status, 404);
    }
    assert_eq!(
        demo.server(&id).await?.status,
        200,
        "the server is still there"
    );

    // A custom role alone: no servers, no images; flavors are anyone's, as in Nova.
    let r = http
        .post(format!("{v3}/roles"))
        .header("X-Auth-Token", &admin_token)
        .json(&json!({"role": {"name": "auditor"}}))
        .send()
        .await?;
    let auditor = r.json::<Value>().await?["role"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let r = http
        .post(format!("{v3}/users"))
        .header("X-Auth-Token", &admin_token)
        .json(&json!({"user": {"name": "cara", "password": "pw-c"}}))
        .send()
        .await?;
    let cara = r.json::<Value>().await?["user"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let demo_project = admin_get("projects?name=demo").await?["projects"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let r = http
        .put(format!(
            "{v3}/projects/{demo_project}/users/{cara}/roles/{auditor}"
        ))
        .header("X-Auth-Token", &admin_token)
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 204);
    let cara_token = token(&url, "cara", "pw-c", "demo").await?;
    let c = Client::new(&url, &cara_token);
    assert_eq!(c.get("/servers").await?.status, 403);
    assert_eq!(c.get(&format!("/servers/{id}")).await?.status, 403);
    assert_eq!(c.get("/flavors").await?.status, 200);
    // Nor in another spelling of the path, nor usage, quotas or networks.
    for path in [
        "/%73ervers".to_owned(),
        "/servers/detail".to_owned(),
        format!("/os-simple-tenant-usage/{demo_project}"),
        format!("/os-quota-sets/{demo_project}"),
        "/os-tenant-networks".to_owned(),
    ] {
        assert_eq!(c.get(&path).await?.status, 403, "{path}");
    }
    let r = http
        .get(format!("{url}/image/v2/%69mages"))
        .header("X-Auth-Token", &cara_token)
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 403);
    let r = http
        .get(format!("{url}/image/v2/images"))
        .header("X-Auth-Token", &cara_token)
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 403);
    let body: Value = r.json().await?;
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("get_images")),
        "Glance's words: {body}"
    );
    Ok(())
}

/// #15: revocation events are forgotten once no token they could match can still be valid —
/// in memory and in the database — and not before.
#[tokio::test]
async fn expired_revocations_are_pruned() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (_db_dir, db) = fresh_db().await?;
    let lifetime_s = 3600;
    let svc = TokenService::new(KeyRing::load_or_create(dir.path())?, lifetime_s, db.clone());
    let (token, claims) = svc
        .issue(NewToken {
            user_id: "u",
            methods: vec!["password".into()],
            project_id: Some("p".into()),
            domain_id: None,
            system: None,
            roles: vec![],
            parent: None,
        })
        .map_err(anyhow::Error::msg)?;
    svc.revoke(&claims).await?;
    svc.revoke_user("u", None).await?;
    svc.revoke_scope("p").await?;
    assert_eq!(svc.revocation_count(), 3);
    assert!(svc.validate(&token).is_err());

    // Before the events' expiry nothing goes, so the token stays revoked.
    let now = nova_core::time::now_ms();
    assert_eq!(svc.prune(now).await?, 0);
    assert_eq!(svc.revocation_count(), 3);
    assert!(svc.validate(&token).is_err());

    // Past every token's possible expiry: all forgotten, and another replica starting from
    // the database loads none.
    let later = now + (lifetime_s + 1) * 1000;
    assert_eq!(svc.prune(later).await?, 3);
    assert_eq!(svc.revocation_count(), 0);
    let replica = TokenService::new(KeyRing::load_or_create(dir.path())?, lifetime_s, db);
    replica.refresh().await?;
    assert_eq!(replica.revocation_count(), 0);
    Ok(())
}

/// #15: Keystone's lockout. Failed password checks in a row lock the account (the right
/// password is refused, with the same 401) until the duration passes; a success in between
/// starts the count again; other users are not affected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_passwords_lock_the_account_for_a_while() -> anyhow::Result<()> {
    let mut auth = keystone();
    auth.lockout_failure_attempts = Some(3);
    auth.lockout_duration_s = 2;
    let stack = AllInOneStack::start(Options {
        auth: Some(auth),
        ..Options::default()
    })
    .await?;
    let url = e2e::stack::Stack::api_url(&stack).to_owned();
    let login = |password: &'static str| {
        let url = url.clone();
        async move {
            anyhow::Ok(
                scoped_token(&url, "demo", password, "Default", json!("unscoped"))
                    .await?
                    .0,
            )
        }
    };
    // Two failures, a success: the count starts again.
    for _ in 0..2 {
        assert_eq!(login("wrong").await?, 401);
    }
    assert_eq!(login(DEMO_PASSWORD).await?, 201);
    for _ in 0..2 {
        assert_eq!(login("wrong").await?, 401);
    }
    assert_eq!(login(DEMO_PASSWORD).await?, 201, "two in a row do not lock");
    // Three in a row do: the right password is refused as a wrong one is.
    for _ in 0..3 {
        assert_eq!(login("wrong").await?, 401);
    }
    let locked = scoped_token(&url, "demo", DEMO_PASSWORD, "Default", json!("unscoped")).await?;
    let wrong = scoped_token(&url, "demo", "wrong", "Default", json!("unscoped")).await?;
    assert_eq!(
        (locked.0, &locked.2),
        (401, &wrong.2),
        "a lock looks like a wrong password"
    );
    // Others log in.
    assert_eq!(
        scoped_token(&url, "admin", ADMIN_PASSWORD, "Default", json!("unscoped"))
            .await?
            .0,
        201
    );
    // Once the duration has passed, the right password works again.
    e2e::wait_until(Duration::from_secs(10), "the lockout ran out", || async {
        Ok(login(DEMO_PASSWORD).await? == 201)
    })
    .await?;
    Ok(())
}

/// #15: without a configured public URL, links, the catalog and `WWW-Authenticate` name the
/// address the connection reached; a client's `Host` or `X-Forwarded-Host` (no proxy is
/// trusted by default) is never echoed into them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_host_header_is_not_echoed_into_links() -> anyhow::Result<()> {
    let stack = start().await?;
    let url = e2e::stack::Stack::api_url(&stack).to_owned();
    let http = reqwest::Client::new();
    let evil = [
        ("Host", "evil.example"),
        ("X-Forwarded-Host", "evil.example"),
    ];
    let with_evil =
        |req: reqwest::RequestBuilder| evil.iter().fold(req, |r, (k, v)| r.header(*k, *v));
    let body = json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": "demo", "domain": {"id": "default"}, "password": DEMO_PASSWORD}}},
        "scope": {"project": {"name": "demo", "domain": {"id": "default"}}}}});
    let r = with_evil(
        http.post(format!("{url}/identity/v3/auth/tokens"))
            .json(&body),
    )
    .send()
    .await?;
    assert_eq!(r.status().as_u16(), 201);
    let token = r.headers()["X-Subject-Token"].to_str()?.to_owned();
    let text = r.text().await?;
    assert!(!text.contains("evil.example"), "catalog: {text}");
    assert!(text.contains(&url), "the catalog names {url}: {text}");
    for path in [
        "/v2.1/",
        "/v2.1/servers",
        "/image/v2/images",
        "/identity/v3",
    ] {
        let r = with_evil(
            http.get(format!("{url}{path}"))
                .header("X-Auth-Token", &token),
        )
        .send()
        .await?;
        let text = r.text().await?;
        assert!(!text.contains("evil.example"), "{path}: {text}");
    }
    let r = with_evil(http.get(format!("{url}/v2.1/servers")))
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 401);
    let auth = r.headers()["WWW-Authenticate"].to_str()?.to_owned();
    assert_eq!(auth, format!("Keystone uri=\"{url}/identity\""));
    Ok(())
}

/// #15 (review): parallel guesses cannot pass the lockout's limit, a lock that ran out starts
/// the count again, and the self-service password change is under the same lockout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lockout_holds_against_parallel_guesses_and_password_changes() -> anyhow::Result<()> {
    let mut auth = keystone();
    auth.lockout_failure_attempts = Some(3);
    auth.lockout_duration_s = 3600;
    let stack = AllInOneStack::start(Options {
        auth: Some(auth),
        ..Options::default()
    })
    .await?;
    let url = e2e::stack::Stack::api_url(&stack).to_owned();
    let admin = token(&url, "admin", ADMIN_PASSWORD, "admin").await?;
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{url}/identity/v3/users"))
        .header("X-Auth-Token", &admin)
        .json(&json!({"user": {"name": "eve-target", "password": "right"}}))
        .send()
        .await?;
    let user: Value = r.json().await?;
    let user_id = user["user"]["id"].as_str().unwrap_or_default().to_owned();

    // Forty wrong guesses at once: at most three are checked, then the account is locked. (The
    // right password is not among them: checked among the first three it would succeed and
    // reset the count, as in Keystone, and whether it is depends on the requests' order.)
    let guesses = (0..40).map(|_| {
        let url = url.clone();
        async move { scoped_token(&url, "eve-target", "wrong", "Default", json!("unscoped")).await }
    });
    for r in futures::future::join_all(guesses).await {
        let (status, _, _) = r?;
        assert_eq!(status, 401);
    }
    let (status, _, _) =
        scoped_token(&url, "eve-target", "right", "Default", json!("unscoped")).await?;
    assert_eq!(status, 401, "locked after the burst");
    // The password change is no way around it, not even with the right old password.
    let change = |old: &str| {
        http.post(format!("{url}/identity/v3/users/{user_id}/password"))
            .json(&json!({"user": {"original_password": old, "password": "new"}}))
            .send()
    };
    assert_eq!(change("right").await?.status().as_u16(), 401);
    Ok(())
}

/// Keystone's catalog administration through the `openstack` CLI: a region, a service and an
/// endpoint made, listed and reflected in tokens' catalogs (with `$(project_id)s` filled in),
/// a disabled endpoint gone from them, and Keystone's refusals; and the policy API's blobs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_administers_the_catalog() -> anyhow::Result<()> {
    let stack = start().await?;
    let url = e2e::stack::Stack::api_url(&stack).to_owned();
    let v3 = format!("{url}/identity/v3");
    let http = reqwest::Client::new();
    let admin_token = token(&url, "admin", ADMIN_PASSWORD, "admin").await?;
    let demo_token = token(&url, "demo", DEMO_PASSWORD, "demo").await?;
    let call = |method: reqwest::Method, path: String, token: &str, body: Option<Value>| {
        let (http, url, token) = (http.clone(), format!("{v3}{path}"), token.to_owned());
        async move { e2e::client::send_json(&http, method, &url, &token, body).await }
    };

    // The deployment's own services are in the catalog's tables, their URLs following the
    // address a client reached (no public URL configured).
    let own = cli_json(
        &stack,
        "admin",
        &[
            "endpoint",
            "list",
            "--service",
            "compute",
            "--interface",
            "public",
        ],
    )
    .await?;
    assert_eq!(own.as_array().map(Vec::len), Some(1), "{own}");
    assert_eq!(own[0]["URL"], json!("$(public_url)s/v2.1"), "{own}");
    assert_eq!(own[0]["Region"], json!("RegionOne"), "{own}");

    let region = cli_json(
        &stack,
        "admin",
        &["region", "create", "--description", "east", "RegionTwo"],
    )
    .await?;
    assert_eq!(
        (&region["region"], &region["description"]),
        (&json!("RegionTwo"), &json!("east")),
        "{region}"
    );
    let service = cli_json(
        &stack,
        "admin",
        &[
            "service",
            "create",
            "--name",
            "cinder",
            "--description",
            "block",
            "volumev3",
        ],
    )
    .await?;
    assert_eq!(
        (&service["name"], &service["type"], &service["enabled"]),
        (&json!("cinder"), &json!("volumev3"), &json!(true)),
        "{service}"
    );
    let endpoint = cli_json(
        &stack,
        "admin",
        &[
            "endpoint",
            "create",
            "--region",
            "RegionTwo",
            "volumev3",
            "public",
            "https://block.example:8776/v3/$(project_id)s",
        ],
    )
    .await?;
    let endpoint_id = endpoint["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(endpoint["service_name"], json!("cinder"), "{endpoint}");
    let listed = cli_json(
        &stack,
        "admin",
        &["endpoint", "list", "--service", "volumev3"],
    )
    .await?;
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");

    // A member's token lists it, with its project's id in the URL.
    let (status, cat) = call(
        reqwest::Method::GET,
        "/auth/catalog".into(),
        &demo_token,
        None,
    )
    .await?;
    assert_eq!(status, 200, "{cat}");
    let demo_project = cli_json(&stack, "admin", &["project", "show", "demo"]).await?["id"].clone();
    let volume = cat["catalog"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["type"] == json!("volumev3"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(volume["name"], json!("cinder"), "{cat}");
    assert_eq!(
        volume["endpoints"][0]["url"],
        json!(format!(
            "https://block.example:8776/v3/{}",
            demo_project.as_str().unwrap_or_default()
        )),
        "{cat}"
    );
    let compute = cat["catalog"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["type"] == json!("compute"))
        .cloned()
        .unwrap_or_default();
    assert!(
        compute["endpoints"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|e| e["url"] == json!(format!("{url}/v2.1"))),
        "the reached address: {compute}"
    );

    // An endpoint group of the internal interface associated with the member's project: its
    // tokens' catalogs list those endpoints only; dissociated, every one again.
    let demo_pid = demo_project.as_str().unwrap_or_default().to_owned();
    let (status, g) = call(
        reqwest::Method::POST,
        "/OS-EP-FILTER/endpoint_groups".into(),
        &admin_token,
        Some(json!({"endpoint_group": {"name": "internal-only", "filters": {"interface": "internal"}}})),
    )
    .await?;
    assert_eq!(status, 201, "{g}");
    let gid = g["endpoint_group"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (status, _) = call(
        reqwest::Method::POST,
        "/OS-EP-FILTER/endpoint_groups".into(),
        &admin_token,
        Some(json!({"endpoint_group": {"name": "bad", "filters": {"url": "x"}}})),
    )
    .await?;
    assert_eq!(status, 400, "a filter key that is none");
    let assoc = format!("/OS-EP-FILTER/endpoint_groups/{gid}/projects/{demo_pid}");
    let (status, _) = call(reqwest::Method::PUT, assoc.clone(), &admin_token, None).await?;
    assert_eq!(status, 204);
    let interfaces = |cat: &Value| -> Vec<String> {
        cat["catalog"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
            .filter_map(|e| e["interface"].as_str().map(str::to_owned))
            .collect()
    };
    let (_, cat) = call(
        reqwest::Method::GET,
        "/auth/catalog".into(),
        &demo_token,
        None,
    )
    .await?;
    let seen = interfaces(&cat);
    assert!(
        !seen.is_empty() && seen.iter().all(|i| i == "internal"),
        "{cat}"
    );
    let (status, _) = call(reqwest::Method::DELETE, assoc, &admin_token, None).await?;
    assert_eq!(status, 204);
    let (_, cat) = call(
        reqwest::Method::GET,
        "/auth/catalog".into(),
        &demo_token,
        None,
    )
    .await?;
    assert!(interfaces(&cat).iter().any(|i| i == "public"), "{cat}");

    // Disabled, the endpoint leaves the tokens' catalogs but not the endpoint list.
    cli(
        &stack,
        "admin",
        &["endpoint", "set", "--disable", &endpoint_id],
    )
    .await?;
    let (_, cat) = call(
        reqwest::Method::GET,
        "/auth/catalog".into(),
        &demo_token,
        None,
    )
    .await?;
    assert!(
        cat["catalog"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["type"] == json!("volumev3"))
            .all(|s| s["endpoints"] == json!([])),
        "{cat}"
    );

    // Keystone's refusals, each changing nothing.
    let service_id = service["id"].as_str().unwrap_or_default().to_owned();
    for (body, what) in [
        (
            json!({"endpoint": {"service_id": service_id, "interface": "side", "url": "https://x"}}),
            "interface",
        ),
        (
            json!({"endpoint": {"service_id": service_id, "interface": "public", "url": "https://x", "enabled": "True"}}),
            "enabled",
        ),
        (
            json!({"endpoint": {"service_id": "nope", "interface": "public", "url": "https://x"}}),
            "service_id",
        ),
        (
            json!({"endpoint": {"service_id": service_id, "interface": "public", "url": "no scheme"}}),
            "url",
        ),
        (
            json!({"endpoint": {"service_id": service_id, "interface": "public", "url": "https://x/$(domain_id)s"}}),
            "url",
        ),
    ] {
        let (status, body) = call(
            reqwest::Method::POST,
            "/endpoints".into(),
            &admin_token,
            Some(body),
        )
        .await?;
        assert_eq!(status, 400, "{what}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains(what),
            "{what}: {body}"
        );
    }
    let (status, body) = call(
        reqwest::Method::POST,
        "/regions".into(),
        &admin_token,
        Some(json!({"region": {"parent_region_id": "nowhere"}})),
    )
    .await?;
    assert_eq!(status, 404, "{body}");
    let (status, _) = call(
        reqwest::Method::PUT,
        "/regions/RegionThree".into(),
        &admin_token,
        Some(json!({"region": {"parent_region_id": "RegionTwo"}})),
    )
    .await?;
    assert_eq!(status, 201);
    let (status, body) = call(
        reqwest::Method::PATCH,
        "/regions/RegionTwo".into(),
        &admin_token,
        Some(json!({"region": {"parent_region_id": "RegionThree"}})),
    )
    .await?;
    assert_eq!(status, 400, "a loop: {body}");
    let (status, body) = call(
        reqwest::Method::DELETE,
        "/regions/RegionTwo".into(),
        &admin_token,
        None,
    )
    .await?;
    assert_eq!(status, 403, "an endpoint's region: {body}");
    let (status, _) = call(
        reqwest::Method::GET,
        "/endpoints?interface=side".into(),
        &admin_token,
        None,
    )
    .await?;
    assert_eq!(status, 400, "an interface that is none");
    let (status, _) = call(reqwest::Method::GET, "/services".into(), &demo_token, None).await?;
    assert_eq!(status, 403, "services are the admin's and system readers'");
    let (status, _) = call(
        reqwest::Method::POST,
        "/services".into(),
        &demo_token,
        Some(json!({"service": {"type": "x"}})),
    )
    .await?;
    assert_eq!(status, 403);
    let (status, regions) = call(
        reqwest::Method::GET,
        "/regions?parent_region_id=RegionTwo".into(),
        &demo_token,
        None,
    )
    .await?;
    assert_eq!(status, 200, "regions any caller reads");
    assert_eq!(
        regions["regions"].as_array().map(Vec::len),
        Some(1),
        "{regions}"
    );
    let listed = cli_json(
        &stack,
        "admin",
        &["endpoint", "list", "--service", "volumev3"],
    )
    .await?;
    assert_eq!(
        listed.as_array().map(Vec::len),
        Some(1),
        "nothing made: {listed}"
    );

    // The service goes with its endpoints; then the regions (the child with its parent).
    cli(&stack, "admin", &["service", "delete", "volumev3"]).await?;
    let (status, _) = call(
        reqwest::Method::GET,
        format!("/endpoints/{endpoint_id}"),
        &admin_token,
        None,
    )
    .await?;
    assert_eq!(status, 404);
    cli(&stack, "admin", &["region", "delete", "RegionTwo"]).await?;
    let (status, _) = call(
        reqwest::Method::GET,
        "/regions/RegionThree".into(),
        &admin_token,
        None,
    )
    .await?;
    assert_eq!(status, 404, "deleted below its parent");

    // Keystone's policy API: a blob stored and read back (enforced by nobody, as in Keystone).
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("policy.json");
    std::fs::write(&file, r#"{"compute:start": "role:admin"}"#)?;
    let path = file.to_string_lossy().into_owned();
    let policy = cli_json(
        &stack,
        "admin",
        &["policy", "create", "--type", "application/json", &path],
    )
    .await?;
    let policy_id = policy["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(
        policy["rules"],
        json!(r#"{"compute:start": "role:admin"}"#),
        "{policy}"
    );
    cli(
        &stack,
        "admin",
        &["policy", "set", "--type", "text/plain", &policy_id],
    )
    .await?;
    let shown = cli_json(&stack, "admin", &["policy", "show", &policy_id]).await?;
    assert_eq!(shown["type"], json!("text/plain"), "{shown}");
    let (status, _) = call(reqwest::Method::GET, "/policies".into(), &demo_token, None).await?;
    assert_eq!(status, 403);
    let (status, body) = call(
        reqwest::Method::POST,
        "/policies".into(),
        &admin_token,
        Some(json!({"policy": {"type": "x"}})),
    )
    .await?;
    assert_eq!(status, 400, "no blob: {body}");
    cli(&stack, "admin", &["policy", "delete", &policy_id]).await?;
    let (status, _) = call(
        reqwest::Method::GET,
        format!("/policies/{policy_id}"),
        &admin_token,
        None,
    )
    .await?;
    assert_eq!(status, 404);
    Ok(())
}

/// Keystone's credentials through the `openstack` CLI: a member's EC2 key made, listed, shown
/// and changed (its id the SHA-256 of its access key), its blob sealed in the database (the
/// secret nowhere in the row); another member sees none of it and changes nothing; an admin
/// reads it; Keystone's refusals; gone with its user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_keeps_credentials_sealed() -> anyhow::Result<()> {
    use e2e::stack::Stack;
    use sha2::Digest;
    let stack = start().await?;
    let url = stack.api_url().to_owned();
    let v3 = format!("{url}/identity/v3");
    let blob = r#"{"access": "AKIA-demo", "secret": "very-secret-value"}"#;
    // A member names itself and its project by id: listing users or projects by name is an
    // admin's (as in Keystone).
    let demo_user = cli_json(&stack, "admin", &["user", "show", "demo"]).await?["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let demo_project = cli_json(&stack, "admin", &["project", "show", "demo"]).await?["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let made = cli_json(
        &stack,
        "demo",
        &[
            "credential",
            "create",
            "--type",
            "ec2",
            "--project",
            &demo_project,
            &demo_user,
            blob,
        ],
    )
    .await?;
    let id = made["id"].as_str().unwrap_or_default().to_owned();
    let expected_id: String = sha2::Sha256::digest(b"AKIA-demo")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(id, expected_id, "{made}");
    assert_eq!(made["blob"], json!(blob), "{made}");
    let stored: (String,) = match stack.db() {
        nova_db::Db::Sqlite(p) => {
            sqlx::query_as("SELECT encrypted_blob FROM credentials WHERE id = $1")
                .bind(&id)
                .fetch_one(p)
                .await?
        }
        nova_db::Db::Pg(_) => anyhow::bail!("the all-in-one is SQLite"),
    };
    assert!(
        stored.0.starts_with("v1:") && !stored.0.contains("very-secret"),
        "sealed: {}",
        stored.0
    );
    let listed = cli_json(&stack, "demo", &["credential", "list"]).await?;
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    let blob2 = r#"{"access": "AKIA-demo", "secret": "rotated"}"#;
    cli(
        &stack,
        "demo",
        &[
            "credential",
            "set",
            "--user",
            &demo_user,
            "--type",
            "ec2",
            "--data",
            blob2,
            "--project",
            &demo_project,
            &id,
        ],
    )
    .await?;
    let shown = cli_json(&stack, "admin", &["credential", "show", &id]).await?;
    assert_eq!(shown["blob"], json!(blob2), "an admin reads it: {shown}");

    // Another user: nothing listed, nothing read or changed.
    cli(
        &stack,
        "admin",
        &[
            "user",
            "create",
            "--domain",
            "default",
            "--password",
            "pw-2",
            "bob",
        ],
    )
    .await?;
    cli(
        &stack,
        "admin",
        &[
            "role",
            "add",
            "--project",
            "demo",
            "--user",
            "bob",
            "member",
        ],
    )
    .await?;
    let bob = token(&url, "bob", "pw-2", "demo").await?;
    let http = reqwest::Client::new();
    let body: Value = http
        .get(format!("{v3}/credentials"))
        .header("X-Auth-Token", &bob)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(body["credentials"], json!([]), "{body}");
    for req in [
        http.get(format!("{v3}/credentials/{id}")),
        http.delete(format!("{v3}/credentials/{id}")),
        http.patch(format!("{v3}/credentials/{id}"))
            .json(&json!({"credential": {"blob": "{}"}})),
    ] {
        let status = req
            .header("X-Auth-Token", &bob)
            .send()
            .await?
            .status()
            .as_u16();
        assert_eq!(status, 403);
    }
    let bob_id = cli_json(&stack, "admin", &["user", "show", "bob"]).await?["id"].clone();
    let demo_id = cli_json(&stack, "admin", &["user", "show", "demo"]).await?["id"].clone();
    let demo_token = token(&url, "demo", DEMO_PASSWORD, "demo").await?;
    for (body, want) in [
        (
            json!({"credential": {"type": "ec2", "user_id": demo_id, "blob": "{\"access\": \"x\"}"}}),
            400,
        ),
        (
            json!({"credential": {"type": "ec2", "user_id": demo_id, "project_id": "x", "blob": "not json"}}),
            404,
        ),
        (
            json!({"credential": {"type": "totp", "user_id": demo_id}}),
            400,
        ),
        (
            json!({"credential": {"type": "totp", "user_id": bob_id, "blob": "b"}}),
            403,
        ),
        (
            json!({"credential": {"type": "ec2", "user_id": demo_id, "project_id": made["project_id"], "blob": blob}}),
            409,
        ),
    ] {
        let res = http
            .post(format!("{v3}/credentials"))
            .header("X-Auth-Token", &demo_token)
            .json(&body)
            .send()
            .await?;
        assert_eq!(res.status().as_u16(), want, "{body}");
    }
    let listed = cli_json(&stack, "admin", &["credential", "list"]).await?;
    assert_eq!(
        listed.as_array().map(Vec::len),
        Some(1),
        "nothing made: {listed}"
    );

    // A user's credentials go with the user.
    cli(&stack, "admin", &["user", "delete", "demo"]).await?;
    let listed = cli_json(&stack, "admin", &["credential", "list"]).await?;
    assert_eq!(listed, json!([]), "{listed}");
    Ok(())
}

/// Keystone's project hierarchy through the `openstack` CLI: projects under projects (the
/// parent shown, `--parents` and `--children`, a listing by parent), and its rules — no delete
/// of a project with children, no disabled parent over enabled children, no enabled child
/// under a disabled parent, at most five levels, a parent of the same domain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_nests_projects() -> anyhow::Result<()> {
    let stack = start().await?;
    let url = e2e::stack::Stack::api_url(&stack).to_owned();
    let v3 = format!("{url}/identity/v3");
    let admin = |args: Vec<&str>| {
        let args: Vec<String> = args.into_iter().map(str::to_owned).collect();
        let stack = &stack;
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            cli_json(stack, "admin", &args).await
        }
    };
    let root = admin(vec![
        "project",
        "create",
        "--domain",
        "default",
        "tree-root",
    ])
    .await?;
    assert_eq!(root["parent_id"], json!("default"), "top-level: {root}");
    let root_id = root["id"].as_str().unwrap_or_default().to_owned();
    let child = admin(vec![
        "project",
        "create",
        "--parent",
        "tree-root",
        "tree-child",
    ])
    .await?;
    assert_eq!(child["parent_id"], json!(root_id), "{child}");
    assert_eq!(
        child["domain_id"],
        json!("default"),
        "the parent's domain: {child}"
    );
    let child_id = child["id"].as_str().unwrap_or_default().to_owned();
    let grand = admin(vec![
        "project",
        "create",
        "--parent",
        &child_id,
        "tree-grandchild",
    ])
    .await?;
    let grand_id = grand["id"].as_str().unwrap_or_default().to_owned();
    let shown = admin(vec![
        "project",
        "show",
        "--parents",
        "--children",
        &child_id,
    ])
    .await?;
    let text = shown.to_string();
    assert!(
        text.contains(&root_id) && text.contains(&grand_id),
        "{shown}"
    );

    let admin_token = token(&url, "admin", ADMIN_PASSWORD, "admin").await?;
    let http = reqwest::Client::new();
    let body: Value = http
        .get(format!("{v3}/projects?parent_id={root_id}"))
        .header("X-Auth-Token", &admin_token)
        .send()
        .await?
        .json()
        .await?;
    let names: Vec<&str> = body["projects"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(names, vec!["tree-child"], "{body}");
    let body: Value = http
        .get(format!("{v3}/projects/{grand_id}?parents_as_ids"))
        .header("X-Auth-Token", &admin_token)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(
        body["project"]["parents"],
        json!({child_id.clone(): {root_id.clone(): {"default": null}}}),
        "{body}"
    );

    // The hierarchy's rules, each refusing and changing nothing.
    assert!(cli(&stack, "admin", &["project", "delete", "tree-root"])
        .await
        .is_err());
    assert!(
        cli(&stack, "admin", &["project", "set", "--disable", &child_id])
            .await
            .is_err()
    );
    cli(&stack, "admin", &["project", "set", "--disable", &grand_id]).await?;
    cli(&stack, "admin", &["project", "set", "--disable", &child_id]).await?;
    assert!(
        cli(&stack, "admin", &["project", "set", "--enable", &grand_id])
            .await
            .is_err()
    );
    let post = |body: Value| {
        let req = http
            .post(format!("{v3}/projects"))
            .header("X-Auth-Token", &admin_token)
            .json(&body);
        async move { anyhow::Ok(req.send().await?.status().as_u16()) }
    };
    assert_eq!(
        post(json!({"project": {"name": "under-disabled", "parent_id": child_id}})).await?,
        403,
        "an enabled project under a disabled one"
    );
    cli(&stack, "admin", &["domain", "create", "other"]).await?;
    assert_eq!(
        post(json!({"project": {"name": "x", "parent_id": root_id, "domain_id": "other"}})).await?,
        400,
        "a parent of another domain"
    );
    let mut parent = root_id.clone();
    for depth in 2..=5 {
        let made = admin(vec![
            "project",
            "create",
            "--parent",
            &parent,
            &format!("deep-{depth}"),
        ])
        .await?;
        parent = made["id"].as_str().unwrap_or_default().to_owned();
    }
    assert_eq!(
        post(json!({"project": {"name": "deep-6", "parent_id": parent}})).await?,
        403,
        "more than five levels"
    );
    // Leaves first, the root last.
    cli(&stack, "admin", &["project", "delete", &grand_id]).await?;
    cli(&stack, "admin", &["project", "delete", &child_id]).await?;

    // A project acting as a domain is a domain, listed, changed and deleted as a project too.
    let res = http
        .post(format!("{v3}/projects"))
        .header("X-Auth-Token", &admin_token)
        .json(&json!({"project": {"name": "acting", "is_domain": true}}))
        .send()
        .await?;
    assert_eq!(res.status().as_u16(), 201);
    let made: Value = res.json().await?;
    let acting = made["project"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(
        (&made["project"]["is_domain"], &made["project"]["domain_id"]),
        (&json!(true), &Value::Null),
        "{made}"
    );
    let domains = cli_json(&stack, "admin", &["domain", "list"]).await?;
    assert!(domains.to_string().contains(&acting), "{domains}");
    let body: Value = http
        .get(format!("{v3}/projects?is_domain=true"))
        .header("X-Auth-Token", &admin_token)
        .send()
        .await?
        .json()
        .await?;
    assert!(body.to_string().contains(&acting), "{body}");
    let body: Value = http
        .get(format!("{v3}/projects"))
        .header("X-Auth-Token", &admin_token)
        .send()
        .await?
        .json()
        .await?;
    assert!(
        !body.to_string().contains(&acting),
        "not among projects: {body}"
    );
    let delete = || {
        http.delete(format!("{v3}/projects/{acting}"))
            .header("X-Auth-Token", &admin_token)
            .send()
    };
    assert_eq!(delete().await?.status().as_u16(), 403, "enabled");
    let res = http
        .patch(format!("{v3}/projects/{acting}"))
        .header("X-Auth-Token", &admin_token)
        .json(&json!({"project": {"enabled": false}}))
        .send()
        .await?;
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(delete().await?.status().as_u16(), 204);
    assert!(cli(&stack, "admin", &["domain", "show", &acting])
        .await
        .is_err());
    Ok(())
}

/// Keystone's application credentials: a member makes one with the CLI (`application
/// credential create`, the secret shown once), logs in with it (`application_credential`: a
/// token of its project and roles, naming the credential) and uses the compute API with that
/// token; a restricted credential's token makes no other; another user reads none of them;
/// deleted, the credential logs in no more and its tokens end; an expired one logs in no more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn application_credentials_log_in_until_deleted() -> anyhow::Result<()> {
    let stack = start().await?;
    let url = e2e::stack::Stack::api_url(&stack).to_owned();
    let v3 = format!("{url}/identity/v3");
    let made = cli_json(
        &stack,
        "demo",
        &[
            "application",
            "credential",
            "create",
            "--role",
            "reader",
            "--description",
            "ci",
            "ci-job",
        ],
    )
    .await?;
    let id = made["ID"].as_str().unwrap_or_default().to_owned();
    let secret = made["Secret"].as_str().unwrap_or_default().to_owned();
    assert!(!id.is_empty() && secret.len() > 40, "{made}");
    let listed = cli_json(&stack, "demo", &["application", "credential", "list"]).await?;
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert!(
        !listed.to_string().contains(&secret),
        "the secret is shown once: {listed}"
    );

    let http = reqwest::Client::new();
    let login = |body: Value| {
        let req = http.post(format!("{v3}/auth/tokens")).json(&body);
        async move {
            let res = req.send().await?;
            let status = res.status().as_u16();
            let token = res
                .headers()
                .get("X-Subject-Token")
                .and_then(|t| t.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let body = res.json::<Value>().await.unwrap_or(Value::Null);
            anyhow::Ok((status, token, body))
        }
    };
    let by_id = |secret: &str| {
        json!({"auth": {"identity": {"methods": ["application_credential"],
            "application_credential": {"id": id, "secret": secret}}}})
    };
    let (status, tok, body) = login(by_id(&secret)).await?;
    assert_eq!(status, 201, "{body}");
    let t = &body["token"];
    assert_eq!(t["methods"], json!(["application_credential"]), "{body}");
    assert_eq!(t["project"]["name"], json!("demo"), "{body}");
    assert_eq!(
        (
            &t["application_credential"]["id"],
            &t["application_credential"]["restricted"]
        ),
        (&json!(id), &json!(true)),
        "{body}"
    );
    let roles: Vec<&str> = t["roles"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(roles, vec!["reader"], "only its roles: {body}");
    let compute = Client::new(&url, &tok);
    assert_eq!(compute.get("/servers").await?.status, 200);
    // By name, with its user.
    let demo_id = cli_json(&stack, "admin", &["user", "show", "demo"]).await?["id"].clone();
    let (status, _, body) = login(
        json!({"auth": {"identity": {"methods": ["application_credential"],
        "application_credential": {"name": "ci-job", "secret": secret, "user": {"id": demo_id}}}}}),
    )
    .await?;
    assert_eq!(status, 201, "{body}");
    // Refusals: a wrong secret, another scope, a restricted credential's token making one.
    let (status, _, _) = login(by_id("wrong")).await?;
    assert_eq!(status, 401);
    let mut scoped = by_id(&secret);
    scoped["auth"]["scope"] = json!({"project": {"id": "elsewhere"}});
    assert_eq!(login(scoped).await?.0, 401);
    // Its token gets no other token (that would leave the credential's project and roles).
    let (status, _, body) = login(json!({"auth": {"identity": {"methods": ["token"],
        "token": {"id": tok}}, "scope": {"project": {"name": "demo", "domain": {"id": "default"}}}}}))
    .await?;
    assert_eq!(status, 403, "{body}");
    let demo_user = demo_id.as_str().unwrap_or_default();
    let res = http
        .post(format!("{v3}/users/{demo_user}/application_credentials"))
        .header("X-Auth-Token", &tok)
        .json(&json!({"application_credential": {"name": "another"}}))
        .send()
        .await?;
    assert_eq!(res.status().as_u16(), 403, "restricted");
    let demo_token = token(&url, "demo", DEMO_PASSWORD, "demo").await?;
    for (body, want) in [
        (json!({"application_credential": {"name": "ci-job"}}), 409),
        (
            json!({"application_credential": {"name": "x", "roles": [{"name": "admin"}]}}),
            400,
        ),
        (
            json!({"application_credential": {"name": "x", "expires_at": "2001-01-01T00:00:00"}}),
            400,
        ),
    ] {
        let res = http
            .post(format!("{v3}/users/{demo_user}/application_credentials"))
            .header("X-Auth-Token", &demo_token)
            .json(&body)
            .send()
            .await?;
        assert_eq!(res.status().as_u16(), want, "{body}");
    }
    let admin_token = token(&url, "admin", ADMIN_PASSWORD, "admin").await?;
    let res = http
        .post(format!("{v3}/users/{demo_user}/application_credentials"))
        .header("X-Auth-Token", &admin_token)
        .json(&json!({"application_credential": {"name": "for-demo"}}))
        .send()
        .await?;
    assert_eq!(res.status().as_u16(), 403, "only for oneself");

    // An expiry: shown as given, and past it no login.
    // (Microseconds as Python's isoformat() writes them, which Keystone echoes.)
    let soon_text = format!(
        "{}.123456",
        nova_core::time::to_datetime(nova_core::time::now_ms() + 2000).format("%Y-%m-%dT%H:%M:%S")
    );
    let res = http
        .post(format!("{v3}/users/{demo_user}/application_credentials"))
        .header("X-Auth-Token", &demo_token)
        .json(&json!({"application_credential": {"name": "short", "expires_at": soon_text}}))
        .send()
        .await?;
    let short: Value = res.json().await?;
    assert_eq!(
        short["application_credential"]["expires_at"],
        json!(soon_text),
        "{short}"
    );
    let (status, _, body) = login(
        json!({"auth": {"identity": {"methods": ["application_credential"],
        "application_credential": {"id": short["application_credential"]["id"],
                                   "secret": short["application_credential"]["secret"]}}}}),
    )
    .await?;
    assert_eq!(status, 201, "{body}");
    let token_expiry = body["token"]["expires_at"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        token_expiry[..19] <= soon_text[..19],
        "the token ends with the credential: {token_expiry} after {soon_text}"
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (status, _, _) = login(
        json!({"auth": {"identity": {"methods": ["application_credential"],
        "application_credential": {"id": short["application_credential"]["id"],
                                   "secret": short["application_credential"]["secret"]}}}}),
    )
    .await?;
    assert_eq!(status, 401, "expired");

    // Deleted: no login, and its tokens end.
    cli(
        &stack,
        "demo",
        &["application", "credential", "delete", "ci-job"],
    )
    .await?;
    assert_eq!(login(by_id(&secret)).await?.0, 401);
    e2e::wait_until(
        Duration::from_secs(10),
        "the credential's token revoked",
        || async { Ok(compute.get("/servers").await?.status == 401) },
    )
    .await?;
    Ok(())
}

/// Keystone's domain-specific roles: a domain's role (names unique across the deployment here),
/// listed with `domain_id`, granted only within its domain, never in a token
/// or an effective assignment itself but bringing the roles it implies; a global role implies
/// none; the domain's delete takes its roles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn domain_specific_roles_bring_what_they_imply() -> anyhow::Result<()> {
    let stack = start().await?;
    let url = e2e::stack::Stack::api_url(&stack).to_owned();
    let v3 = format!("{url}/identity/v3");
    let admin_token = token(&url, "admin", ADMIN_PASSWORD, "admin").await?;
    let http = reqwest::Client::new();
    let call = |method: reqwest::Method, path: String, body: Option<Value>| {
        let (http, url, token) = (http.clone(), format!("{v3}{path}"), admin_token.clone());
        async move { e2e::client::send_json(&http, method, &url, &token, body).await }
    };
    use reqwest::Method;
    let (_, d) = call(
        Method::POST,
        "/domains".into(),
        Some(json!({"domain": {"name": "dom-a"}})),
    )
    .await?;
    let dom = d["domain"]["id"].as_str().unwrap_or_default().to_owned();
    let (status, r) = call(
        Method::POST,
        "/roles".into(),
        Some(json!({"role": {"name": "dom-a-operator", "domain_id": dom}})),
    )
    .await?;
    assert_eq!(status, 201, "{r}");
    assert_eq!(r["role"]["domain_id"], json!(dom), "{r}");
    let drole = r["role"]["id"].as_str().unwrap_or_default().to_owned();
    let (_, listed) = call(Method::GET, format!("/roles?domain_id={dom}"), None).await?;
    assert_eq!(
        listed["roles"].as_array().map(Vec::len),
        Some(1),
        "{listed}"
    );
    let (_, globals) = call(Method::GET, "/roles?name=member".into(), None).await?;
    assert_eq!(globals["roles"][0]["domain_id"], Value::Null, "{globals}");
    let (status, _) = call(
        Method::POST,
        "/roles".into(),
        Some(json!({"role": {"name": "member", "domain_id": dom}})),
    )
    .await?;
    assert_eq!(status, 409, "names unique across the deployment here");
    // It implies the global reader; a global role implies no domain's role.
    let (_, reader) = call(Method::GET, "/roles?name=reader".into(), None).await?;
    let reader_id = reader["roles"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (status, _) = call(
        Method::PUT,
        format!("/roles/{drole}/implies/{reader_id}"),
        None,
    )
    .await?;
    assert_eq!(status, 201);
    let (status, _) = call(
        Method::PUT,
        format!("/roles/{reader_id}/implies/{drole}"),
        None,
    )
    .await?;
    assert_eq!(status, 403);
    // Granted on a project of its domain (not elsewhere); a token there carries `reader`, not
    // the domain's role.
    let (_, p) = call(
        Method::POST,
        "/projects".into(),
        Some(json!({"project": {"name": "dom-a-apps", "domain_id": dom}})),
    )
    .await?;
    let pid = p["project"]["id"].as_str().unwrap_or_default().to_owned();
    let (_, u) = call(
        Method::POST,
        "/users".into(),
        Some(json!({"user": {"name": "dora",
        "domain_id": dom, "password": "pw-3"}})),
    )
    .await?;
    let uid = u["user"]["id"].as_str().unwrap_or_default().to_owned();
    let (status, _) = call(
        Method::PUT,
        format!("/projects/{pid}/users/{uid}/roles/{drole}"),
        None,
    )
    .await?;
    assert_eq!(status, 204);
    let demo_project = cli_json(&stack, "admin", &["project", "show", "demo"]).await?["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (status, _) = call(
        Method::PUT,
        format!("/projects/{demo_project}/users/{uid}/roles/{drole}"),
        None,
    )
    .await?;
    assert_eq!(status, 403, "another domain's project");
    let res = http
        .post(format!("{v3}/auth/tokens"))
        .json(
            &json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "id": uid, "password": "pw-3"}}}, "scope": {"project": {"id": pid}}}}),
        )
        .send()
        .await?;
    assert_eq!(res.status().as_u16(), 201);
    let dora_token = res
        .headers()
        .get("X-Subject-Token")
        .and_then(|t| t.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let t: Value = res.json().await?;
    let names: Vec<&str> = t["token"]["roles"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(names, vec!["reader"], "{t}");
    let (_, effective) = call(
        Method::GET,
        format!("/role_assignments?effective&user.id={uid}&scope.project.id={pid}"),
        None,
    )
    .await?;
    let roles: Vec<&str> = effective["role_assignments"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["role"]["id"].as_str())
        .collect();
    assert_eq!(roles, vec![reader_id.as_str()], "{effective}");
    // The role filter applies to what the grants give.
    let (_, filtered) = call(
        Method::GET,
        format!("/role_assignments?effective&user.id={uid}&role.id={reader_id}"),
        None,
    )
    .await?;
    assert_eq!(
        filtered["role_assignments"].as_array().map(Vec::len),
        Some(1),
        "{filtered}"
    );
    // The rule that gave `reader` removed, the token that got it through the rule ends.
    let (status, _) = call(
        Method::DELETE,
        format!("/roles/{drole}/implies/{reader_id}"),
        None,
    )
    .await?;
    assert_eq!(status, 204);
    let res = http
        .get(format!("{v3}/auth/tokens"))
        .header("X-Auth-Token", &admin_token)
        .header("X-Subject-Token", &dora_token)
        .send()
        .await?;
    assert_eq!(res.status().as_u16(), 404, "revoked with the rule");
    // The domain goes with its roles.
    call(
        Method::PATCH,
        format!("/domains/{dom}"),
        Some(json!({"domain": {"enabled": false}})),
    )
    .await?;
    let (status, _) = call(Method::DELETE, format!("/domains/{dom}"), None).await?;
    assert_eq!(status, 204);
    let (status, _) = call(Method::GET, format!("/roles/{drole}"), None).await?;
    assert_eq!(status, 404);
    Ok(())
}
