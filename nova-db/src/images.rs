//! Images: their records and tags. The data lives in the image store (nova-api's `images`).

use crate::listing::{self, Arg, Column, Cond, Kind, Listing, Tags};
use crate::{on_pool, Db, DbResult, Viewer};
use nova_core::time::{now_ms, Millis};

#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct Image {
    pub id: String,
    pub name: Option<String>,
    pub owner: String,
    pub status: String,
    pub visibility: String,
    pub protected: bool,
    pub os_hidden: bool,
    pub container_format: Option<String>,
    pub disk_format: Option<String>,
    pub size: Option<i64>,
    pub checksum: Option<String>,
    pub os_hash_algo: Option<String>,
    pub os_hash_value: Option<String>,
    pub min_disk: i64,
    pub min_ram: i64,
    /// Extra properties, a JSON object of strings.
    pub properties: String,
    pub created_at: i64,
    pub updated_at: i64,
    #[sqlx(skip)]
    pub tags: Vec<String>,
}

const COLUMNS: &str =
    "id, name, owner, status, visibility, protected, os_hidden, container_format, \
    disk_format, size, checksum, os_hash_algo, os_hash_value, min_disk, min_ram, properties, \
    created_at, updated_at";

pub async fn create(db: &Db, i: &Image) -> DbResult<()> {
    on_pool!(db, p => {
        sqlx::query(&format!(
            "INSERT INTO images ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)"
        ))
        .bind(&i.id).bind(&i.name).bind(&i.owner).bind(&i.status).bind(&i.visibility).bind(i.protected)
        .bind(i.os_hidden).bind(&i.container_format).bind(&i.disk_format).bind(i.size).bind(&i.checksum)
        .bind(&i.os_hash_algo).bind(&i.os_hash_value).bind(i.min_disk).bind(i.min_ram).bind(&i.properties)
        .bind(i.created_at).bind(i.updated_at)
        .execute(p).await?;
    });
    for t in &i.tags {
        add_tag(db, &i.id, t).await?;
    }
    Ok(())
}

async fn tags(db: &Db, id: &str) -> DbResult<Vec<String>> {
    let rows: Vec<(String,)> = on_pool!(db, p => {
        sqlx::query_as("SELECT tag FROM image_tags WHERE image_id = $1 ORDER BY tag").bind(id).fetch_all(p).await?
    });
    Ok(rows.into_iter().map(|(t,)| t).collect())
}

/// An image that is not deleted.
pub async fn get(db: &Db, id: &str) -> DbResult<Option<Image>> {
    let sql = format!("SELECT {COLUMNS} FROM images WHERE id = $1 AND status <> 'deleted'");
    let row: Option<Image> =
        on_pool!(db, p => sqlx::query_as(&sql).bind(id).fetch_optional(p).await?);
    match row {
        None => Ok(None),
        Some(mut i) => {
            i.tags = tags(db, &i.id).await?;
            Ok(Some(i))
        }
    }
}

/// Which offers of a shared image make it visible to the projects offered it.
#[derive(Clone, Copy, Debug)]
pub enum Offers<'a> {
    /// Any offer, whatever its answer (to look at one image).
    Any,
    /// Offers with this answer (a listing's `member_status`, `accepted` by default).
    Answered(&'a str),
}

/// Glance's visibility rules as a condition: admins see every image; others public and
/// community images, their project's, and shared images offered to their project.
pub fn visible_to(viewer: Viewer<'_>, offers: Offers<'_>) -> Cond {
    if viewer.admin {
        return Cond::all(Vec::new());
    }
    let project = || Arg::Text(viewer.project.to_owned());
    let offered = match offers {
        Offers::Any => Cond::sql(
            "EXISTS (SELECT 1 FROM image_members m WHERE m.image_id = images.id \
             AND m.member_id = ?)",
            vec![project()],
        ),
        Offers::Answered(answer) => Cond::sql(
            "EXISTS (SELECT 1 FROM image_members m WHERE m.image_id = images.id \
             AND m.member_id = ? AND m.status = ?)",
            vec![project(), Arg::Text(answer.to_owned())],
        ),
    };
    Cond::any(vec![
        Cond::eq("owner", project()),
        Cond::sql("visibility IN ('public', 'community')", Vec::new()),
        Cond::all(vec![
            Cond::sql("visibility = 'shared'", Vec::new()),
            offered,
        ]),
    ])
}

