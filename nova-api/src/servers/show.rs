//! `GET /servers/{id}`.

use super::{host_status, visible, OneServer};
use crate::versions::ApiVersion;
use crate::{views, AppState};
use actix_web::{web, HttpRequest, HttpResponse};
use api_toolkit::links::PublicUrl;
use api_toolkit::{ApiResult, RequestContext};

pub(super) async fn show(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let instance = visible(&state, &ctx, &id).await?;
    let url = PublicUrl::of(&req);
    let version = ApiVersion::of(&req);
    let host_status = host_status(&state, &ctx, version).await?;
    let host_zones = nova_db::aggregates::host_zones(&state.db).await?;
    let security_groups =
        nova_db::ports::server_security_groups(&state.db, &[instance.uuid.to_string()]).await?;
    let server_groups = super::server_groups_of(&state, version, &instance).await?;
    let viewer = views::ServerViewer {
        url: &url,
        ctx: &ctx,
        version,
        host_status: &host_status,
        host_zones: &host_zones,
        security_groups: &security_groups,
        server_groups: &server_groups,
        kind: views::ViewKind::Show,
    };
    Ok(HttpResponse::Ok().json(&OneServer {
        server: views::server_detail(&viewer, &instance),
    }))
}
