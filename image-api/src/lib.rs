//! The image service (a Glance v2 subset) under `/image`: [`images`] (records, visibility,
//! JSON-patch updates), [`tags`], [`members`], [`schemas`] (Glance's schema documents),
//! [`metadefs`] (metadata definitions), and
//! [`data`], kept in an image store
//! ([`store`]: a local directory, or an S3-compatible object store that API replicas share).
//!
//! Errors leave in Glance's body (webob's JSON error: `{"code", "title", "message"}`).

mod data;
mod images;
pub use images::delete_image;
mod members;
mod metadefs;
mod schemas;
pub mod store;
mod tags;
pub mod uploads;

use actix_web::{web, HttpRequest, HttpResponse};
use api_toolkit::links::PublicUrl;
use api_toolkit::FaultFormat;
use nova_db::Db;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use store::ImageStore;

pub use images::{CONTAINER_FORMATS, DISK_FORMATS};

/// `[image]`: where image data is kept and how large an image may be.
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct ImageSettings {
    /// The largest image accepted, in bytes (Glance's `image_size_cap`, 1 TiB by default).
    pub size_cap: i64,
    pub store: store::StoreSettings,
    /// Glance's `image_tag_quota`, `image_member_quota` and `image_property_quota`: at most
    /// this many of each per image (128 by default); past it, 413. Negative: no limit.
    pub tag_quota: i64,
    pub member_quota: i64,
    pub property_quota: i64,
}

impl Default for ImageSettings {
    fn default() -> Self {
        Self {
            size_cap: 1 << 40,
            store: store::StoreSettings::default(),
            tag_quota: 128,
            member_quota: 128,
            property_quota: 128,
        }
    }
}

/// What the image handlers share.
pub struct ImageState {
    pub db: Db,
    pub store: Arc<dyn ImageStore>,
    pub size_cap: i64,
    pub tag_quota: i64,
    pub member_quota: i64,
    pub property_quota: i64,
    pub upload_clock: uploads::UploadClock,
    /// Checks the signed URLs BMCs fetch ISOs from (none: that route answers 404).
    pub bmc_signer: Option<nova_core::secret::UrlSigner>,
}

/// The image API, to serve ([`api_toolkit::server::serve`]).
pub struct ImageApi {
    state: web::Data<ImageState>,
}

impl ImageApi {
    /// `store` is [`store::open`]ed from `settings.store` by the caller, who may share it
    /// (the compute API's image proxy deletes through it).
    ///
    /// `bmc_signer` checks the URLs BMCs fetch ISOs from (a bare-metal deploy); none: that
    /// route answers 404.
    ///
    /// `body_timeout` is the server's request-body timeout: it tells a dead upload from a
    /// slow one ([`uploads`]), whose recovery starts here.
    pub fn new(
        db: Db,
        settings: &ImageSettings,
        store: Arc<dyn ImageStore>,
        body_timeout: std::time::Duration,
        bmc_signer: Option<nova_core::secret::UrlSigner>,
    ) -> Self {
        let upload_clock = uploads::UploadClock::for_body_timeout(body_timeout);
        uploads::spawn_recovery(db.clone(), store.clone(), upload_clock);
        Self {
            state: web::Data::new(ImageState {
                db,
                store,
                size_cap: settings.size_cap,
                tag_quota: settings.tag_quota,
                member_quota: settings.member_quota,
                property_quota: settings.property_quota,
                upload_clock,
                bmc_signer,
            }),
        }
    }
}

impl api_toolkit::Service for ImageApi {
    fn configure(&self, cfg: &mut web::ServiceConfig) {
        cfg.app_data(self.state.clone());
        routes(cfg);
    }
}

/// `/v2/tasks`: Glance's asynchronous tasks (admin only, as Glance's `tasks_api_access`). No
/// task type runs here — images are uploaded with `PUT …/file`, and no import method is
/// enabled (`/v2/info/import`) — so a task is refused with 400, as Glance refuses one it cannot
/// run, and the list is empty.
async fn list_tasks(ctx: api_toolkit::RequestContext) -> api_toolkit::ApiResult<HttpResponse> {
    api_toolkit::policy::GLANCE.require_admin(&ctx, "tasks_api_access")?;
    Ok(HttpResponse::Ok()
        .json(json!({"tasks": [], "first": "/v2/tasks", "schema": "/v2/schemas/tasks"})))
}

