//! Keystone's catalog: regions, services and endpoints (migrations' `0033_catalog.sql`).

use crate::{on_pool, on_tx, Db, DbResult};

#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct Region {
    pub id: String,
    pub description: String,
    pub parent_region_id: Option<String>,
    /// Attributes beyond the fixed ones, as a JSON object (Keystone's `extra`).
    pub extra: String,
}

#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct Service {
    pub id: String,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub enabled: bool,
    /// `name`, `description` and any other attribute given, as a JSON object (Keystone's).
    pub extra: String,
}

#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct Endpoint {
    pub id: String,
    pub service_id: String,
    pub interface: String,
    pub region_id: Option<String>,
    pub url: String,
    pub enabled: bool,
    pub extra: String,
}

// Regions.

/// Inserts a region; false when its id is taken.
pub async fn create_region(db: &Db, r: &Region) -> DbResult<bool> {
    let n = on_pool!(db, p => {
        sqlx::query(
            "INSERT INTO regions (id, description, parent_region_id, extra) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&r.id).bind(&r.description).bind(&r.parent_region_id).bind(&r.extra)
        .execute(p).await?.rows_affected()
    });
    Ok(n == 1)
}

pub async fn region(db: &Db, id: &str) -> DbResult<Option<Region>> {
    Ok(on_pool!(db, p => sqlx::query_as(
        "SELECT id, description, parent_region_id, extra FROM regions WHERE id = $1",
    ).bind(id).fetch_optional(p).await?))
}

pub async fn regions(db: &Db, parent_region_id: Option<&str>) -> DbResult<Vec<Region>> {
    Ok(on_pool!(db, p => sqlx::query_as(
        "SELECT id, description, parent_region_id, extra FROM regions \
         WHERE ($1 IS NULL OR parent_region_id = $1) ORDER BY id",
    ).bind(parent_region_id).fetch_all(p).await?))
}

pub async fn update_region(db: &Db, r: &Region) -> DbResult<bool> {
    let n = on_pool!(db, p => {
        sqlx::query("UPDATE regions SET description = $2, parent_region_id = $3, extra = $4 WHERE id = $1")
            .bind(&r.id).bind(&r.description).bind(&r.parent_region_id).bind(&r.extra)
            .execute(p).await?.rows_affected()
    });
    Ok(n == 1)
}

/// Why a region could not be deleted.
#[derive(Debug, PartialEq)]
pub enum RegionDelete {
    Deleted,
    NotFound,
    /// It, or a region below it, is an endpoint's region (Keystone's 403).
    InUse,
}

/// Deletes a region and the regions below it, as Keystone does, unless an endpoint is in one of
/// them.
pub async fn delete_region(db: &Db, id: &str) -> DbResult<RegionDelete> {
    let mut tx = db.begin().await?;
    let outcome = on_tx!(&mut tx, c => {
        let all: Vec<(String, Option<String>)> =
            sqlx::query_as("SELECT id, parent_region_id FROM regions").fetch_all(&mut *c).await?;
        if !all.iter().any(|(r, _)| r == id) {
            RegionDelete::NotFound
        } else {
            // The region and its descendants, parents before children.
            let mut doomed = vec![id.to_owned()];
            let mut i = 0;
            while i < doomed.len() {
                let parent = doomed[i].clone();
                doomed.extend(
                    all.iter()
                        .filter(|(r, p)| p.as_deref() == Some(&parent) && !doomed.contains(r))
                        .map(|(r, _)| r.clone())
                        .collect::<Vec<_>>(),
                );
                i += 1;
            }
            let mut in_use = false;
            for r in &doomed {
                let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM endpoints WHERE region_id = $1")
                    .bind(r).fetch_one(&mut *c).await?;
                in_use |= n > 0;
            }
            if in_use {
                RegionDelete::InUse
            } else {
                for r in doomed.iter().rev() {
                    sqlx::query("DELETE FROM regions WHERE id = $1").bind(r).execute(&mut *c).await?;
                }
                RegionDelete::Deleted
            }
        }
    });
    tx.commit().await?;
    Ok(outcome)
}

// Services.

pub async fn create_service(db: &Db, s: &Service) -> DbResult<()> {
    on_pool!(db, p => {
        sqlx::query("INSERT INTO catalog_services (id, type, enabled, extra) VALUES ($1, $2, $3, $4)")
            .bind(&s.id).bind(&s.kind).bind(s.enabled).bind(&s.extra)
            .execute(p).await?;
    });
    Ok(())
}

pub async fn service(db: &Db, id: &str) -> DbResult<Option<Service>> {
    Ok(on_pool!(db, p => sqlx::query_as(
        "SELECT id, type, enabled, extra FROM catalog_services WHERE id = $1",
    ).bind(id).fetch_optional(p).await?))
}

pub async fn services(db: &Db, kind: Option<&str>) -> DbResult<Vec<Service>> {
    Ok(on_pool!(db, p => sqlx::query_as(
        "SELECT id, type, enabled, extra FROM catalog_services \
         WHERE ($1 IS NULL OR type = $1) ORDER BY type, id",
    ).bind(kind).fetch_all(p).await?))
}

pub async fn update_service(db: &Db, s: &Service) -> DbResult<bool> {
    let n = on_pool!(db, p => {
        sqlx::query("UPDATE catalog_services SET type = $2, enabled = $3, extra = $4 WHERE id = $1")
            .bind(&s.id).bind(&s.kind).bind(s.enabled).bind(&s.extra)
            .execute(p).await?.rows_affected()
    });
    Ok(n == 1)
}

/// Deletes a service with its endpoints (Keystone's cascade).
pub async fn delete_service(db: &Db, id: &str) -> DbResult<bool> {
    let mut tx = db.begin().await?;
    let n = on_tx!(&mut tx, c => {
        sqlx::query("DELETE FROM endpoints WHERE service_id = $1").bind(id).execute(&mut *c).await?;
        sqlx::query("DELETE FROM catalog_services WHERE id = $1").bind(id).execute(&mut *c).await?.rows_affected()
    });
    tx.commit().await?;
    Ok(n == 1)
}

// Endpoints.

const ENDPOINT_COLUMNS: &str = "id, service_id, interface, region_id, url, enabled, extra";

pub async fn create_endpoint(db: &Db, e: &Endpoint) -> DbResult<()> {
    on_pool!(db, p => {
        sqlx::query(
            "INSERT INTO endpoints (id, service_id, interface, region_id, url, enabled, extra) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&e.id).bind(&e.service_id).bind(&e.interface).bind(&e.region_id).bind(&e.url)
        .bind(e.enabled).bind(&e.extra)
        .execute(p).await?;
    });
    Ok(())
}

pub async fn endpoint(db: &Db, id: &str) -> DbResult<Option<Endpoint>> {
    let sql = format!("SELECT {ENDPOINT_COLUMNS} FROM endpoints WHERE id = $1");
    Ok(on_pool!(db, p => sqlx::query_as(&sql).bind(id).fetch_optional(p).await?))
}

/// What an endpoint listing is filtered by (Keystone's `service_id`, `interface`, `region_id`).
#[derive(Debug, Default)]
pub struct EndpointFilter<'a> {
    pub service_id: Option<&'a str>,
    pub interface: Option<&'a str>,
    pub region_id: Option<&'a str>,
}

pub async fn endpoints(db: &Db, f: &EndpointFilter<'_>) -> DbResult<Vec<Endpoint>> {
    let sql = format!(
        "SELECT {ENDPOINT_COLUMNS} FROM endpoints WHERE ($1 IS NULL OR service_id = $1) \
         AND ($2 IS NULL OR interface = $2) AND ($3 IS NULL OR region_id = $3) ORDER BY service_id, interface, id"
    );
    Ok(on_pool!(db, p => sqlx::query_as(&sql)
        .bind(f.service_id).bind(f.interface).bind(f.region_id)
        .fetch_all(p).await?))
}

pub async fn update_endpoint(db: &Db, e: &Endpoint) -> DbResult<bool> {
    let n = on_pool!(db, p => {
        sqlx::query(
            "UPDATE endpoints SET service_id = $2, interface = $3, region_id = $4, url = $5, \
             enabled = $6, extra = $7 WHERE id = $1",
        )
        .bind(&e.id).bind(&e.service_id).bind(&e.interface).bind(&e.region_id).bind(&e.url)
        .bind(e.enabled).bind(&e.extra)
        .execute(p).await?.rows_affected()
    });
    Ok(n == 1)
}

pub async fn delete_endpoint(db: &Db, id: &str) -> DbResult<bool> {
    let n = on_pool!(db, p => sqlx::query("DELETE FROM endpoints WHERE id = $1").bind(id).execute(p).await?.rows_affected());
    Ok(n == 1)
}

/// Writes a service of the deployment's own (the bootstrap's), creating it when missing and
/// leaving what an admin changed of it; true when it was created.
pub async fn ensure_service(db: &Db, s: &Service) -> DbResult<bool> {
    let n = on_pool!(db, p => {
        sqlx::query("INSERT INTO catalog_services (id, type, enabled, extra) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (id) DO NOTHING")
            .bind(&s.id).bind(&s.kind).bind(s.enabled).bind(&s.extra)
            .execute(p).await?.rows_affected()
    });
    Ok(n == 1)
}

/// Writes an endpoint of the deployment's own: created when missing, its URL and region set to
/// the configured ones when they differ (as `keystone-manage bootstrap` does on a second run).
pub async fn ensure_endpoint(db: &Db, e: &Endpoint) -> DbResult<()> {
    on_pool!(db, p => {
        sqlx::query(
            "INSERT INTO endpoints (id, service_id, interface, region_id, url, enabled, extra) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (id) DO UPDATE SET url = excluded.url, region_id = excluded.region_id",
        )
        .bind(&e.id).bind(&e.service_id).bind(&e.interface).bind(&e.region_id).bind(&e.url)
        .bind(e.enabled).bind(&e.extra)
        .execute(p).await?;
    });
    Ok(())
}

/// Every enabled endpoint of every enabled service, with its service: what a token's catalog
/// lists.
pub async fn enabled_catalog(db: &Db) -> DbResult<Vec<(Service, Vec<Endpoint>)>> {
    let services = services(db, None).await?;
    let endpoints = endpoints(db, &EndpointFilter::default()).await?;
    Ok(services
        .into_iter()
        .filter(|s| s.enabled)
        .map(|s| {
            let mine = endpoints
                .iter()
                .filter(|e| e.enabled && e.service_id == s.id)
                .cloned()
                .collect();
            (s, mine)
        })
        .collect())
}

// The endpoint filter (OS-EP-FILTER).

#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct EndpointGroup {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    /// A JSON object of `interface`, `service_id` and `region_id` values an endpoint matches.
    pub filters: String,
}

