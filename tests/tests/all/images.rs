//! The image service end to end: the real `openstack` CLI (images, then a server from an image
//! by name), and the failure paths of uploads and visibility.

use e2e::client::{password_token, Client};
use e2e::stack::{AllInOneStack, Options, Stack};
use keystone_auth::{AuthSettings, Strategy};
use serde_json::{json, Value};
use std::time::Duration;

const ADMIN_PASSWORD: &str = "admin-secret";
const DEMO_PASSWORD: &str = "demo-secret";

async fn start(size_cap: Option<i64>) -> anyhow::Result<AllInOneStack> {
    let auth = AuthSettings {
        strategy: Strategy::Keystone,
        admin_password: Some(ADMIN_PASSWORD.into()),
        demo_password: Some(DEMO_PASSWORD.into()),
        ..Default::default()
    };
    AllInOneStack::start(Options {
        auth: Some(auth),
        image_size_cap: size_cap,
        ..Options::default()
    })
    .await
}

async fn cli(stack: &AllInOneStack, args: &[&str]) -> anyhow::Result<String> {
    e2e::cli::run(stack, "demo", args).await
}

async fn cli_json(stack: &AllInOneStack, args: &[&str]) -> anyhow::Result<Value> {
    e2e::cli::run_json(stack, "demo", args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openstack_cli_manages_images_and_boots_from_one() -> anyhow::Result<()> {
    let stack = start(None).await?;
    let dir = tempfile::tempdir()?;
    let disk = dir.path().join("disk.qcow2");
    let data: Vec<u8> = (0..3_000_000u32)
        .map(|i| u8::try_from(i % 251).unwrap_or(0))
        .collect();
    std::fs::write(&disk, &data)?;
    let archive = dir.path().join("box.tar");
    std::fs::write(
        &archive,
        b"not really a docker save archive; the container driver comes later",
    )?;

    let created = cli_json(
        &stack,
        &[
            "image",
            "create",
            "--file",
            disk.to_str().unwrap_or_default(),
            "--disk-format",
            "qcow2",
            "--container-format",
            "bare",
            "disk1",
        ],
    )
    .await?;
    assert_eq!(created["status"], json!("active"));
    assert_eq!(created["size"], json!(3_000_000));
    let md5 = format!("{:x}", md5_of(&data));
    assert_eq!(created["checksum"], json!(md5));
    let boxed = cli_json(
        &stack,
        &[
            "image",
            "create",
            "--file",
            archive.to_str().unwrap_or_default(),
            "--container-format",
            "docker",
            "--disk-format",
            "raw",
            "box",
        ],
    )
    .await?;
    assert_eq!(boxed["container_format"], json!("docker"));

    let listed = cli_json(&stack, &["image", "list"]).await?;
    let names: Vec<&str> = listed
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["Name"].as_str())
        .collect();
    assert!(
        names.contains(&"disk1") && names.contains(&"box"),
        "{listed}"
    );
    cli(
        &stack,
        &[
            "image",
            "set",
            "--property",
            "os_distro=busybox",
            "--tag",
            "small",
            "disk1",
        ],
    )
    .await?;
    let shown = cli_json(&stack, &["image", "show", "disk1"]).await?;
    assert_eq!(shown["tags"], json!(["small"]));
    assert_eq!(shown["properties"]["os_distro"], json!("busybox"));
    let back = dir.path().join("back");
    cli(
        &stack,
        &[
            "image",
            "save",
            "--file",
            back.to_str().unwrap_or_default(),
            "disk1",
        ],
    )
    .await?;
    assert_eq!(std::fs::read(&back)?, data, "the download is the upload");

    // A server from an image by name, as users do; the image's type must fit the node type.
    let server = cli_json(
        &stack,
        &[
            "server", "create", "--image", "disk1", "--flavor", "m1.tiny", "--wait", "web",
        ],
    )
    .await?;
    assert_eq!(server["status"], json!("ACTIVE"));
    let wrong = cli(
        &stack,
        &[
            "server", "create", "--image", "box", "--flavor", "m1.tiny", "wrong",
        ],
    )
    .await;
    let message = wrong.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("cannot boot on a vm node"), "{message}");

    cli(&stack, &["image", "delete", "box"]).await?;
    let listed = cli_json(&stack, &["image", "list"]).await?;
    assert!(!listed.to_string().contains("\"box\""), "{listed}");
    Ok(())
}