/// Glance's task schema (what a task would show; none is ever made here).
fn task_schema() -> Value {
    let string = |d: &str| json!({"type": "string", "description": d});
    json!({
        "name": "task",
        "properties": {
            "id": string("An identifier for the task"),
            "type": {"type": "string", "enum": ["import", "api_image_import", "location_import"],
                     "description": "The type of task represented by this content"},
            "status": {"type": "string", "enum": ["pending", "processing", "success", "failure"],
                       "description": "The current status of this task"},
            "input": {"type": ["null", "object"], "description": "The parameters required by task, JSON blob"},
            "result": {"type": ["null", "object"], "description": "The result of current task, JSON blob"},
            "owner": string("An identifier for the owner of this task"),
            "message": string("Human-readable informative message only included when appropriate"),
            "image_id": string("Image associated with the task"),
            "request_id": string("Request ID of the request that created the task"),
            "user_id": string("User associated with the task"),
            "expires_at": {"type": ["null", "string"], "description": "Datetime when this resource would be subject to removal"},
            "created_at": string("Datetime when this resource was created"),
            "updated_at": string("Datetime when this resource was updated"),
            "self": {"type": "string", "readOnly": true},
            "schema": {"type": "string", "readOnly": true},
        },
    })
}

async fn task_schema_doc(_ctx: api_toolkit::RequestContext) -> HttpResponse {
    HttpResponse::Ok().json(task_schema())
}

async fn tasks_schema_doc(_ctx: api_toolkit::RequestContext) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "name": "tasks",
        "properties": {
            "tasks": {"type": "array", "items": task_schema()},
            "first": {"type": "string"}, "next": {"type": "string"}, "schema": {"type": "string"},
        },
        "links": [{"rel": "first", "href": "{first}"}, {"rel": "next", "href": "{next}"},
                  {"rel": "describedby", "href": "{schema}"}],
    }))
}

async fn create_task(
    ctx: api_toolkit::RequestContext,
    raw: web::Bytes,
) -> api_toolkit::ApiResult<HttpResponse> {
    api_toolkit::policy::GLANCE.require_admin(&ctx, "tasks_api_access")?;
    let body = api_toolkit::body::json(&raw)?;
    let kind = body["type"].as_str().unwrap_or_default();
    Err(api_toolkit::bad(format!(
        "Task type '{kind}' is not supported by this deployment: images are uploaded with \
         PUT /v2/images/{{image_id}}/file, and no import method is enabled."
    )))
}

async fn show_task(
    ctx: api_toolkit::RequestContext,
    id: web::Path<String>,
) -> api_toolkit::ApiResult<HttpResponse> {
    api_toolkit::policy::GLANCE.require_admin(&ctx, "tasks_api_access")?;
    Err(api_toolkit::ApiError::NotFound(format!(
        "Task with the given id {id} not found"
    )))
}

/// `GET /v2/info/import`: Glance's discovery of the interoperable import methods. Images
/// here are uploaded with `PUT …/file`; no import method is enabled (Glance's answer with an
/// empty `enabled_import_methods`).
async fn import_info(_ctx: api_toolkit::RequestContext) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"import-methods": {
        "description": "Import methods available.",
        "type": "array",
        "value": [],
    }}))
}

async fn versions(req: HttpRequest) -> HttpResponse {
    let base = PublicUrl::of(&req).0;
    let href = format!("{base}/image/v2/");
    let values: Vec<Value> = (0..=16)
        .rev()
        .map(|minor| {
            let status = if minor == 16 { "CURRENT" } else { "SUPPORTED" };
            json!({"id": format!("v2.{minor}"), "status": status, "links": [{"rel": "self", "href": href}]})
        })
        .collect();
    HttpResponse::MultipleChoices().json(json!({ "versions": values }))
}

