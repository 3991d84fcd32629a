//! Where the real services are. `scripts/test.sh` starts them and exports these variables; the
//! defaults match what it sets up.

use sqlx::Connection;

pub fn pg_admin_url() -> String {
    std::env::var("NOVA_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://nova:nova@127.0.0.1:5432/postgres".into())
}

pub fn amqp_url() -> String {
    std::env::var("NOVA_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

fn short_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

/// A queue prefix of its own, so that parallel tests on one broker do not see each other.
pub fn queue_prefix() -> String {
    format!("t{}.", short_id())
}

/// Creates an empty database and returns its URL.
pub async fn fresh_pg_database() -> anyhow::Result<String> {
    let admin = pg_admin_url();
    let name = format!("nova_test_{}", short_id());
    let mut conn = sqlx::PgConnection::connect(&admin).await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    let base = admin
        .rsplit_once('/')
        .map(|(b, _)| b.to_owned())
        .unwrap_or(admin);
    Ok(format!("{base}/{name}"))
}

/// A SQLite database in a temporary directory (kept alive by the returned guard).
pub fn fresh_sqlite_database() -> anyhow::Result<(tempfile::TempDir, String)> {
    let dir = tempfile::tempdir()?;
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("nova.sqlite").display()
    );
    Ok((dir, url))
}

/// Lifts the quotas of the projects the tests use (`demo`, `admin`, and with Keystone every
/// project there is): tests about other things boot more servers than Nova's default quota
/// allows. Quota tests use projects of their own.
pub async fn lift_quotas(db: &nova_db::Db) -> anyhow::Result<()> {
    for project in ["demo", "admin"] {
        lift_quota_of(db, project).await?;
    }
    for project in nova_db::identity::projects(db, None, None).await? {
        lift_quota_of(db, &project.id).await?;
    }
    Ok(())
}

/// No limit on servers, cores, RAM and key pairs for `project`.
pub async fn lift_quota_of(db: &nova_db::Db, project: &str) -> anyhow::Result<()> {
    let unlimited: std::collections::BTreeMap<String, i64> =
        ["instances", "cores", "ram", "key_pairs"]
            .into_iter()
            .map(|r| (r.to_owned(), -1))
            .collect();
    nova_db::quotas::set(db, project, &unlimited).await?;
    Ok(())
}

/// Runs a best-effort cleanup to its end, on a thread and runtime of its own: cleanups run
/// from `Drop`, possibly inside a test's runtime, which must not be blocked on.
pub fn clean_up<F>(cleanup: F)
where
    F: std::future::Future<Output = Option<()>> + Send + 'static,
{
    let thread = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?
            .block_on(cleanup)
    });
    let _ = thread.join();
}

/// Removes a test's queues from the shared broker (blocking, see [`clean_up`]).
pub fn delete_queues(names: Vec<String>) {
    clean_up(async move {
        let bus = nova_core::bus::amqp::AmqpBus::connect(&amqp_url())
            .await
            .ok()?;
        for name in &names {
            let _ = bus.delete_queue(name).await;
            let _ = bus
                .delete_queue(&nova_core::bus::dead_letter_queue(name))
                .await;
        }
        Some(())
    });
}

/// Registers the public test images ([`crate::client::IMAGE`], [`crate::client::DOCKER_IMAGE`])
/// as active images with a little data each in the image store at `store` (the fake driver
/// boots nothing, but compute hosts fetch and verify the data all the same).
pub async fn register_test_images(
    db: &nova_db::Db,
    store: &dyn image_api::store::ImageStore,
) -> anyhow::Result<()> {
    use nova_db::images::{self, Image};
    use sha2::Digest as _;
    for (id, name, container, disk) in [
        (crate::client::IMAGE, "test-disk", "bare", "raw"),
        (crate::client::DOCKER_IMAGE, "test-docker", "docker", "raw"),
    ] {
        if images::get(db, id).await?.is_some() {
            continue;
        }
        let data = format!("test image {name}\n").repeat(1000);
        let mut upload = store.start_upload(id).await?;
        upload.write(data.clone().into()).await?;
        upload.commit().await?;
        let md5 = format!("{:x}", md5::compute(data.as_bytes()));
        let sha512 = format!("{:x}", sha2::Sha512::digest(data.as_bytes()));
        let now = nova_core::time::now_ms();
        images::create(
            db,
            &Image {
                id: id.into(),
                name: Some(name.into()),
                owner: "admin".into(),
                status: "active".into(),
                visibility: "public".into(),
                protected: false,
                os_hidden: false,
                container_format: Some(container.into()),
                disk_format: Some(disk.into()),
                size: Some(i64::try_from(data.len())?),
                checksum: Some(md5),
                os_hash_algo: Some("sha512".into()),
                os_hash_value: Some(sha512),
                min_disk: 0,
                min_ram: 0,
                properties: "{}".into(),
                created_at: now,
                updated_at: now,
                tags: vec![],
            },
        )
        .await?;
    }
    Ok(())
}