/// Images that are not deleted.
pub fn live() -> Cond {
    Cond::sql("status <> 'deleted'", Vec::new())
}

/// An image that is not deleted, if `viewer` may see it.
pub async fn get_visible(db: &Db, id: &str, viewer: Viewer<'_>) -> DbResult<Option<Image>> {
    let listing = Listing {
        table: &TABLE,
        conds: vec![
            Cond::eq("id", Arg::Text(id.to_owned())),
            live(),
            visible_to(viewer, Offers::Any),
        ],
        tags: Default::default(),
        order: Vec::new(),
        after: None,
        limit: Some(1),
    };
    Ok(page(db, &listing).await?.pop())
}

/// Images as the list engine sees them.
pub const TABLE: listing::Table = listing::Table {
    name: "images",
    columns: COLUMNS,
    id: Column {
        expr: "id",
        kind: Kind::Text,
    },
    tags: Some(Tags::Table {
        table: "image_tags",
        key: "image_id",
    }),
};

/// A page of an image listing, with the images' tags (one more query, for the page only).
pub async fn page(db: &Db, listing: &Listing<'_>) -> DbResult<Vec<Image>> {
    let mut images: Vec<Image> = listing::page(db, listing).await?;
    if images.is_empty() {
        return Ok(images);
    }
    let marks = crate::placeholders(1, images.len());
    let sql = format!(
        "SELECT image_id, tag FROM image_tags WHERE image_id IN ({}) ORDER BY tag",
        marks
    );
    let tags: Vec<(String, String)> = on_pool!(db, p => {
        let mut q = sqlx::query_as(&sql);
        for i in &images {
            q = q.bind(&i.id);
        }
        q.fetch_all(p).await?
    });
    let mut by_image: std::collections::HashMap<String, Vec<String>> =
        std::collections::HashMap::new();
    for (id, tag) in tags {
        by_image.entry(id).or_default().push(tag);
    }
    for i in &mut images {
        i.tags = by_image.remove(&i.id).unwrap_or_default();
    }
    Ok(images)
}

/// Writes the mutable fields of an image (a PATCH).
pub async fn update(db: &Db, i: &Image) -> DbResult<()> {
    on_pool!(db, p => {
        sqlx::query(
            "UPDATE images SET name = $2, visibility = $3, protected = $4, os_hidden = $5, \
             container_format = $6, disk_format = $7, min_disk = $8, min_ram = $9, properties = $10, \
             updated_at = $11, owner = $12 WHERE id = $1",
        )
        .bind(&i.id).bind(&i.name).bind(&i.visibility).bind(i.protected).bind(i.os_hidden)
        .bind(&i.container_format).bind(&i.disk_format).bind(i.min_disk).bind(i.min_ram)
        .bind(&i.properties).bind(now_ms()).bind(&i.owner)
        .execute(p).await?;
    });
    let current = tags(db, &i.id).await?;
    for t in current.iter().filter(|t| !i.tags.contains(t)) {
        remove_tag(db, &i.id, t).await?;
    }
    for t in i.tags.iter().filter(|t| !current.contains(t)) {
        add_tag(db, &i.id, t).await?;
    }
    Ok(())
}

/// Moves the status from one of `from` to `to`; false when it was in none of them.
pub async fn set_status(db: &Db, id: &str, from: &[&str], to: &str) -> DbResult<bool> {
    let placeholders: Vec<String> = (0..from.len()).map(|i| format!("${}", i + 4)).collect();
    let sql = format!(
        "UPDATE images SET status = $2, updated_at = $3 WHERE id = $1 AND status IN ({})",
        placeholders.join(", ")
    );
    let n = on_pool!(db, p => {
        let mut q = sqlx::query(&sql).bind(id).bind(to).bind(now_ms());
        for f in from {
            q = q.bind(*f);
        }
        q.execute(p).await?.rows_affected()
    });
    Ok(n == 1)
}