pub async fn create_endpoint_group(db: &Db, g: &EndpointGroup) -> DbResult<()> {
    on_pool!(db, p => {
        sqlx::query("INSERT INTO endpoint_groups (id, name, description, filters) VALUES ($1, $2, $3, $4)")
            .bind(&g.id).bind(&g.name).bind(&g.description).bind(&g.filters)
            .execute(p).await?;
    });
    Ok(())
}

pub async fn endpoint_group(db: &Db, id: &str) -> DbResult<Option<EndpointGroup>> {
    Ok(on_pool!(db, p => sqlx::query_as(
        "SELECT id, name, description, filters FROM endpoint_groups WHERE id = $1",
    ).bind(id).fetch_optional(p).await?))
}

pub async fn endpoint_groups(db: &Db) -> DbResult<Vec<EndpointGroup>> {
    Ok(on_pool!(db, p => sqlx::query_as(
        "SELECT id, name, description, filters FROM endpoint_groups ORDER BY name, id",
    ).fetch_all(p).await?))
}

pub async fn update_endpoint_group(db: &Db, g: &EndpointGroup) -> DbResult<bool> {
    let n = on_pool!(db, p => sqlx::query(
        "UPDATE endpoint_groups SET name = $2, description = $3, filters = $4 WHERE id = $1",
    ).bind(&g.id).bind(&g.name).bind(&g.description).bind(&g.filters)
    .execute(p).await?.rows_affected());
    Ok(n == 1)
}

