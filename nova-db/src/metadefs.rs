//! Glance's metadata definitions (migrations' `0035_metadefs.sql`): namespaces, the resource
//! types they are associated with, and their objects, properties and tags.

use crate::{on_pool, on_tx, Db, DbResult, Viewer};
use nova_core::time::{now_ms, Millis};

#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct Namespace {
    pub id: String,
    pub namespace: String,
    pub display_name: Option<String>,
    pub description: Option<String>,
    pub visibility: String,
    pub protected: bool,
    pub owner: String,
    pub created_at: Millis,
    pub updated_at: Millis,
}

#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct ResourceType {
    pub name: String,
    pub protected: bool,
    pub created_at: Millis,
    pub updated_at: Millis,
}

#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct Association {
    pub resource_type: String,
    pub prefix: Option<String>,
    pub properties_target: Option<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// An object's or a property's definition (`doc`: the JSON object without its name), or a tag
/// (`doc` empty).
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct Item {
    pub name: String,
    #[sqlx(default)]
    pub doc: String,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// Which of a namespace's item tables.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    Object,
    Property,
    Tag,
}

impl Kind {
    fn table(self) -> &'static str {
        match self {
            Kind::Object => "metadef_objects",
            Kind::Property => "metadef_properties",
            Kind::Tag => "metadef_tags",
        }
    }

    fn columns(self) -> &'static str {
        match self {
            Kind::Tag => "name, created_at, updated_at",
            _ => "name, doc, created_at, updated_at",
        }
    }
}

const NS_COLUMNS: &str =
    "id, namespace, display_name, description, visibility, protected, owner, created_at, updated_at";

/// Inserts one item on `$c` (a connection or a pool), as a `DbResult<()>`.
macro_rules! insert_item {
    ($c:expr, $kind:expr, $namespace_id:expr, $item:expr) => {{
        let (kind, item): (Kind, &Item) = ($kind, $item);
        let sql = match kind {
            Kind::Tag => "INSERT INTO metadef_tags (namespace_id, name, created_at, updated_at) \
                          VALUES ($1, $2, $3, $4)"
                .to_owned(),
            _ => format!(
                "INSERT INTO {} (namespace_id, name, created_at, updated_at, doc) \
                 VALUES ($1, $2, $3, $4, $5)",
                kind.table()
            ),
        };
        let mut q = sqlx::query(&sql)
            .bind($namespace_id)
            .bind(&item.name)
            .bind(item.created_at)
            .bind(item.updated_at);
        if kind != Kind::Tag {
            q = q.bind(&item.doc);
        }
        q.execute($c)
            .await
            .map(|_| ())
            .map_err(crate::DbError::from)
    }};
}

/// Inserts a namespace with its associations and items, in one transaction; false when its
/// name is taken (nothing written).
pub async fn create_namespace(
    db: &Db,
    ns: &Namespace,
    associations: &[Association],
    items: &[(Kind, Item)],
) -> DbResult<bool> {
    let mut tx = db.begin().await?;
    let created = on_tx!(&mut tx, c => {
        let n = sqlx::query(&format!(
            "INSERT INTO metadef_namespaces ({NS_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (namespace) DO NOTHING"
        ))
        .bind(&ns.id).bind(&ns.namespace).bind(&ns.display_name).bind(&ns.description)
        .bind(&ns.visibility).bind(ns.protected).bind(&ns.owner).bind(ns.created_at).bind(ns.updated_at)
        .execute(&mut *c).await?.rows_affected();
        if n == 1 {
            for a in associations {
                sqlx::query("INSERT INTO metadef_resource_types (name, protected, created_at, updated_at) \
                             VALUES ($1, FALSE, $2, $2) ON CONFLICT (name) DO NOTHING")
                    .bind(&a.resource_type).bind(a.created_at).execute(&mut *c).await?;
                sqlx::query("INSERT INTO metadef_associations (namespace_id, resource_type, prefix, \
                             properties_target, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6)")
                    .bind(&ns.id).bind(&a.resource_type).bind(&a.prefix).bind(&a.properties_target)
                    .bind(a.created_at).bind(a.updated_at).execute(&mut *c).await?;
            }
            for (kind, item) in items {
                insert_item!(&mut *c, *kind, &ns.id, item)?;
            }
        }
        n == 1
    });
    if created {
        tx.commit().await?;
    }
    Ok(created)
}

