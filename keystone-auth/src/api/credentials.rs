//! Keystone's credentials (`/v3/credentials`): a user's blobs of a type — EC2 access keys,
//! TOTP secrets, certificates — which clients store and read back. Each blob is sealed before
//! it is written (AES-256-GCM under the key repository's `credential.key`, bound to the
//! credential's id; Keystone keeps them encrypted under its credential keys) and shown opened.
//! As Keystone's policy: an admin or a system reader reads every credential, anyone else only
//! their own; a user creates, changes and deletes their own, an admin anyone's. An `ec2`
//! credential's blob is JSON with an `access` key, its id the SHA-256 of that key, and it
//! names a project (Keystone's rules).

use super::*;
use nova_core::secret::{Sealed, Secret};
use nova_db::identity::Credential;
use sha2::{Digest, Sha256};

const FIELDS: &[&str] = &["id", "user_id", "project_id", "type", "blob"];

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("Could not find credential: {id}."))
}

/// What the sealed blob is bound to: the credential it belongs to.
fn context(id: &str) -> String {
    format!("credential:{id}")
}

fn view(st: &IdentityState, c: &Credential, base: &str) -> ApiResult<Value> {
    let blob = st
        .credential_key
        .open(&Sealed(c.encrypted_blob.clone()), &context(&c.id))
        .map_err(|e| ApiError::Internal(format!("credential {}: {e}", c.id)))?;
    let mut v = parse_extra(&c.extra);
    v.insert("id".into(), json!(c.id));
    v.insert("user_id".into(), json!(c.user_id));
    v.insert("project_id".into(), json!(c.project_id));
    v.insert("type".into(), json!(c.kind));
    v.insert("blob".into(), json!(blob.expose()));
    v.insert(
        "links".into(),
        json!({"self": format!("{base}/credentials/{}", c.id)}),
    );
    Ok(Value::Object(v))
}

/// The `access` key of an EC2 blob (JSON with `access`), or Keystone's 400.
fn ec2_access(blob: &str) -> ApiResult<String> {
    serde_json::from_str::<Value>(blob)
        .ok()
        .and_then(|b| b["access"].as_str().map(str::to_owned))
        .ok_or_else(|| bad("Invalid blob in credential"))
}