/// Marks an upload in progress as alive (its `updated_at`, which `saving` set at its start).
pub async fn touch_saving(db: &Db, id: &str) -> DbResult<()> {
    on_pool!(db, p => {
        sqlx::query("UPDATE images SET updated_at = $2 WHERE id = $1 AND status = 'saving'")
            .bind(id)
            .bind(now_ms())
            .execute(p)
            .await?;
    });
    Ok(())
}

/// The images `saving` whose upload has not said it is alive since `before`.
pub async fn stale_uploads(db: &Db, before: Millis) -> DbResult<Vec<String>> {
    Ok(on_pool!(db, p => sqlx::query_scalar(
        "SELECT id FROM images WHERE status = 'saving' AND updated_at < $1 ORDER BY updated_at",
    )
    .bind(before)
    .fetch_all(p)
    .await?))
}

/// Puts a stale upload's image back to `queued`, if it is still saving and still stale.
pub async fn requeue_stale_upload(db: &Db, id: &str, before: Millis) -> DbResult<bool> {
    let n = on_pool!(db, p => sqlx::query(
        "UPDATE images SET status = 'queued', updated_at = $3 \
         WHERE id = $1 AND status = 'saving' AND updated_at < $2",
    )
    .bind(id)
    .bind(before)
    .bind(now_ms())
    .execute(p)
    .await?
    .rows_affected());
    Ok(n == 1)
}

/// Records a finished upload and makes the image active; false when it was not saving.
pub async fn finish_upload(
    db: &Db,
    id: &str,
    size: i64,
    md5: &str,
    sha512: &str,
) -> DbResult<bool> {
    let n = on_pool!(db, p => {
        sqlx::query(
            "UPDATE images SET status = 'active', size = $2, checksum = $3, os_hash_algo = 'sha512', \
             os_hash_value = $4, updated_at = $5 WHERE id = $1 AND status = 'saving'",
        )
        .bind(id).bind(size).bind(md5).bind(sha512).bind(now_ms())
        .execute(p).await?.rows_affected()
    });
    Ok(n == 1)
}

pub async fn delete(db: &Db, id: &str) -> DbResult<bool> {
    let n = on_pool!(db, p => {
        sqlx::query("UPDATE images SET status = 'deleted', updated_at = $2 WHERE id = $1 AND status <> 'deleted'")
            .bind(id).bind(now_ms()).execute(p).await?.rows_affected()
    });
    Ok(n == 1)
}

/// The images (not deleted) whose extra property `key` is `value` (stored as JSON made by
/// serde_json: `"key":"value"`, found escaped; SQLite's LIKE ignores ASCII case). Callers
/// check the property again.
pub async fn with_property(db: &Db, key: &str, value: &str) -> DbResult<Vec<Image>> {
    let pair = serde_json::json!({ key: value }).to_string();
    let escaped: String = pair[1..pair.len() - 1]
        .chars()
        .flat_map(|c| match c {
            '!' | '%' | '_' => vec!['!', c],
            c => vec![c],
        })
        .collect();
    let pattern = format!("%{escaped}%");
    let sql = format!(
        "SELECT {COLUMNS} FROM images WHERE status <> 'deleted' AND properties LIKE $1 \
         ESCAPE '!' ORDER BY created_at DESC"
    );
    let rows: Vec<Image> =
        on_pool!(db, p => sqlx::query_as(&sql).bind(&pattern).fetch_all(p).await?);
    Ok(rows)
}

/// Deletes a snapshot's image that never got its data (its snapshot failed, or its server went
/// first), as Nova deletes it: never left queued. An image that got its data stays.
pub async fn drop_pending(tx: &mut crate::Tx, id: &str) -> DbResult<bool> {
    let n = crate::on_tx!(tx, c => {
        sqlx::query(
            "UPDATE images SET status = 'deleted', updated_at = $2 WHERE id = $1 \
             AND status IN ('queued', 'saving')",
        )
        .bind(id)
        .bind(now_ms())
        .execute(&mut *c)
        .await?
        .rows_affected()
    });
    Ok(n == 1)
}