fn md5_of(data: &[u8]) -> md5::Digest {
    md5::compute(data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_fail_cleanly_and_visibility_holds() -> anyhow::Result<()> {
    let stack = start(Some(1 << 20)).await?;
    let url = stack.api_url().to_owned();
    let demo = password_token(&url, "demo", DEMO_PASSWORD, "demo").await?;
    let admin = password_token(&url, "admin", ADMIN_PASSWORD, "admin").await?;
    let http = reqwest::Client::new();
    let v2 = format!("{url}/image/v2/images");
    let create = |token: String, body: Value| {
        let (http, v2) = (http.clone(), v2.clone());
        async move {
            let r = http
                .post(&v2)
                .header("X-Auth-Token", token)
                .json(&body)
                .send()
                .await?;
            let status = r.status().as_u16();
            anyhow::Ok((status, r.json::<Value>().await.unwrap_or(Value::Null)))
        }
    };
    let get = |token: String, id: String| {
        let (http, v2) = (http.clone(), v2.clone());
        async move {
            let r = http
                .get(format!("{v2}/{id}"))
                .header("X-Auth-Token", token)
                .send()
                .await?;
            let status = r.status().as_u16();
            anyhow::Ok((status, r.json::<Value>().await.unwrap_or(Value::Null)))
        }
    };
    let fmt = json!({"name": "x", "container_format": "bare", "disk_format": "raw"});

    // Over the size limit: 413, and the image is queued again with nothing stored.
    let (_, img) = create(demo.clone(), fmt.clone()).await?;
    let id = img["id"].as_str().unwrap_or_default().to_owned();
    let r = http
        .put(format!("{v2}/{id}/file"))
        .header("X-Auth-Token", &demo)
        .header("Content-Type", "application/octet-stream")
        .body(vec![7u8; 2 << 20])
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 413);
    assert_eq!(
        get(demo.clone(), id.clone()).await?.1["status"],
        json!("queued")
    );

    // Interrupted: the client's stream breaks off; never active, queued for another try.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![
        Ok(vec![1u8; 64 << 10]),
        Ok(vec![2u8; 64 << 10]),
        Err(std::io::Error::other("cable pulled")),
    ];
    let r = http
        .put(format!("{v2}/{id}/file"))
        .header("X-Auth-Token", &demo)
        .header("Content-Type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await;
    assert!(r.is_err() || r.as_ref().is_ok_and(|r| r.status().as_u16() >= 400));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let status = get(demo.clone(), id.clone()).await?.1["status"].clone();
        if status == json!("queued") {
            break;
        }
        assert_ne!(
            status,
            json!("active"),
            "an interrupted upload must never be active"
        );
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "still {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // It can be uploaded again, and then it is active with the right hashes.
    let r = http
        .put(format!("{v2}/{id}/file"))
        .header("X-Auth-Token", &demo)
        .header("Content-Type", "application/octet-stream")
        .body(b"hello".to_vec())
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 204);
    let (_, img) = get(demo.clone(), id.clone()).await?;
    assert_eq!(img["status"], json!("active"));
    assert_eq!(img["checksum"], json!("5d41402abc4b2a76b9719d911017c592"));
    assert_eq!(img["os_hash_algo"], json!("sha512"));
    assert_eq!(img["size"], json!(5));

    // Visibility: another project's private image is not found; a member cannot publish.
    let (_, private) = create(
        admin.clone(),
        json!({"name": "secret", "visibility": "private"}),
    )
    .await?;
    let private_id = private["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(get(demo.clone(), private_id.clone()).await?.0, 404);
    let listed: Value = http
        .get(&v2)
        .header("X-Auth-Token", &demo)
        .send()
        .await?
        .json()
        .await?;
    assert!(!listed.to_string().contains(&private_id));
    assert_eq!(
        create(
            demo.clone(),
            json!({"name": "mine", "visibility": "public"})
        )
        .await?
        .0,
        403
    );
    assert_eq!(
        create(
            demo.clone(),
            json!({"name": "bad", "disk_format": "floppy"})
        )
        .await?
        .0,
        400
    );
    assert_eq!(
        create(demo.clone(), json!({"name": "bad", "status": "active"}))
            .await?
            .0,
        403
    );

    // JSON patch needs its media type; protected images are not deleted.
    let r = http
        .patch(format!("{v2}/{id}"))
        .header("X-Auth-Token", &demo)
        .json(&json!([]))
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 415);
    let r = http
        .patch(format!("{v2}/{id}"))
        .header("X-Auth-Token", &demo)
        .header(
            "Content-Type",
            "application/openstack-images-v2.1-json-patch",
        )
        .body(json!([{"op": "replace", "path": "/protected", "value": true}]).to_string())
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        http.delete(format!("{v2}/{id}"))
            .header("X-Auth-Token", &demo)
            .send()
            .await?
            .status()
            .as_u16(),
        403
    );

    // Filters and paging.
    for n in 0..3 {
        create(
            demo.clone(),
            json!({"name": format!("page-{n}"), "tags": ["paged"]}),
        )
        .await?;
    }
    let page: Value = http
        .get(format!("{v2}?tag=paged&limit=2"))
        .header("X-Auth-Token", &demo)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(page["images"].as_array().map(Vec::len), Some(2));
    let next = page["next"].as_str().unwrap_or_default().to_owned();
    assert!(next.starts_with("/v2/images?marker="), "{page}");
    let rest: Value = http
        .get(format!("{url}/image{next}&tag=paged"))
        .header("X-Auth-Token", &demo)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(rest["images"].as_array().map(Vec::len), Some(1));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_image_is_for_the_projects_it_is_offered_to() -> anyhow::Result<()> {
    let stack = start(None).await?;
    let url = stack.api_url().to_owned();
    let demo = password_token(&url, "demo", DEMO_PASSWORD, "demo").await?;
    let admin = password_token(&url, "admin", ADMIN_PASSWORD, "admin").await?;
    let http = reqwest::Client::new();
    let v2 = format!("{url}/image/v2/images");
    let call = |method: reqwest::Method, path: String, token: String, body: Option<Value>| {
        let http = http.clone();
        async move {
            let mut r = http.request(method, path).header("X-Auth-Token", token);
            if let Some(b) = body {
                r = r.json(&b);
            }
            let r = r.send().await?;
            let status = r.status().as_u16();
            anyhow::Ok((status, r.json::<Value>().await.unwrap_or(Value::Null)))
        }
    };
    use reqwest::Method;
    let (s, img) = call(
        Method::POST,
        v2.clone(),
        admin.clone(),
        Some(json!({"name": "offered", "visibility": "shared",
            "container_format": "bare", "disk_format": "qcow2"})),
    )
    .await?;
    assert_eq!(s, 201, "{img}");
    let id = img["id"].as_str().unwrap_or_default().to_owned();
    let r = http
        .put(format!("{v2}/{id}/file"))
        .header("X-Auth-Token", &admin)
        .header("Content-Type", "application/octet-stream")
        .body(b"disk".to_vec())
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 204);
    let image = format!("{v2}/{id}");
    let members = format!("{image}/members");
    let listed = |token: String, query: &'static str| {
        let v2 = v2.clone();
        async move {
            let (_, body) = call(Method::GET, format!("{v2}{query}"), token, None).await?;
            anyhow::Ok(body.to_string())
        }
    };

    // The member is named by its project id (an image's `owner` shows it).
    let (_, probe) = call(
        Method::POST,
        v2.clone(),
        demo.clone(),
        Some(json!({"name": "probe"})),
    )
    .await?;
    let demo_project = probe["owner"].as_str().unwrap_or_default().to_owned();

    // Not offered yet: unknown to the other project, in Glance's error body.
    let (s, body) = call(Method::GET, image.clone(), demo.clone(), None).await?;
    assert_eq!(s, 404);
    assert_eq!(
        body,
        json!({"code": "404 Not Found", "title": "Not Found",
            "message": format!("No image found with ID {id}<br /><br />\n\n\n")})
    );
    assert!(!listed(demo.clone(), "").await?.contains(&id));

    // Offered: the member sees it (pending), lists it once it accepts.
    let (s, m) = call(
        Method::POST,
        members.clone(),
        admin.clone(),
        Some(json!({"member": demo_project})),
    )
    .await?;
    assert_eq!(
        (s, m["status"].clone(), m["member_id"].clone()),
        (200, json!("pending"), json!(demo_project))
    );
    let again = call(
        Method::POST,
        members.clone(),
        admin.clone(),
        Some(json!({"member": demo_project})),
    );
    assert_eq!(again.await?.0, 409);
    assert_eq!(
        call(Method::GET, image.clone(), demo.clone(), None)
            .await?
            .0,
        200
    );
    assert!(!listed(demo.clone(), "").await?.contains(&id));
    assert!(listed(demo.clone(), "?member_status=pending")
        .await?
        .contains(&id));
    let (s, own) = call(Method::GET, members.clone(), demo.clone(), None).await?;
    assert_eq!((s, own["members"].as_array().map(Vec::len)), (200, Some(1)));
    // Only the member answers; only the owner withdraws.
    let accept = Some(json!({"status": "accepted"}));
    let as_owner = call(
        Method::PUT,
        format!("{members}/{demo_project}"),
        admin.clone(),
        accept.clone(),
    );
    assert_eq!(as_owner.await?.0, 403);
    let (s, m) = call(
        Method::PUT,
        format!("{members}/{demo_project}"),
        demo.clone(),
        accept,
    )
    .await?;
    assert_eq!((s, m["status"].clone()), (200, json!("accepted")));
    assert!(listed(demo.clone(), "").await?.contains(&id));
    assert_eq!(
        call(
            Method::DELETE,
            format!("{members}/{demo_project}"),
            demo.clone(),
            None
        )
        .await?
        .0,
        403
    );
    // An accepted image boots the member's servers.
    let compute = e2e::client::Client::new(&url, &demo);
    let r = compute
        .post(
            "/servers",
            &json!({"server": {"name": "from-shared", "imageRef": id, "flavorRef": "1"}}),
        )
        .await?;
    assert_eq!(r.status, 202, "{}", r.body);

    // Private images have no members.
    let (_, private) = call(
        Method::POST,
        v2.clone(),
        admin.clone(),
        Some(json!({"name": "mine", "visibility": "private"})),
    )
    .await?;
    let private_members = format!(
        "{v2}/{}/members",
        private["id"].as_str().unwrap_or_default()
    );
    let (s, body) = call(
        Method::POST,
        private_members,
        admin.clone(),
        Some(json!({"member": demo_project})),
    )
    .await?;
    assert_eq!(s, 403);
    assert_eq!(body["title"], json!("Forbidden"));

    // Withdrawn: unknown again.
    assert_eq!(
        call(
            Method::DELETE,
            format!("{members}/{demo_project}"),
            admin.clone(),
            None
        )
        .await?
        .0,
        204
    );
    assert_eq!(
        call(Method::GET, image.clone(), demo.clone(), None)
            .await?
            .0,
        404
    );
    Ok(())
}