fn ec2_id(access: &str) -> String {
    Sha256::digest(access.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A caller who may act on `owner`'s credentials: an admin, or `owner` itself.
fn may_write(c: &Claims, owner: &str) -> bool {
    has_role(c, "admin") || c.sub == owner
}

/// A credential the caller may read: a cloud reader any, anyone else their own.
async fn readable(req: &HttpRequest, st: &IdentityState, id: &str) -> ApiResult<Credential> {
    let c = caller(req, st)?;
    let cred = store::credential(&st.db, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    if !cloud_reader(&c) && cred.user_id != c.sub {
        return Err(KEYSTONE.denied("identity:get_credential"));
    }
    Ok(cred)
}

/// Checks `project_id` (when given) names a project.
async fn existing_project(st: &IdentityState, project_id: Option<&str>) -> ApiResult<()> {
    if let Some(p) = project_id {
        if store::project(&st.db, p).await?.is_none() {
            return Err(ApiError::NotFound(format!("Could not find project: {p}.")));
        }
    }
    Ok(())
}

pub(super) async fn create_credential(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    let c = caller(&req, &st)?;
    let body = json_body(&raw)?;
    let obj = body_object(&body, "credential")?;
    let v = Value::Object(obj.clone());
    let blob = string_field(&v, "blob")?
        .ok_or_else(|| bad("'blob' is a required property."))?
        .to_owned();
    let kind = short_string(&v, "type", false)?
        .filter(|t| !t.is_empty())
        .ok_or_else(|| bad("'type' is a required property."))?;
    let user_id = short_string(&v, "user_id", false)?
        .ok_or_else(|| bad("'user_id' is a required property."))?;
    let project_id = short_string(&v, "project_id", true)?;
    if !may_write(&c, &user_id) {
        return Err(KEYSTONE.denied("identity:create_credential"));
    }
    if store::user(&st.db, &user_id).await?.is_none() {
        return Err(ApiError::NotFound(format!(
            "Could not find user: {user_id}."
        )));
    }
    existing_project(&st, project_id.as_deref()).await?;
    let id = if kind == "ec2" {
        if project_id.is_none() {
            return Err(bad(
                "Expecting to find project_id in credential. The server could not comply with \
                 the request since it is either malformed or otherwise incorrect. The client is \
                 assumed to be in error.",
            ));
        }
        ec2_id(&ec2_access(&blob)?)
    } else {
        store::new_id()
    };
    let cred = Credential {
        encrypted_blob: st.credential_key.seal(&Secret::new(blob), &context(&id)).0,
        id,
        user_id,
        project_id,
        kind,
        extra: Value::Object(extra_of(obj, FIELDS)).to_string(),
    };
    if !store::create_credential(&st.db, &cred).await? {
        return Err(ApiError::Conflict(format!(
            "Conflict occurred attempting to store credential - Duplicate ID, {}.",
            cred.id
        )));
    }
    let base = v3_url(&req, &st.settings);
    Ok(HttpResponse::Created().json(json!({"credential": view(&st, &cred, &base)?})))
}

#[derive(serde::Deserialize, Default)]
struct CredentialQuery {
    user_id: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

pub(super) async fn list_credentials(
    req: HttpRequest,
    st: web::Data<IdentityState>,
) -> ApiResult<HttpResponse> {
    let c = caller(&req, &st)?;
    let q = web::Query::<CredentialQuery>::from_query(req.query_string())
        .map(|q| q.into_inner())
        .unwrap_or_default();
    // Anyone but a cloud reader lists their own only (Keystone filters, not refuses).
    let user = if cloud_reader(&c) {
        q.user_id.clone()
    } else {
        if q.user_id.as_deref().is_some_and(|u| u != c.sub) {
            let base = v3_url(&req, &st.settings);
            return Ok(collection(
                "credentials",
                vec![],
                format!("{base}/credentials"),
            ));
        }
        Some(c.sub.clone())
    };
    let base = v3_url(&req, &st.settings);
    let mut items = Vec::new();
    for cred in store::credentials(&st.db, user.as_deref(), q.kind.as_deref()).await? {
        items.push(view(&st, &cred, &base)?);
    }
    Ok(collection(
        "credentials",
        items,
        format!("{base}/credentials"),
    ))
}

pub(super) async fn show_credential(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let cred = readable(&req, &st, &id).await?;
    let base = v3_url(&req, &st.settings);
    Ok(HttpResponse::Ok().json(json!({"credential": view(&st, &cred, &base)?})))
}

pub(super) async fn update_credential(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    id: web::Path<String>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    let c = caller(&req, &st)?;
    let body = json_body(&raw)?;
    let obj = body_object(&body, "credential")?;
    if obj.is_empty() {
        return Err(bad(
            "Invalid input for field 'credential': {} does not have enough properties.",
        ));
    }
    let v = Value::Object(obj.clone());
    let mut cred = store::credential(&st.db, &id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    if !may_write(&c, &cred.user_id) {
        return Err(KEYSTONE.denied("identity:update_credential"));
    }
    if let Some(given) = short_string(&v, "id", false)? {
        if given != cred.id {
            return Err(bad("Cannot change credential ID"));
        }
    }
    let mut blob = st
        .credential_key
        .open(&Sealed(cred.encrypted_blob.clone()), &context(&cred.id))
        .map_err(|e| ApiError::Internal(format!("credential {}: {e}", cred.id)))?
        .expose()
        .to_owned();
    if let Some(b) = string_field(&v, "blob")? {
        blob = b.to_owned();
    }
    if let Some(kind) = short_string(&v, "type", false)? {
        cred.kind = kind;
    }
    if let Some(user) = short_string(&v, "user_id", false)? {
        // Given away: the new owner must exist, and only an admin gives one away.
        if user != cred.user_id {
            if !has_role(&c, "admin") {
                return Err(KEYSTONE.denied("identity:update_credential"));
            }
            if store::user(&st.db, &user).await?.is_none() {
                return Err(ApiError::NotFound(format!("Could not find user: {user}.")));
            }
        }
        cred.user_id = user;
    }
    if obj.contains_key("project_id") {
        cred.project_id = short_string(&v, "project_id", true)?;
        existing_project(&st, cred.project_id.as_deref()).await?;
    }
    if cred.kind == "ec2" {
        ec2_access(&blob)?;
        if cred.project_id.is_none() {
            return Err(bad("Expecting to find project_id in credential."));
        }
    }
    cred.encrypted_blob = st
        .credential_key
        .seal(&Secret::new(blob), &context(&cred.id))
        .0;
    let mut extra = parse_extra(&cred.extra);
    extra.extend(extra_of(obj, FIELDS));
    cred.extra = Value::Object(extra).to_string();
    if !store::update_credential(&st.db, &cred).await? {
        return Err(not_found(&id));
    }
    let base = v3_url(&req, &st.settings);
    Ok(HttpResponse::Ok().json(json!({"credential": view(&st, &cred, &base)?})))
}

pub(super) async fn delete_credential(
    req: HttpRequest,
    st: web::Data<IdentityState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let c = caller(&req, &st)?;
    let cred = store::credential(&st.db, &id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    if !may_write(&c, &cred.user_id) {
        return Err(KEYSTONE.denied("identity:delete_credential"));
    }
    store::delete_credential(&st.db, &id).await?;
    Ok(HttpResponse::NoContent().finish())
}