/// A namespace by its name, if `who` may see it (public, or its owner's, or an admin's).
pub async fn namespace(db: &Db, name: &str, who: Viewer<'_>) -> DbResult<Option<Namespace>> {
    let sql = format!(
        "SELECT {NS_COLUMNS} FROM metadef_namespaces WHERE namespace = $1 \
         AND ($2 OR visibility = 'public' OR owner = $3)"
    );
    Ok(
        on_pool!(db, p => sqlx::query_as(&sql).bind(name).bind(who.admin).bind(who.project)
        .fetch_optional(p).await?),
    )
}

/// The namespaces `who` may see, by name, optionally only those of a visibility or associated
/// with one of `resource_types`.
pub async fn namespaces(
    db: &Db,
    who: Viewer<'_>,
    visibility: Option<&str>,
    resource_types: &[String],
) -> DbResult<Vec<Namespace>> {
    let sql = format!(
        "SELECT {NS_COLUMNS} FROM metadef_namespaces WHERE ($1 OR visibility = 'public' OR owner = $2) \
         AND ($3 IS NULL OR visibility = $3) ORDER BY namespace"
    );
    let all: Vec<Namespace> = on_pool!(db, p => sqlx::query_as(&sql)
        .bind(who.admin).bind(who.project).bind(visibility).fetch_all(p).await?);
    if resource_types.is_empty() {
        return Ok(all);
    }
    let associated: Vec<(String, String)> = on_pool!(db, p => sqlx::query_as(
        "SELECT namespace_id, resource_type FROM metadef_associations").fetch_all(p).await?);
    Ok(all
        .into_iter()
        .filter(|n| {
            associated
                .iter()
                .any(|(id, rt)| *id == n.id && resource_types.contains(rt))
        })
        .collect())
}

/// Writes a namespace's fields (its name too); false when the new name is taken.
pub async fn update_namespace(db: &Db, ns: &Namespace) -> DbResult<bool> {
    let r = on_pool!(db, p => sqlx::query(
        "UPDATE metadef_namespaces SET namespace = $2, display_name = $3, description = $4, \
         visibility = $5, protected = $6, owner = $7, updated_at = $8 WHERE id = $1",
    )
    .bind(&ns.id).bind(&ns.namespace).bind(&ns.display_name).bind(&ns.description)
    .bind(&ns.visibility).bind(ns.protected).bind(&ns.owner).bind(ns.updated_at)
    .execute(p).await.map(|_| ()).map_err(crate::DbError::from));
    match r {
        Ok(()) => Ok(true),
        Err(e) if e.is_unique_violation() => Ok(false),
        Err(e) => Err(e),
    }
}

/// Deletes a namespace with everything in it.
pub async fn delete_namespace(db: &Db, id: &str) -> DbResult<()> {
    let mut tx = db.begin().await?;
    on_tx!(&mut tx, c => {
        for table in ["metadef_associations", "metadef_objects", "metadef_properties", "metadef_tags"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE namespace_id = $1"))
                .bind(id).execute(&mut *c).await?;
        }
        sqlx::query("DELETE FROM metadef_namespaces WHERE id = $1").bind(id).execute(&mut *c).await?;
    });
    tx.commit().await?;
    Ok(())
}

pub async fn resource_types(db: &Db) -> DbResult<Vec<ResourceType>> {
    Ok(on_pool!(db, p => sqlx::query_as(
        "SELECT name, protected, created_at, updated_at FROM metadef_resource_types ORDER BY name",
    ).fetch_all(p).await?))
}

pub async fn associations(db: &Db, namespace_id: &str) -> DbResult<Vec<Association>> {
    Ok(on_pool!(db, p => sqlx::query_as(
        "SELECT resource_type, prefix, properties_target, created_at, updated_at \
         FROM metadef_associations WHERE namespace_id = $1 ORDER BY resource_type",
    ).bind(namespace_id).fetch_all(p).await?))
}

/// Associates a namespace with a resource type (made when new, as Glance does); false when
/// they are associated already.
pub async fn associate(db: &Db, namespace_id: &str, a: &Association) -> DbResult<bool> {
    let mut tx = db.begin().await?;
    let n = on_tx!(&mut tx, c => {
        sqlx::query("INSERT INTO metadef_resource_types (name, protected, created_at, updated_at) \
                     VALUES ($1, FALSE, $2, $2) ON CONFLICT (name) DO NOTHING")
            .bind(&a.resource_type).bind(a.created_at).execute(&mut *c).await?;
        sqlx::query("INSERT INTO metadef_associations (namespace_id, resource_type, prefix, \
                     properties_target, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (namespace_id, resource_type) DO NOTHING")
            .bind(namespace_id).bind(&a.resource_type).bind(&a.prefix).bind(&a.properties_target)
            .bind(a.created_at).bind(a.updated_at).execute(&mut *c).await?.rows_affected()
    });
    tx.commit().await?;
    Ok(n == 1)
}