/// The S3 backend against a real S3-compatible server (moto on loopback): uploads land in the
/// bucket as one object per image (a multipart upload, visible only once complete), the CLI
/// saves them back, a server boots from one (its host fetches it through the API), a second
/// API process on the same database and bucket — a replica — serves the same data, an
/// interrupted upload leaves no object and no open multipart upload, and a delete removes the
/// object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_in_an_s3_bucket_are_shared_by_api_replicas() -> anyhow::Result<()> {
    let s3 = e2e::object_store::ObjectStore::start().await?;
    s3.create_bucket("glance").await?;
    let auth = AuthSettings {
        strategy: Strategy::Keystone,
        admin_password: Some(ADMIN_PASSWORD.into()),
        demo_password: Some(DEMO_PASSWORD.into()),
        ..Default::default()
    };
    let store = s3.settings("glance");
    let stack = AllInOneStack::start(Options {
        auth: Some(auth),
        image_store: Some(store.clone()),
        ..Options::default()
    })
    .await?;
    let dir = tempfile::tempdir()?;
    let disk = dir.path().join("disk.qcow2");
    // More than one part of the multipart upload (8 MiB).
    let data: Vec<u8> = (0..9_500_000u32)
        .map(|i| u8::try_from(i % 253).unwrap_or(0))
        .collect();
    std::fs::write(&disk, &data)?;
    let created = cli_json(
        &stack,
        &[
            "image",
            "create",
            "--file",
            disk.to_str().unwrap_or_default(),
            "--disk-format",
            "qcow2",
            "--container-format",
            "bare",
            "in-s3",
        ],
    )
    .await?;
    assert_eq!(created["status"], json!("active"));
    assert_eq!(created["checksum"], json!(format!("{:x}", md5_of(&data))));
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    let key = format!("images/{id}");
    assert_eq!(s3.object("glance", &key).await?.as_deref(), Some(&data[..]));

    let back = dir.path().join("back");
    cli(
        &stack,
        &[
            "image",
            "save",
            "--file",
            back.to_str().unwrap_or_default(),
            "in-s3",
        ],
    )
    .await?;
    assert_eq!(std::fs::read(&back)?, data, "the download is the upload");
    let server = cli_json(
        &stack,
        &[
            "server", "create", "--image", "in-s3", "--flavor", "m1.tiny", "--wait", "from-s3",
        ],
    )
    .await?;
    assert_eq!(server["status"], json!("ACTIVE"));

    // A replica: the image API alone, in a process of its own, on the same database and
    // bucket, validating the same tokens.
    let replica = {
        let db = stack.db().clone();
        let identity = stack.identity.clone();
        let image = image_api::ImageSettings {
            store: store.clone(),
            ..Default::default()
        };
        let settings = api_server::ApiSettings {
            bind: "127.0.0.1:0".into(),
            services: vec![api_server::ApiName::Image],
            ..Default::default()
        };
        let running = api_server::start(
            &settings,
            &image,
            api_server::Backends {
                db,
                bus: std::sync::Arc::new(nova_core::bus::inproc::InProcBus::default()),
                queues: nova_core::rpc::Queues::new("replica"),
                identity,
            },
        )?;
        let addr = running.addr;
        let handle = running.server.handle();
        tokio::spawn(running.server);
        (addr, handle)
    };
    let url = stack.api_url().to_owned();
    let demo = password_token(&url, "demo", DEMO_PASSWORD, "demo").await?;
    let http = reqwest::Client::new();
    let from_replica = http
        .get(format!("http://{}/image/v2/images/{id}/file", replica.0))
        .header("X-Auth-Token", &demo)
        .send()
        .await?;
    assert_eq!(from_replica.status().as_u16(), 200);
    assert_eq!(from_replica.bytes().await?.to_vec(), data);

    // Interrupted: no object, no multipart upload left open, the image queued again.
    let v2 = format!("{url}/image/v2/images");
    let img: Value = http
        .post(&v2)
        .header("X-Auth-Token", &demo)
        .json(&json!({"name": "cut", "container_format": "bare", "disk_format": "raw"}))
        .send()
        .await?
        .json()
        .await?;
    let cut = img["id"].as_str().unwrap_or_default().to_owned();
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![
        Ok(vec![1u8; 5 << 20]),
        Ok(vec![2u8; 5 << 20]),
        Err(std::io::Error::other("cable pulled")),
    ];
    let r = http
        .put(format!("{v2}/{cut}/file"))
        .header("X-Auth-Token", &demo)
        .header("Content-Type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await;
    assert!(r.is_err() || r.as_ref().is_ok_and(|r| r.status().as_u16() >= 400));
    let status = |id: String| {
        let (http, v2, demo) = (http.clone(), v2.clone(), demo.clone());
        async move {
            let v: Value = http
                .get(format!("{v2}/{id}"))
                .header("X-Auth-Token", &demo)
                .send()
                .await?
                .json()
                .await?;
            anyhow::Ok(v["status"].clone())
        }
    };
    e2e::wait_until(
        Duration::from_secs(10),
        "the cut upload queued again",
        || {
            let status = status(cut.clone());
            async move { Ok(status.await? == json!("queued")) }
        },
    )
    .await?;
    e2e::wait_until(
        Duration::from_secs(10),
        "the cut upload aborted",
        || async { Ok(s3.open_uploads("glance").await? == 0) },
    )
    .await?;
    assert_eq!(s3.object("glance", &format!("images/{cut}")).await?, None);

    // Deleting the image deletes its object.
    let r = http
        .delete(format!("{v2}/{id}"))
        .header("X-Auth-Token", &demo)
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 204);
    assert_eq!(s3.object("glance", &key).await?, None);
    replica.1.stop(false).await;
    Ok(())
}