pub async fn delete_endpoint_group(db: &Db, id: &str) -> DbResult<bool> {
    let mut tx = db.begin().await?;
    let n = on_tx!(&mut tx, c => {
        sqlx::query("DELETE FROM project_endpoint_groups WHERE endpoint_group_id = $1").bind(id).execute(&mut *c).await?;
        sqlx::query("DELETE FROM endpoint_groups WHERE id = $1").bind(id).execute(&mut *c).await?.rows_affected()
    });
    tx.commit().await?;
    Ok(n == 1)
}

/// Which association table: a project's endpoint groups or its endpoints.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Association {
    Group,
    Endpoint,
}

impl Association {
    fn table_and_column(self) -> (&'static str, &'static str) {
        match self {
            Association::Group => ("project_endpoint_groups", "endpoint_group_id"),
            Association::Endpoint => ("project_endpoints", "endpoint_id"),
        }
    }
}

/// Associates `target` (a group or an endpoint) with a project; idempotent.
pub async fn associate(db: &Db, kind: Association, target: &str, project_id: &str) -> DbResult<()> {
    let (table, column) = kind.table_and_column();
    let sql = format!(
        "INSERT INTO {table} ({column}, project_id) VALUES ($1, $2) ON CONFLICT DO NOTHING"
    );
    on_pool!(db, p => { sqlx::query(&sql).bind(target).bind(project_id).execute(p).await?; });
    Ok(())
}