pub async fn dissociate(db: &Db, namespace_id: &str, resource_type: &str) -> DbResult<bool> {
    let n = on_pool!(db, p => sqlx::query(
        "DELETE FROM metadef_associations WHERE namespace_id = $1 AND resource_type = $2",
    ).bind(namespace_id).bind(resource_type).execute(p).await?.rows_affected());
    Ok(n == 1)
}

pub async fn items(db: &Db, kind: Kind, namespace_id: &str) -> DbResult<Vec<Item>> {
    let sql = format!(
        "SELECT {} FROM {} WHERE namespace_id = $1 ORDER BY name",
        kind.columns(),
        kind.table()
    );
    Ok(on_pool!(db, p => sqlx::query_as(&sql).bind(namespace_id).fetch_all(p).await?))
}

pub async fn item(db: &Db, kind: Kind, namespace_id: &str, name: &str) -> DbResult<Option<Item>> {
    let sql = format!(
        "SELECT {} FROM {} WHERE namespace_id = $1 AND name = $2",
        kind.columns(),
        kind.table()
    );
    Ok(
        on_pool!(db, p => sqlx::query_as(&sql).bind(namespace_id).bind(name).fetch_optional(p).await?),
    )
}

/// Adds an item; false when the namespace holds one of that name.
pub async fn add_item(db: &Db, kind: Kind, namespace_id: &str, item: &Item) -> DbResult<bool> {
    let r = on_pool!(db, p => insert_item!(p, kind, namespace_id, item));
    match r {
        Ok(()) => Ok(true),
        Err(e) if e.is_unique_violation() => Ok(false),
        Err(e) => Err(e),
    }
}

/// Replaces the item `old` (renamed to `item.name`); `None` when there is no `old`, `Some(false)`
/// when the new name is taken.
pub async fn replace_item(
    db: &Db,
    kind: Kind,
    namespace_id: &str,
    old: &str,
    item: &Item,
) -> DbResult<Option<bool>> {
    let sql = match kind {
        Kind::Tag => "UPDATE metadef_tags SET name = $3, updated_at = $4 WHERE namespace_id = $1 AND name = $2".to_owned(),
        _ => format!(
            "UPDATE {} SET name = $3, updated_at = $4, doc = $5 WHERE namespace_id = $1 AND name = $2",
            kind.table()
        ),
    };
    let r = on_pool!(db, p => {
        let mut q = sqlx::query(&sql).bind(namespace_id).bind(old).bind(&item.name).bind(item.updated_at);
        if kind != Kind::Tag {
            q = q.bind(&item.doc);
        }
        q.execute(p).await.map(|r| r.rows_affected()).map_err(crate::DbError::from)
    });
    match r {
        Ok(1) => Ok(Some(true)),
        Ok(_) => Ok(None),
        Err(e) if e.is_unique_violation() => Ok(Some(false)),
        Err(e) => Err(e),
    }
}

pub async fn delete_item(db: &Db, kind: Kind, namespace_id: &str, name: &str) -> DbResult<bool> {
    let sql = format!(
        "DELETE FROM {} WHERE namespace_id = $1 AND name = $2",
        kind.table()
    );
    let n = on_pool!(db, p => sqlx::query(&sql).bind(namespace_id).bind(name).execute(p).await?.rows_affected());
    Ok(n == 1)
}

/// Replaces all of a namespace's items of a kind with `items` (none: deletes them), in one
/// transaction; false when two of `items` share a name (nothing written).
pub async fn set_items(db: &Db, kind: Kind, namespace_id: &str, items: &[Item]) -> DbResult<bool> {
    let mut tx = db.begin().await?;
    let r: DbResult<()> = on_tx!(&mut tx, c => {
        sqlx::query(&format!("DELETE FROM {} WHERE namespace_id = $1", kind.table()))
            .bind(namespace_id).execute(&mut *c).await?;
        let mut out = Ok(());
        for item in items {
            if let Err(e) = insert_item!(&mut *c, kind, namespace_id, item) {
                out = Err(e);
                break;
            }
        }
        out
    });
    match r {
        Ok(()) => {
            tx.commit().await?;
            Ok(true)
        }
        Err(e) if e.is_unique_violation() => Ok(false),
        Err(e) => Err(e),
    }
}

/// Now, for the timestamps of what is written.
pub fn now() -> Millis {
    now_ms()
}