/// Runs python-glanceclient's `glance` (in the project's venv) as `user` of the project of
/// the same name, against the all-in-one at `url`; its output, or its error.
async fn glance(url: &str, user: &str, password: &str, args: &[&str]) -> anyhow::Result<String> {
    let bin = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/glance");
    anyhow::ensure!(
        bin.exists(),
        "{} missing: scripts/test.sh installs python-glanceclient",
        bin.display()
    );
    let out = tokio::process::Command::new(bin)
        .args(args)
        .env("OS_AUTH_URL", format!("{url}/identity/v3"))
        .env("OS_USERNAME", user)
        .env("OS_PASSWORD", password)
        .env("OS_PROJECT_NAME", user)
        .env("OS_USER_DOMAIN_NAME", "Default")
        .env("OS_PROJECT_DOMAIN_NAME", "Default")
        .env("OS_IMAGE_API_VERSION", "2")
        .output()
        .await?;
    anyhow::ensure!(
        out.status.success(),
        "glance {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// python-glanceclient, which Horizon uses for images: it reads Glance's schema documents
/// before it lists, shows or updates, and validates what it gets against them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_glanceclient_reads_the_schemas_and_the_images() -> anyhow::Result<()> {
    let stack = start(None).await?;
    let url = stack.api_url().to_owned();
    let run = |args: Vec<String>| {
        let url = url.clone();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            glance(&url, "demo", DEMO_PASSWORD, &args).await
        }
    };
    let dir = tempfile::tempdir()?;
    let disk = dir.path().join("disk.raw");
    std::fs::write(&disk, b"a small disk")?;
    let created = run(vec![
        "image-create".into(),
        "--name".into(),
        "from-glanceclient".into(),
        "--disk-format".into(),
        "raw".into(),
        "--container-format".into(),
        "bare".into(),
        "--file".into(),
        disk.display().to_string(),
        "--property".into(),
        "os_distro=busybox".into(),
    ])
    .await?;
    assert!(created.contains("from-glanceclient"), "{created}");
    assert!(created.contains("active"), "{created}");
    let listed = run(vec!["image-list".into()]).await?;
    assert!(listed.contains("from-glanceclient"), "{listed}");
    let id = listed
        .lines()
        .find(|l| l.contains("from-glanceclient"))
        .and_then(|l| l.split('|').nth(1))
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    // An update is a JSON patch the client builds from the schema.
    run(vec![
        "image-update".into(),
        "--min-ram".into(),
        "64".into(),
        "--property".into(),
        "os_version=1".into(),
        id.clone(),
    ])
    .await?;
    let shown = run(vec!["image-show".into(), id]).await?;
    for expected in ["os_distro", "busybox", "os_version", "min_ram", "64"] {
        assert!(shown.contains(expected), "{expected} in {shown}");
    }
    let members = run(vec![
        "member-list".into(),
        "--image-id".into(),
        IMAGE_NOT_SHARED.into(),
    ])
    .await;
    assert!(members.is_err(), "a public image has no members");
    Ok(())
}