/// Glance's read policy on images (`get_images`, `get_image`, `download_image`, members):
/// a caller with only a custom role reads none of them. (Outside the fault re-rendering, so
/// the refusal is worded and shaped as Glance's here.)
async fn readers_only(
    mut req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    if let Some(e) = api_toolkit::policy::GLANCE
        .reader_check(&mut req, &["/image/v2/images"], "get_images")
        .await
    {
        let response = FaultFormat::Glance.response(&e);
        let (http, _) = req.into_parts();
        return Ok(actix_web::dev::ServiceResponse::new(http, response));
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}

fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/image")
            .wrap(FaultFormat::Glance.errors())
            .wrap(actix_web::middleware::from_fn(readers_only))
            .service(web::resource("").route(web::get().to(versions)))
            .service(web::resource("/").route(web::get().to(versions)))
            .service(web::resource("/versions").route(web::get().to(versions)))
            .service(web::resource("/v2/info/import").route(web::get().to(import_info)))
            .service(web::resource("/v2/schemas/image").route(web::get().to(schemas::image_schema)))
            .service(
                web::resource("/v2/schemas/images").route(web::get().to(schemas::images_schema)),
            )
            .service(
                web::resource("/v2/schemas/member").route(web::get().to(schemas::member_schema)),
            )
            .service(
                web::resource("/v2/schemas/members").route(web::get().to(schemas::members_schema)),
            )
            .service(
                web::resource("/v2/images")
                    .route(web::get().to(images::list))
                    .route(web::post().to(images::create)),
            )
            .service(
                web::resource("/v2/images/{id}")
                    .route(web::get().to(images::show))
                    .route(web::patch().to(images::update))
                    .route(web::delete().to(images::delete)),
            )
            .service(web::resource("/v2/images/{id}/tasks").route(web::get().to(images::tasks)))
            .service(
                web::resource("/v2/images/{id}/actions/{action}")
                    .route(web::post().to(images::image_action)),
            )
            .service(
                web::resource("/v2/images/{id}/file")
                    .route(web::put().to(data::upload))
                    .route(web::get().to(data::download)),
            )
            .service(
                web::resource("/v2/bmc-images/{id}/{expires}/{signature}/image.iso")
                    .route(web::get().to(data::download_signed)),
            )
            .service(
                web::resource("/v2/images/{id}/tags/{tag}")
                    .route(web::put().to(tags::add_tag))
                    .route(web::delete().to(tags::remove_tag)),
            )
            .service(
                web::resource("/v2/images/{id}/members")
                    .route(web::get().to(members::list_members))
                    .route(web::post().to(members::add_member)),
            )
            .service(
                web::resource("/v2/images/{id}/members/{member}")
                    .route(web::get().to(members::show_member))
                    .route(web::put().to(members::answer_member))
                    .route(web::delete().to(members::remove_member)),
            )
            .service(
                web::resource("/v2/tasks")
                    .route(web::get().to(list_tasks))
                    .route(web::post().to(create_task)),
            )
            .service(web::resource("/v2/tasks/{id}").route(web::get().to(show_task)))
            .service(web::resource("/v2/schemas/task").route(web::get().to(task_schema_doc)))
            .service(web::resource("/v2/schemas/tasks").route(web::get().to(tasks_schema_doc)))
            .service(
                web::resource("/v2/schemas/metadefs/{name}").route(web::get().to(metadefs::schema)),
            )
            .service(
                web::resource("/v2/metadefs/resource_types")
                    .route(web::get().to(metadefs::list_resource_types)),
            )
            .service(
                web::resource("/v2/metadefs/namespaces")
                    .route(web::get().to(metadefs::list_namespaces))
                    .route(web::post().to(metadefs::create_namespace)),
            )
            .service(
                web::resource("/v2/metadefs/namespaces/{ns}")
                    .route(web::get().to(metadefs::show_namespace))
                    .route(web::put().to(metadefs::update_namespace))
                    .route(web::delete().to(metadefs::delete_namespace)),
            )
            // Before the namespace's objects, properties and tags, whose routes would match.
            .service(
                web::resource("/v2/metadefs/namespaces/{ns}/resource_types")
                    .route(web::get().to(metadefs::list_associations))
                    .route(web::post().to(metadefs::create_association)),
            )
            .service(
                web::resource("/v2/metadefs/namespaces/{ns}/resource_types/{rt}")
                    .route(web::delete().to(metadefs::delete_association)),
            )
            .service(
                web::resource("/v2/metadefs/namespaces/{ns}/{kind}")
                    .route(web::get().to(metadefs::list_items))
                    .route(web::post().to(metadefs::create_items))
                    .route(web::delete().to(metadefs::delete_items)),
            )
            // A tag is also made by its name alone (POST), which objects and properties are not.
            .service(
                web::resource("/v2/metadefs/namespaces/{ns}/{kind:tags}/{name}")
                    .route(web::get().to(metadefs::show_item))
                    .route(web::post().to(metadefs::create_tag_at))
                    .route(web::put().to(metadefs::update_item))
                    .route(web::delete().to(metadefs::delete_item)),
            )
            .service(
                web::resource("/v2/metadefs/namespaces/{ns}/{kind}/{name}")
                    .route(web::get().to(metadefs::show_item))
                    .route(web::put().to(metadefs::update_item))
                    .route(web::delete().to(metadefs::delete_item)),
            ),
    );
}
