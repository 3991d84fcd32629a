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