/// A public image of the test stacks (it has no members: only shared images do).
const IMAGE_NOT_SHARED: &str = e2e::client::IMAGE;

/// What Tempest's image tests found missing: the older JSON-patch draft, an admin's `owner`,
/// and deactivating an image (its data for admins only, no server booted from it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_are_patched_given_away_and_deactivated_as_glance_does() -> anyhow::Result<()> {
    let stack = start(None).await?;
    let url = stack.api_url().to_owned();
    let demo = password_token(&url, "demo", DEMO_PASSWORD, "demo").await?;
    let admin = password_token(&url, "admin", ADMIN_PASSWORD, "admin").await?;
    let http = reqwest::Client::new();
    let v2 = format!("{url}/image/v2/images");
    let c = Client::new(&url, &demo);
    let id = c
        .create_image("patched", "bare", "raw", b"disk".to_vec())
        .await?;
    let patch = |token: &str, media: &str, ops: Value| {
        http.patch(format!("{v2}/{id}"))
            .header("X-Auth-Token", token)
            .header("Content-Type", media)
            .body(ops.to_string())
            .send()
    };
    // The v2.0 draft: the operation's name holds the path.
    let r = patch(
        &demo,
        "application/openstack-images-v2.0-json-patch",
        json!([{"replace": "/name", "value": "renamed"}, {"add": "/color", "value": "red"}]),
    )
    .await?;
    assert_eq!(r.status().as_u16(), 200);
    let body: Value = r.json().await?;
    assert_eq!(
        (body["name"].clone(), body["color"].clone()),
        (json!("renamed"), json!("red"))
    );
    let r = patch(
        &demo,
        "application/openstack-images-v2.0-json-patch",
        json!([{"replace": "/name", "add": "/x", "value": "y"}]),
    )
    .await?;
    assert_eq!(r.status().as_u16(), 400);

    // Owner: an admin gives the image away; a member may not.
    let projects = nova_db::identity::projects(stack.db(), Some("admin"), None).await?;
    let admin_project = projects.first().map(|p| p.id.clone()).unwrap_or_default();
    let r = patch(
        &demo,
        "application/openstack-images-v2.1-json-patch",
        json!([{"op": "replace", "path": "/owner", "value": admin_project}]),
    )
    .await?;
    assert_eq!(r.status().as_u16(), 403);
    let r = http
        .post(&v2)
        .header("X-Auth-Token", &admin)
        .json(&json!({"name": "given", "owner": "some-project"}))
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 201);
    assert_eq!(r.json::<Value>().await?["owner"], json!("some-project"));
    let r = patch(
        &admin,
        "application/openstack-images-v2.1-json-patch",
        json!([{"op": "replace", "path": "/owner", "value": admin_project}]),
    )
    .await?;
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.json::<Value>().await?["owner"], json!(admin_project));
    let stored = nova_db::images::get(stack.db(), &id)
        .await?
        .map(|i| i.owner);
    assert_eq!(
        stored,
        Some(admin_project.clone()),
        "written, not only shown"
    );
    // Given back to demo's project for what follows.
    let demo_project = nova_db::identity::projects(stack.db(), Some("demo"), None)
        .await?
        .first()
        .map(|p| p.id.clone())
        .unwrap_or_default();
    let r = patch(
        &admin,
        "application/openstack-images-v2.1-json-patch",
        json!([{"op": "replace", "path": "/owner", "value": demo_project}]),
    )
    .await?;
    assert_eq!(r.status().as_u16(), 200);

    // Deactivated: no download but for admins, no server booted from it; reactivated: back.
    let action = |token: &str, what: &str| {
        http.post(format!("{v2}/{id}/actions/{what}"))
            .header("X-Auth-Token", token)
            .send()
    };
    let download = |token: &str| {
        http.get(format!("{v2}/{id}/file"))
            .header("X-Auth-Token", token)
            .send()
    };
    assert_eq!(action(&demo, "deactivate").await?.status().as_u16(), 204);
    assert_eq!(
        action(&demo, "deactivate").await?.status().as_u16(),
        204,
        "a no-op"
    );
    let r = http
        .get(format!("{v2}/{id}"))
        .header("X-Auth-Token", &demo)
        .send()
        .await?;
    assert_eq!(r.json::<Value>().await?["status"], json!("deactivated"));
    assert_eq!(download(&demo).await?.status().as_u16(), 403);
    let r = download(&admin).await?;
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.bytes().await?.as_ref(), b"disk");
    let r = c
        .post(
            "/servers",
            &json!({"server": {"name": "no", "imageRef": id, "flavorRef": "1"}}),
        )
        .await?;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(action(&demo, "reactivate").await?.status().as_u16(), 204);
    assert_eq!(download(&demo).await?.status().as_u16(), 200);
    // A queued image can be neither.
    let r = http
        .post(&v2)
        .header("X-Auth-Token", &demo)
        .json(&json!({"name": "empty"}))
        .send()
        .await?;
    let empty = r.json::<Value>().await?["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let r = http
        .post(format!("{v2}/{empty}/actions/deactivate"))
        .header("X-Auth-Token", &demo)
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 403);
    // No interoperable import method: uploads are `PUT …/file` (Glance's discovery says so).
    let info: Value = http
        .get(format!("{url}/image/v2/info/import"))
        .header("X-Auth-Token", &demo)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(info["import-methods"]["value"], json!([]), "{info}");
    Ok(())
}