pub async fn add_tag(db: &Db, id: &str, tag: &str) -> DbResult<()> {
    on_pool!(db, p => {
        sqlx::query("INSERT INTO image_tags (image_id, tag) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(id).bind(tag).execute(p).await?;
    });
    Ok(())
}

pub async fn remove_tag(db: &Db, id: &str, tag: &str) -> DbResult<bool> {
    let n = on_pool!(db, p => {
        sqlx::query("DELETE FROM image_tags WHERE image_id = $1 AND tag = $2").bind(id).bind(tag).execute(p).await?.rows_affected()
    });
    Ok(n == 1)
}

/// A project a shared image is offered to (Glance's image member).
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct Member {
    pub image_id: String,
    pub member_id: String,
    /// `pending`, `accepted` or `rejected`.
    pub status: String,
    pub created_at: i64,
    pub updated_at: i64,
}

const MEMBER_COLUMNS: &str = "image_id, member_id, status, created_at, updated_at";

pub async fn members(db: &Db, image_id: &str) -> DbResult<Vec<Member>> {
    let sql = format!(
        "SELECT {MEMBER_COLUMNS} FROM image_members WHERE image_id = $1 ORDER BY member_id"
    );
    Ok(on_pool!(db, p => sqlx::query_as(&sql).bind(image_id).fetch_all(p).await?))
}

pub async fn member(db: &Db, image_id: &str, member_id: &str) -> DbResult<Option<Member>> {
    let sql = format!(
        "SELECT {MEMBER_COLUMNS} FROM image_members WHERE image_id = $1 AND member_id = $2"
    );
    Ok(on_pool!(db, p => {
        sqlx::query_as(&sql).bind(image_id).bind(member_id).fetch_optional(p).await?
    }))
}

/// The images offered to `project`, with its answer to each.
pub async fn memberships(db: &Db, project: &str) -> DbResult<Vec<Member>> {
    let sql = format!("SELECT {MEMBER_COLUMNS} FROM image_members WHERE member_id = $1");
    Ok(on_pool!(db, p => sqlx::query_as(&sql).bind(project).fetch_all(p).await?))
}

/// Offers an image to a project (`pending`); `None` when it already was.
pub async fn add_member(db: &Db, image_id: &str, member_id: &str) -> DbResult<Option<Member>> {
    let now = now_ms();
    let n = on_pool!(db, p => {
        sqlx::query(
            "INSERT INTO image_members (image_id, member_id, status, created_at, updated_at) \
             VALUES ($1, $2, 'pending', $3, $3) ON CONFLICT DO NOTHING",
        )
        .bind(image_id)
        .bind(member_id)
        .bind(now)
        .execute(p)
        .await?
        .rows_affected()
    });
    if n == 0 {
        return Ok(None);
    }
    member(db, image_id, member_id).await
}

/// The member's answer; `None` when there is no such member.
pub async fn set_member_status(
    db: &Db,
    image_id: &str,
    member_id: &str,
    status: &str,
) -> DbResult<Option<Member>> {
    let n = on_pool!(db, p => {
        sqlx::query(
            "UPDATE image_members SET status = $3, updated_at = $4 \
             WHERE image_id = $1 AND member_id = $2",
        )
        .bind(image_id)
        .bind(member_id)
        .bind(status)
        .bind(now_ms())
        .execute(p)
        .await?
        .rows_affected()
    });
    if n == 0 {
        return Ok(None);
    }
    member(db, image_id, member_id).await
}

pub async fn delete_member(db: &Db, image_id: &str, member_id: &str) -> DbResult<bool> {
    let n = on_pool!(db, p => {
        sqlx::query("DELETE FROM image_members WHERE image_id = $1 AND member_id = $2")
            .bind(image_id)
            .bind(member_id)
            .execute(p)
            .await?
            .rows_affected()
    });
    Ok(n == 1)
}