pub async fn dissociate(
    db: &Db,
    kind: Association,
    target: &str,
    project_id: &str,
) -> DbResult<bool> {
    let (table, column) = kind.table_and_column();
    let sql = format!("DELETE FROM {table} WHERE {column} = $1 AND project_id = $2");
    let n = on_pool!(db, p => sqlx::query(&sql).bind(target).bind(project_id).execute(p).await?.rows_affected());
    Ok(n == 1)
}

/// The (target, project) pairs of an association table, optionally of one target or of one
/// project.
pub async fn associations(
    db: &Db,
    kind: Association,
    target: Option<&str>,
    project_id: Option<&str>,
) -> DbResult<Vec<(String, String)>> {
    let (table, column) = kind.table_and_column();
    let sql = format!(
        "SELECT {column}, project_id FROM {table} WHERE ($1 IS NULL OR {column} = $1) \
         AND ($2 IS NULL OR project_id = $2) ORDER BY {column}, project_id"
    );
    Ok(on_pool!(db, p => sqlx::query_as(&sql).bind(target).bind(project_id).fetch_all(p).await?))
}

/// Whether `e` matches an endpoint group's filters (every key given must be equal).
pub fn matches(filters: &serde_json::Value, e: &Endpoint) -> bool {
    filters.as_object().is_some_and(|f| {
        f.iter().all(|(k, v)| {
            let have = match k.as_str() {
                "interface" => Some(e.interface.as_str()),
                "service_id" => Some(e.service_id.as_str()),
                "region_id" => e.region_id.as_deref(),
                _ => None,
            };
            have.is_some() && v.as_str() == have
        })
    })
}

/// The ids of the endpoints a project's token may list: `None` when the project has no
/// association (every endpoint), else its endpoints and those of its groups.
pub async fn endpoints_of_project(db: &Db, project_id: &str) -> DbResult<Option<Vec<String>>> {
    let direct = associations(db, Association::Endpoint, None, Some(project_id)).await?;
    let groups = associations(db, Association::Group, None, Some(project_id)).await?;
    if direct.is_empty() && groups.is_empty() {
        return Ok(None);
    }
    let mut ids: Vec<String> = direct.into_iter().map(|(e, _)| e).collect();
    let all = endpoints(db, &EndpointFilter::default()).await?;
    for (g, _) in groups {
        if let Some(group) = endpoint_group(db, &g).await? {
            let filters: serde_json::Value =
                serde_json::from_str(&group.filters).unwrap_or_default();
            for e in all.iter().filter(|e| matches(&filters, e)) {
                if !ids.contains(&e.id) {
                    ids.push(e.id.clone());
                }
            }
        }
    }
    Ok(Some(ids))
}