/// #15: one UUID names one image whatever its spelling; a deleted image's id stays taken (409);
/// a name is at most 255 characters; tags, members and properties stop at Glance's quotas
/// (128 each by default) with 413.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_ids_names_and_quotas_are_glances() -> anyhow::Result<()> {
    let stack = start(None).await?;
    let url = stack.api_url().to_owned();
    let demo = password_token(&url, "demo", DEMO_PASSWORD, "demo").await?;
    let http = reqwest::Client::new();
    let v2 = format!("{url}/image/v2/images");
    let create = |body: Value| {
        http.post(&v2)
            .header("X-Auth-Token", &demo)
            .json(&body)
            .send()
    };
    let id = "6f1c0e1a-7d3b-4c55-9a8e-2b4f7a9d0c11";
    let r = create(json!({"id": id.to_uppercase(), "name": "upper"})).await?;
    assert_eq!(r.status().as_u16(), 400, "one spelling: lower case");
    let r = create(json!({"id": id, "name": "lower"})).await?;
    assert_eq!(r.status().as_u16(), 201);
    for other in [
        id.to_owned(),
        format!("{{{id}}}"),
        format!("urn:uuid:{id}"),
        id.replace('-', ""),
    ] {
        let r = create(json!({"id": other, "name": "again"})).await?;
        let status = r.status().as_u16();
        assert!(status == 409 || status == 400, "{other}: {status}");
    }
    let r = http
        .delete(format!("{v2}/{id}"))
        .header("X-Auth-Token", &demo)
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 204);
    let r = create(json!({"id": id, "name": "reborn"})).await?;
    assert_eq!(r.status().as_u16(), 409, "a deleted image's id stays taken");

    let r = create(json!({"name": "n".repeat(256)})).await?;
    assert_eq!(r.status().as_u16(), 400);
    let r = create(json!({"name": "n".repeat(255)})).await?;
    assert_eq!(r.status().as_u16(), 201);
    let image = r.json::<Value>().await?["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    // Tags: 128 fit, the 129th does not.
    for i in 0..128 {
        let r = http
            .put(format!("{v2}/{image}/tags/t{i}"))
            .header("X-Auth-Token", &demo)
            .send()
            .await?;
        assert_eq!(r.status().as_u16(), 204, "tag {i}");
    }
    let r = http
        .put(format!("{v2}/{image}/tags/t128"))
        .header("X-Auth-Token", &demo)
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 413);
    let r = http
        .put(format!("{v2}/{image}/tags/t0"))
        .header("X-Auth-Token", &demo)
        .send()
        .await?;
    assert_eq!(
        r.status().as_u16(),
        204,
        "a tag already there is no new one"
    );
    // Properties, in one patch.
    let ops: Vec<Value> = (0..129)
        .map(|i| json!({"op": "add", "path": format!("/p{i}"), "value": "v"}))
        .collect();
    let r = http
        .patch(format!("{v2}/{image}"))
        .header("X-Auth-Token", &demo)
        .header(
            "Content-Type",
            "application/openstack-images-v2.1-json-patch",
        )
        .body(Value::Array(ops).to_string())
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 413);
    // Members, once shared.
    let r = http
        .patch(format!("{v2}/{image}"))
        .header("X-Auth-Token", &demo)
        .header(
            "Content-Type",
            "application/openstack-images-v2.1-json-patch",
        )
        .body(json!([{"op": "replace", "path": "/visibility", "value": "shared"}]).to_string())
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 200);
    for i in 0..=128 {
        let r = http
            .post(format!("{v2}/{image}/members"))
            .header("X-Auth-Token", &demo)
            .json(&json!({"member": format!("project-{i}")}))
            .send()
            .await?;
        let want = if i < 128 { 200 } else { 413 };
        assert_eq!(r.status().as_u16(), want, "member {i}");
    }
    Ok(())
}

/// #15: an upload whose process died (the image left `saving`, partial data beside it) is
/// recovered: the image is `queued` again with no data left, and can be uploaded anew. A live
/// upload slower than the recovery's bound is not taken for a dead one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_that_died_with_its_process_is_recovered() -> anyhow::Result<()> {
    let stack = AllInOneStack::start(Options {
        auth: Some(AuthSettings {
            strategy: Strategy::Keystone,
            admin_password: Some(ADMIN_PASSWORD.into()),
            demo_password: Some(DEMO_PASSWORD.into()),
            ..Default::default()
        }),
        // Touched every second, dead after three silent ones.
        body_timeout_s: 1,
        ..Options::default()
    })
    .await?;
    let url = stack.api_url().to_owned();
    let demo = password_token(&url, "demo", DEMO_PASSWORD, "demo").await?;
    let http = reqwest::Client::new();
    let v2 = format!("{url}/image/v2/images");
    let mut ids = Vec::new();
    for name in ["dead", "slow"] {
        let r = http
            .post(&v2)
            .header("X-Auth-Token", &demo)
            .json(&json!({"name": name, "container_format": "bare", "disk_format": "raw"}))
            .send()
            .await?;
        assert_eq!(r.status().as_u16(), 201);
        ids.push(
            r.json::<Value>().await?["id"]
                .as_str()
                .unwrap_or("")
                .to_owned(),
        );
    }
    let (dead, slow) = (ids[0].clone(), ids[1].clone());
    // What a process killed mid-upload leaves: `saving`, a partial file, and (killed between
    // the rename and the database update) the data itself.
    assert!(nova_db::images::set_status(stack.db(), &dead, &["queued"], "saving").await?);
    let store = stack.image_store();
    std::fs::write(store.join(format!("{dead}.partial")), b"half")?;
    std::fs::write(store.join(&dead), b"whole")?;

    // Meanwhile a live upload that takes longer than the bound: 12 chunks, 0.4 s apart.
    let chunks = futures::StreamExt::then(futures::stream::iter(0..12u8), |i| async move {
        tokio::time::sleep(Duration::from_millis(400)).await;
        Ok::<_, std::io::Error>(vec![i; 4096])
    });
    let upload = http
        .put(format!("{v2}/{slow}/file"))
        .header("X-Auth-Token", &demo)
        .header("Content-Type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(chunks))
        .send();
    let status_of = |id: String| {
        let (http, v2, demo) = (http.clone(), v2.clone(), demo.clone());
        async move {
            let r = http
                .get(format!("{v2}/{id}"))
                .header("X-Auth-Token", demo)
                .send()
                .await?;
            anyhow::Ok(r.json::<Value>().await?["status"].clone())
        }
    };
    let watch_dead = e2e::wait_until(Duration::from_secs(20), "the dead upload recovered", || {
        let id = dead.clone();
        let status_of = &status_of;
        async move { Ok(status_of(id).await? == json!("queued")) }
    });
    let (r, recovered) = tokio::join!(upload, watch_dead);
    recovered?;
    assert!(!store.join(&dead).exists(), "the dead upload's data stays");
    assert!(!store.join(format!("{dead}.partial")).exists());
    assert_eq!(r?.status().as_u16(), 204, "the slow upload was cut");
    assert_eq!(status_of(slow.clone()).await?, json!("active"));
    // The recovered image takes an upload again.
    let r = http
        .put(format!("{v2}/{dead}/file"))
        .header("X-Auth-Token", &demo)
        .header("Content-Type", "application/octet-stream")
        .body(vec![9u8; 1000])
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 204);
    assert_eq!(status_of(dead).await?, json!("active"));
    Ok(())
}

