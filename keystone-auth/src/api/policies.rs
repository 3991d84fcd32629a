//! Keystone's policy API: blobs of a type that an admin stores and reads back (deprecated in
//! Keystone, which enforces none of them, and kept for its clients; nothing here enforces them
//! either). Reads are `ADMIN_OR_SYSTEM_READER`, writes the admin's.

use super::*;
use nova_db::identity::Policy;

const FIELDS: &[&str] = &["id", "type", "blob"];

fn policy_view(p: &Policy, base: &str) -> Value {
    let mut v = parse_extra(&p.extra);
    v.insert("id".into(), json!(p.id));
    v.insert("type".into(), json!(p.kind));
    v.insert("blob".into(), json!(p.blob));
    v.insert(
        "links".into(),
        json!({"self": format!("{base}/policies/{}", p.id)}),
    );
    Value::Object(v)
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("Could not find policy: {id}."))
}

/// A policy's `blob`: any string.
fn blob(obj: &Value) -> ApiResult<Option<String>> {
    match &obj["blob"] {
        Value::Null if obj.get("blob").is_none() => Ok(None),
        Value::String(b) => Ok(Some(b.clone())),
        other => Err(bad(format!(
            "Invalid input for field 'blob': {other} is not of type 'string'."
        ))),
    }
}

pub(super) async fn create_policy(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    require_admin(&req, &st, "identity:create_policy")?;
    let body = json_body(&raw)?;
    let obj = body_object(&body, "policy")?;
    let p = Value::Object(obj.clone());
    let policy = Policy {
        id: store::new_id(),
        blob: blob(&p)?.ok_or_else(|| bad("'blob' is a required property."))?,
        kind: short_string(&p, "type", false)?
            .ok_or_else(|| bad("'type' is a required property."))?,
        extra: Value::Object(extra_of(obj, FIELDS)).to_string(),
    };
    store::create_policy(&st.db, &policy).await?;
    Ok(HttpResponse::Created()
        .json(json!({"policy": policy_view(&policy, &v3_url(&req, &st.settings))})))
}

#[derive(serde::Deserialize, Default)]
struct PolicyQuery {
    #[serde(rename = "type")]
    kind: Option<String>,
}

pub(super) async fn list_policies(
    req: HttpRequest,
    st: web::Data<IdentityState>,
) -> ApiResult<HttpResponse> {
    require_cloud_reader(&req, &st, "identity:list_policies")?;
    let q = web::Query::<PolicyQuery>::from_query(req.query_string())
        .map(|q| q.into_inner())
        .unwrap_or_default();
    let base = v3_url(&req, &st.settings);
    let items = store::policies(&st.db, q.kind.as_deref())
        .await?
        .iter()
        .map(|p| policy_view(p, &base))
        .collect();
    Ok(collection("policies", items, format!("{base}/policies")))
}

pub(super) async fn show_policy(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    require_cloud_reader(&req, &st, "identity:get_policy")?;
    let p = store::policy(&st.db, &id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    Ok(HttpResponse::Ok().json(json!({"policy": policy_view(&p, &v3_url(&req, &st.settings))})))
}

pub(super) async fn update_policy(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    id: web::Path<String>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    require_admin(&req, &st, "identity:update_policy")?;
    let body = json_body(&raw)?;
    let obj = body_object(&body, "policy")?;
    let p = Value::Object(obj.clone());
    let mut policy = store::policy(&st.db, &id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    if let Some(given) = short_string(&p, "id", false)? {
        if given != policy.id {
            return Err(bad("Cannot change policy ID"));
        }
    }
    if let Some(b) = blob(&p)? {
        policy.blob = b;
    }
    if let Some(kind) = short_string(&p, "type", false)? {
        policy.kind = kind;
    }
    let mut extra = parse_extra(&policy.extra);
    extra.extend(extra_of(obj, FIELDS));
    policy.extra = Value::Object(extra).to_string();
    if !store::update_policy(&st.db, &policy).await? {
        return Err(not_found(&id));
    }
    Ok(HttpResponse::Ok()
        .json(json!({"policy": policy_view(&policy, &v3_url(&req, &st.settings))})))
}

pub(super) async fn delete_policy(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    require_admin(&req, &st, "identity:delete_policy")?;
    if !store::delete_policy(&st.db, &id).await? {
        return Err(not_found(&id));
    }
    Ok(HttpResponse::NoContent().finish())
}