/// Glance's metadata definitions through python-glanceclient (which Horizon's "Update Metadata"
/// uses, and which checks every answer against the schema documents): a namespace made with a
/// resource type, a property, an object and tags, found by resource type and shown whole; then
/// Glance's rules over HTTP — only an admin writes, a private namespace is its project's, a
/// protected one cannot be deleted, bad definitions and duplicates are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_glanceclient_manages_metadata_definitions() -> anyhow::Result<()> {
    let stack = start(None).await?;
    let url = stack.api_url().to_owned();
    glance(
        &url,
        "admin",
        ADMIN_PASSWORD,
        &[
            "md-namespace-create",
            "Demo::CPU",
            "--visibility",
            "public",
            "--display-name",
            "CPU topology",
            "--description",
            "Sockets and threads",
        ],
    )
    .await?;
    glance(
        &url,
        "admin",
        ADMIN_PASSWORD,
        &[
            "md-resource-type-associate",
            "Demo::CPU",
            "--name",
            "OS::Glance::Image",
            "--prefix",
            "hw_",
        ],
    )
    .await?;
    glance(
        &url,
        "admin",
        ADMIN_PASSWORD,
        &[
            "md-property-create",
            "Demo::CPU",
            "--name",
            "cpu_sockets",
            "--title",
            "Sockets",
            "--type",
            "integer",
            "--schema",
            r#"{"minimum": 1}"#,
        ],
    )
    .await?;
    glance(&url, "admin", ADMIN_PASSWORD, &[
        "md-object-create", "Demo::CPU", "--name", "Topology", "--schema",
        r#"{"description": "The guest's CPU", "properties": {"threads": {"type": "integer", "title": "Threads"}}}"#,
    ])
    .await?;
    glance(
        &url,
        "admin",
        ADMIN_PASSWORD,
        &["md-tag-create-multiple", "Demo::CPU", "--names", "numa,smt"],
    )
    .await?;
    let shown = glance(
        &url,
        "admin",
        ADMIN_PASSWORD,
        &["md-namespace-show", "Demo::CPU"],
    )
    .await?;
    for expected in [
        "CPU topology",
        "OS::Glance::Image",
        "cpu_sockets",
        "Topology",
        "numa",
        "smt",
    ] {
        assert!(shown.contains(expected), "{expected} in {shown}");
    }
    let listed = glance(
        &url,
        "admin",
        ADMIN_PASSWORD,
        &["md-namespace-list", "--resource-types", "OS::Glance::Image"],
    )
    .await?;
    assert!(listed.contains("Demo::CPU"), "{listed}");
    let listed = glance(
        &url,
        "admin",
        ADMIN_PASSWORD,
        &["md-namespace-list", "--resource-types", "OS::Nova::Flavor"],
    )
    .await?;
    assert!(!listed.contains("Demo::CPU"), "{listed}");
    let types = glance(&url, "admin", ADMIN_PASSWORD, &["md-resource-type-list"]).await?;
    assert!(types.contains("OS::Nova::Flavor"), "{types}");

    let admin_token = password_token(&url, "admin", ADMIN_PASSWORD, "admin").await?;
    let demo_token = password_token(&url, "demo", DEMO_PASSWORD, "demo").await?;
    let http = reqwest::Client::new();
    let md = format!("{url}/image/v2/metadefs/namespaces");
    let call = |method: reqwest::Method, path: String, token: &str, body: Option<Value>| {
        let (http, token) = (http.clone(), token.to_owned());
        async move { e2e::client::send_json(&http, method, &path, &token, body).await }
    };
    use reqwest::Method;
    // A property asked for with its resource type's prefix.
    let (status, p) = call(
        Method::GET,
        format!("{md}/Demo::CPU/properties/hw_cpu_sockets?resource_type=OS::Glance::Image"),
        &demo_token,
        None,
    )
    .await?;
    assert_eq!(
        (status, &p["name"], &p["minimum"]),
        (200, &json!("hw_cpu_sockets"), &json!(1)),
        "{p}"
    );
    let (status, _) = call(
        Method::GET,
        format!("{md}/Demo::CPU/properties/cpu_sockets?resource_type=OS::Glance::Image"),
        &demo_token,
        None,
    )
    .await?;
    assert_eq!(status, 404, "without the resource type's prefix");
    // The namespace for a resource type: its property names, its objects' too, prefixed.
    let (_, shown) = call(
        Method::GET,
        format!("{md}/Demo::CPU?resource_type=OS::Glance::Image"),
        &demo_token,
        None,
    )
    .await?;
    assert!(
        shown["properties"].get("hw_cpu_sockets").is_some(),
        "{shown}"
    );
    assert!(
        shown["objects"][0]["properties"]
            .get("hw_threads")
            .is_some(),
        "{shown}"
    );
    // A page's next link keeps the filter.
    let (status, _) = call(
        Method::POST,
        md.clone(),
        &admin_token,
        Some(json!({"namespace": "Demo::Disk",
        "visibility": "public", "resource_type_associations": [{"name": "OS::Glance::Image"}]})),
    )
    .await?;
    assert_eq!(status, 201);
    let (_, page) = call(
        Method::GET,
        format!("{md}?resource_types=OS::Glance::Image&limit=1&sort_key=namespace&sort_dir=asc"),
        &demo_token,
        None,
    )
    .await?;
    assert_eq!(
        page["namespaces"][0]["namespace"],
        json!("Demo::CPU"),
        "{page}"
    );
    let next = page["next"].as_str().unwrap_or_default().to_owned();
    assert!(
        next.contains("resource_types=OS%3A%3AGlance%3A%3AImage")
            && next.contains("marker=Demo%3A%3ACPU"),
        "{page}"
    );
    let (_, page) = call(Method::GET, format!("{url}/image{next}"), &demo_token, None).await?;
    assert_eq!(
        page["namespaces"][0]["namespace"],
        json!("Demo::Disk"),
        "{page}"
    );
    assert!(page.get("next").is_none(), "{page}");
    // A member reads the public namespace but writes nothing.
    let (status, _) = call(Method::GET, format!("{md}/Demo::CPU"), &demo_token, None).await?;
    assert_eq!(status, 200);
    let (status, _) = call(
        Method::POST,
        md.clone(),
        &demo_token,
        Some(json!({"namespace": "Mine"})),
    )
    .await?;
    assert_eq!(status, 403);
    let (status, _) = call(
        Method::DELETE,
        format!("{md}/Demo::CPU/tags/numa"),
        &demo_token,
        None,
    )
    .await?;
    assert_eq!(status, 403);
    // A private namespace is its owner's project's (and the admin's).
    let (status, _) = call(
        Method::POST,
        md.clone(),
        &admin_token,
        Some(json!({"namespace": "Admin::Only", "visibility": "private"})),
    )
    .await?;
    assert_eq!(status, 201);
    let (status, _) = call(Method::GET, format!("{md}/Admin::Only"), &demo_token, None).await?;
    assert_eq!(status, 404);
    let (_, listed) = call(Method::GET, md.clone(), &demo_token, None).await?;
    let names: Vec<&str> = listed["namespaces"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["namespace"].as_str())
        .collect();
    assert_eq!(
        names,
        vec!["Demo::Disk", "Demo::CPU"],
        "newest first: {listed}"
    );
    // Bad input, each changing nothing.
    for (path, body, want) in [
        (md.clone(), json!({"namespace": "Demo::CPU"}), 409),
        (
            md.clone(),
            json!({"namespace": "X", "visibility": "shared"}),
            400,
        ),
        (
            md.clone(),
            json!({"namespace": "X", "protected": "yes"}),
            400,
        ),
        (
            format!("{md}/Demo::CPU/properties"),
            json!({"name": "p", "type": "string"}),
            400,
        ),
        (
            format!("{md}/Demo::CPU/properties"),
            json!({"name": "p", "title": "P", "type": "text"}),
            400,
        ),
        (
            format!("{md}/Demo::CPU/properties"),
            json!({"name": "cpu_sockets", "title": "S", "type": "integer"}),
            409,
        ),
        (
            format!("{md}/Demo::CPU/objects"),
            json!({"name": "Topology"}),
            409,
        ),
        (
            format!("{md}/Demo::CPU/objects"),
            json!({"name": "O", "properties": {"p": {"type": "string"}}}),
            400,
        ),
        (
            md.clone(),
            json!({"namespace": "X", "tags": {"name": "t"}}),
            400,
        ),
        (format!("{md}/Nowhere/objects"), json!({"name": "O"}), 404),
    ] {
        let (status, body) = call(Method::POST, path.clone(), &admin_token, Some(body)).await?;
        assert_eq!(status, want, "{path}: {body}");
    }
    let (status, _) = call(
        Method::GET,
        format!("{md}?sort_key=bogus"),
        &demo_token,
        None,
    )
    .await?;
    assert_eq!(status, 400);
    // Protected: neither it nor what is in it is deleted.
    glance(
        &url,
        "admin",
        ADMIN_PASSWORD,
        &["md-namespace-update", "Demo::CPU", "--protected", "True"],
    )
    .await?;
    let (status, body) = call(
        Method::DELETE,
        format!("{md}/Demo::CPU"),
        &admin_token,
        None,
    )
    .await?;
    assert_eq!(status, 403, "{body}");
    let (status, _) = call(
        Method::DELETE,
        format!("{md}/Demo::CPU/objects/Topology"),
        &admin_token,
        None,
    )
    .await?;
    assert_eq!(status, 403);
    let (_, shown) = call(Method::GET, format!("{md}/Demo::CPU"), &admin_token, None).await?;
    assert_eq!(
        shown["objects"].as_array().map(Vec::len),
        Some(1),
        "{shown}"
    );
    assert_eq!(shown["tags"].as_array().map(Vec::len), Some(2), "{shown}");
    // Unprotected, it goes with everything in it.
    glance(
        &url,
        "admin",
        ADMIN_PASSWORD,
        &["md-namespace-update", "Demo::CPU", "--protected", "False"],
    )
    .await?;
    glance(
        &url,
        "admin",
        ADMIN_PASSWORD,
        &["md-namespace-delete", "Demo::CPU"],
    )
    .await?;

    // Glance's tasks: no task type runs here (uploads only, no import method), so a task is
    // refused up front rather than left to fail; an admin's API.
    let tasks = format!("{url}/image/v2/tasks");
    let task = json!({"type": "import", "input": {"import_from": "http://example.invalid/x.qcow2",
        "import_from_format": "qcow2", "image_properties": {"name": "t"}}});
    let (status, body) = call(
        Method::POST,
        tasks.clone(),
        &admin_token,
        Some(task.clone()),
    )
    .await?;
    assert_eq!(status, 400, "{body}");
    let (status, _) = call(Method::POST, tasks.clone(), &demo_token, Some(task)).await?;
    assert_eq!(status, 403);
    let (status, body) = call(Method::GET, tasks, &admin_token, None).await?;
    assert_eq!((status, &body["tasks"]), (200, &json!([])), "{body}");
    let (status, _) = call(Method::GET, format!("{md}/Demo::CPU"), &admin_token, None).await?;
    assert_eq!(status, 404);
    Ok(())
}
