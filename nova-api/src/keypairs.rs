//! `/os-keypairs`: a user's SSH public keys, as Nova keeps them — per user, by name.
//!
//! By microversion: `type` from 2.2 (create answers 201 and delete 204 from then on), another
//! user's key pairs for admins with `user_id` from 2.10, `limit`/`marker` paging from 2.35,
//! names with `@` and `.` and no more generated keys from 2.92. Fingerprints are Nova's: the
//! MD5 of the key's wire encoding, as colon-separated hex (what `ssh-keygen -l -E md5`
//! prints). A generated key is RSA 2048, as Nova's, returned once in OpenSSH format. An
//! `x509` key pair is a PEM certificate (generated: a self-signed RSA 2048 certificate for the
//! user, as Nova's); its fingerprint is the certificate's SHA-1, colon-separated. A public key
//! is kept and returned exactly as given (clients compare it byte for byte).

use crate::versions::ApiVersion;
use crate::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use api_toolkit::links::PublicUrl;
use api_toolkit::policy::NOVA;
use api_toolkit::RequestContext;
use api_toolkit::{bad, ApiError, ApiResult};
use md5::{Digest, Md5};
use nova_core::time::iso8601_naive_micros;
use nova_db::keypairs::{self, KeyPair};
use serde_json::{json, Value};

const MAX_LIMIT: i64 = 1000;

fn not_found(name: &str, user: &str) -> ApiError {
    ApiError::NotFound(format!("Keypair {name} could not be found for user {user}"))
}

/// Nova's fingerprint of an OpenSSH public key line; `None` when it is not one.
pub fn fingerprint(public_key: &str) -> Option<String> {
    let key = ssh_key::PublicKey::from_openssh(public_key.trim()).ok()?;
    let blob = key.to_bytes().ok()?;
    let digest = Md5::digest(&blob);
    Some(
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":"),
    )
}

/// Nova's fingerprint of an x509 key pair: the SHA-1 of the PEM certificate's DER form.
fn x509_fingerprint(pem: &str) -> Option<String> {
    let cert = openssl::x509::X509::from_pem(pem.trim().as_bytes()).ok()?;
    let digest = cert.digest(openssl::hash::MessageDigest::sha1()).ok()?;
    Some(
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":"),
    )
}

/// A new x509 key pair, as Nova's `generate_x509_cert`: a self-signed certificate for
/// `user` over an RSA 2048 key, valid ten years: (certificate PEM, private key PEM).
fn generate_x509(user: &str) -> Result<(String, String), openssl::error::ErrorStack> {
    use openssl::asn1::Asn1Time;
    use openssl::bn::BigNum;
    use openssl::hash::MessageDigest;
    use openssl::pkey::PKey;
    use openssl::rsa::Rsa;
    use openssl::x509::{X509Builder, X509NameBuilder};
    let key = PKey::from_rsa(Rsa::generate(2048)?)?;
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_text("CN", user)?;
    let name = name.build();
    let mut cert = X509Builder::new()?;
    cert.set_version(2)?;
    let serial = BigNum::from_u32(rand::random::<u32>())?.to_asn1_integer()?;
    cert.set_serial_number(&serial)?;
    cert.set_subject_name(&name)?;
    cert.set_issuer_name(&name)?;
    cert.set_pubkey(&key)?;
    cert.set_not_before(Asn1Time::days_from_now(0)?.as_ref())?;
    cert.set_not_after(Asn1Time::days_from_now(3650)?.as_ref())?;
    cert.sign(&key, MessageDigest::sha256())?;
    let pem = String::from_utf8_lossy(&cert.build().to_pem()?).into_owned();
    let private = String::from_utf8_lossy(&key.private_key_to_pem_pkcs8()?).into_owned();
    Ok((pem, private))
}

/// A new RSA 2048 key pair: (public key line, private key in OpenSSH format).
///
/// OpenSSL makes the key (as Nova's `cryptography` does, in tens of milliseconds); ssh-key only
/// writes OpenSSH's formats. (ssh-key's own RSA generation, on the pure-Rust `rsa` crate, took
/// most of a second of CPU per key.)
fn generate(comment: &str) -> ApiResult<(String, String)> {
    let failed = |e: String| ApiError::Internal(format!("key generation: {e}"));
    let rsa = openssl::rsa::Rsa::generate(2048).map_err(|e| failed(e.to_string()))?;
    let mpint = |n: Option<&openssl::bn::BigNumRef>| {
        let n = n.ok_or_else(|| failed("an RSA component is missing".into()))?;
        ssh_key::Mpint::from_positive_bytes(&n.to_vec()).map_err(|e| failed(e.to_string()))
    };
    // OpenSSH's `iqmp` is PKCS #1's coefficient, q⁻¹ mod p.
    let keypair = ssh_key::private::RsaKeypair {
        public: ssh_key::public::RsaPublicKey {
            e: mpint(Some(rsa.e()))?,
            n: mpint(Some(rsa.n()))?,
        },
        private: ssh_key::private::RsaPrivateKey {
            d: mpint(Some(rsa.d()))?,
            iqmp: mpint(rsa.iqmp())?,
            p: mpint(rsa.p())?,
            q: mpint(rsa.q())?,
        },
    };
    let private = ssh_key::PrivateKey::new(ssh_key::private::KeypairData::Rsa(keypair), comment)
        .map_err(|e| failed(e.to_string()))?;
    let public = private
        .public_key()
        .to_openssh()
        .map_err(|e| failed(e.to_string()))?;
    let pem = private
        .to_openssh(ssh_key::LineEnding::LF)
        .map_err(|e| failed(e.to_string()))?;
    Ok((public, pem.to_string()))
}

/// The user the request acts for: another user's key pairs are for admins, from 2.10.
fn target_user(ctx: &RequestContext, v: ApiVersion, asked: Option<&str>) -> ApiResult<String> {
    match asked {
        Some(user) if v.at_least(10) && user != ctx.user_id => {
            if !ctx.is_admin() {
                return Err(ApiError::Forbidden(
                    "Policy doesn't allow os_compute_api:os-keypairs to be performed for another user."
                        .into(),
                ));
            }
            Ok(user.to_owned())
        }
        _ => Ok(ctx.user_id.clone()),
    }
}

fn name_is_valid(name: &str, v: ApiVersion) -> bool {
    let n = name.chars().count();
    (1..=255).contains(&n)
        && name.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(c, ' ' | '_' | '-')
                || (v.at_least(92) && matches!(c, '@' | '.'))
        })
}

/// The list view: name, key and fingerprint (and type from 2.2).
fn summary(k: &KeyPair, v: ApiVersion) -> Value {
    let mut out = json!({
        "name": k.name,
        "public_key": k.public_key,
        "fingerprint": k.fingerprint,
    });
    if v.at_least(2) {
        out["type"] = json!(k.key_type);
    }
    out
}

#[derive(serde::Deserialize)]
struct ListQuery {
    user_id: Option<String>,
    limit: Option<String>,
    marker: Option<String>,
}

async fn list(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let v = ApiVersion::of(&req);
    let q = web::Query::<ListQuery>::from_query(req.query_string())
        .map_err(|e| bad(format!("Invalid query: {e}")))?;
    let user = target_user(&ctx, v, q.user_id.as_deref())?;
    let (limit, marker) = if v.at_least(35) {
        let limit = match &q.limit {
            None => MAX_LIMIT,
            Some(s) => s
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| {
                    bad(format!(
                        "Invalid input for query parameters limit. Value: {s}."
                    ))
                })?
                .min(MAX_LIMIT),
        };
        (limit, q.marker.clone())
    } else {
        (i64::MAX, None)
    };
    if let Some(m) = &marker {
        if keypairs::get(&state.db, &user, m).await?.is_none() {
            return Err(bad(format!("marker [{m}] not found")));
        }
    }
    let found = keypairs::list(&state.db, &user, marker.as_deref(), limit).await?;
    let items: Vec<Value> = found
        .iter()
        .map(|k| json!({ "keypair": summary(k, v) }))
        .collect();
    let mut body = json!({ "keypairs": items });
    // As Nova: a `next` link when the page is full.
    if v.at_least(35) && i64::try_from(found.len()).unwrap_or(i64::MAX) == limit && limit > 0 {
        if let Some(last) = found.last() {
            let base = PublicUrl::of(&req).0;
            let mut next = format!("{base}/v2.1/os-keypairs?limit={limit}&marker={}", last.name);
            if user != ctx.user_id {
                next.push_str(&format!("&user_id={user}"));
            }
            body["keypairs_links"] = json!([{"rel": "next", "href": next}]);
        }
    }
    Ok(HttpResponse::Ok().json(body))
}

#[derive(serde::Deserialize)]
struct UserQuery {
    user_id: Option<String>,
}

fn user_query(req: &HttpRequest) -> ApiResult<Option<String>> {
    Ok(web::Query::<UserQuery>::from_query(req.query_string())
        .map_err(|e| bad(format!("Invalid query: {e}")))?
        .into_inner()
        .user_id)
}

async fn show(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let v = ApiVersion::of(&req);
    let user = target_user(&ctx, v, user_query(&req)?.as_deref())?;
    let k = keypairs::get(&state.db, &user, &name)
        .await?
        .ok_or_else(|| not_found(&name, &user))?;
    let mut out = summary(&k, v);
    out["user_id"] = json!(k.user_id);
    out["id"] = json!(k.id);
    out["created_at"] = json!(iso8601_naive_micros(k.created_at));
    out["updated_at"] = Value::Null;
    out["deleted_at"] = Value::Null;
    out["deleted"] = json!(false);
    Ok(HttpResponse::Ok().json(json!({ "keypair": out })))
}

async fn create(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    raw: web::Bytes,
) -> ApiResult<HttpResponse> {
    NOVA.require_write(&ctx, "os_compute_api:os-keypairs:create")?;
    let v = ApiVersion::of(&req);
    let body = api_toolkit::body::json(&raw)?;
    let k = body
        .get("keypair")
        .and_then(Value::as_object)
        .ok_or_else(|| {
            bad("Invalid input for field/attribute keypair. 'keypair' is a required property")
        })?;
    if let Some(extra) = body
        .as_object()
        .and_then(|o| o.keys().find(|k| *k != "keypair"))
    {
        return Err(api_toolkit::body::unexpected(extra));
    }
    for key in k.keys() {
        let allowed = matches!(key.as_str(), "name" | "public_key")
            || (key == "type" && v.at_least(2))
            || (key == "user_id" && v.at_least(10));
        if !allowed {
            return Err(bad(format!(
                "Invalid input for field/attribute keypair. Additional properties are not allowed ('{key}' was unexpected)"
            )));
        }
    }
    let name = k.get("name").and_then(Value::as_str).ok_or_else(|| {
        bad("Invalid input for field/attribute keypair. 'name' is a required property")
    })?;
    if !name_is_valid(name, v) {
        return Err(bad(format!(
            "Invalid input for field/attribute name. Value: {name}. Keypair name must be 1 to 255 characters of letters, digits, spaces, '_' and '-'{}.",
            if v.at_least(92) { ", '@' and '.'" } else { "" }
        )));
    }
    let key_type = match k.get("type") {
        None => "ssh",
        Some(Value::String(t)) if t == "ssh" => "ssh",
        Some(Value::String(t)) if t == "x509" => "x509",
        Some(other) => {
            return Err(bad(format!(
                "Invalid input for field/attribute type. Value: {other}. It must be one of ['ssh', 'x509']"
            )))
        }
    };
    let user = target_user(&ctx, v, k.get("user_id").and_then(Value::as_str))?;
    // The quota before any key is generated (an RSA key costs tens of milliseconds of CPU);
    // the insert checks it again, atomically.
    let limit = crate::quotas::check_keypair_create(&state.db, &ctx.project_id, &user).await?;
    let (public_key, private_key) = match k.get("public_key") {
        // Kept as given, trailing newline and all, as Nova keeps it.
        Some(Value::String(pk)) => (pk.clone(), None),
        Some(other) => {
            return Err(bad(format!(
            "Invalid input for field/attribute public_key. Value: {other}. is not of type 'string'"
        )))
        }
        None if v.at_least(92) => {
            return Err(bad(
                "Invalid input for field/attribute keypair. 'public_key' is a required property",
            ))
        }
        None if key_type == "x509" => {
            let subject = user.clone();
            let (public, private) = web::block(move || generate_x509(&subject))
                .await
                .map_err(|e| ApiError::Internal(format!("key generation: {e}")))?
                .map_err(|e| ApiError::Internal(format!("key generation: {e}")))?;
            (public, Some(private))
        }
        None => {
            let (public, private) = web::block(move || generate("Generated-by-Nova"))
                .await
                .map_err(|e| ApiError::Internal(format!("key generation: {e}")))??;
            (public, Some(private))
        }
    };
    let fingerprint = if key_type == "x509" {
        x509_fingerprint(&public_key)
    } else {
        fingerprint(&public_key)
    }
    .ok_or_else(|| bad("Keypair data is invalid: failed to generate fingerprint"))?;
    let stored = match keypairs::create_within_quota(
        &state.db,
        &user,
        name,
        key_type,
        &public_key,
        &fingerprint,
        limit,
    )
    .await?
    {
        keypairs::Created::Created(k) => k,
        keypairs::Created::NameTaken => {
            return Err(ApiError::Conflict(format!(
                "Key pair '{name}' already exists."
            )))
        }
        keypairs::Created::OverQuota => return Err(crate::quotas::keypair_quota_exceeded()),
    };
    let mut out = summary(&stored, v);
    out["user_id"] = json!(stored.user_id);
    if let Some(private) = private_key {
        out["private_key"] = json!(private);
    }
    let mut res = if v.at_least(2) {
        HttpResponse::Created()
    } else {
        HttpResponse::Ok()
    };
    Ok(res.json(json!({ "keypair": out })))
}

async fn delete(
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> ApiResult<HttpResponse> {
    NOVA.require_write(&ctx, "os_compute_api:os-keypairs:delete")?;
    let v = ApiVersion::of(&req);
    let user = target_user(&ctx, v, user_query(&req)?.as_deref())?;
    if !keypairs::delete(&state.db, &user, &name).await? {
        return Err(not_found(&name, &user));
    }
    Ok(if v.at_least(2) {
        HttpResponse::NoContent().finish()
    } else {
        HttpResponse::Accepted().finish()
    })
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/os-keypairs")
            .route(web::get().to(list))
            .route(web::post().to(create)),
    )
    .service(
        web::resource("/os-keypairs/{name}")
            .route(web::get().to(show))
            .route(web::delete().to(delete)),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fingerprints as `ssh-keygen -l -E md5` prints them, for each key type.
    #[test]
    fn fingerprints_match_ssh_keygen() {
        let cases = [
            (
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOrND+VXGisTsfa2ChfSWGukYJ/3CLC3kflkLOEQxhJT root@vm",
                "68:d0:61:50:21:d0:21:a9:a7:e6:7c:0f:af:55:75:90",
            ),
            (
                "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBIeF186RwM8KaCDtpGkupz1nQpBAbQAonnMT8Sug45X1C42G1S2GqNLLFcCffAxl0KiWh4iZkwYWb5QRiu15DaU= root@vm",
                "59:e2:c9:f5:5f:e4:75:ef:c8:b4:26:ae:35:c7:7e:cf",
            ),
            (
                "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQCmw7MHGqLzdUgaUVdzfShU0ONFy+c1EqjVh5+vmVdYoaktrH3ArYTZJg9EpkwoPY0WxLoIB+OUG7RLDwFNE2GRMi3Xzghd7341wTsdme9FzVQiJTkP/Uq/2tQ0QSJInn/n/aVxH9C7r2apqzLM3ySWTPV+QNBa10qAcSdtLrB4Aw== root@vm",
                "76:22:30:8d:27:8b:c4:76:3b:bd:65:dd:74:07:80:d1",
            ),
        ];
        for (key, expected) in cases {
            assert_eq!(fingerprint(key).as_deref(), Some(expected), "{key}");
        }
        assert_eq!(fingerprint("ssh-rsa not-base64"), None);
        assert_eq!(fingerprint("garbage"), None);
    }

    /// A generated key is a whole RSA 2048 key: its OpenSSH private key gives back the
    /// public key it came with, and OpenSSL finds its components consistent.
    #[test]
    fn a_generated_key_is_a_consistent_rsa_key() {
        use openssl::bn::{BigNum, BigNumContext};
        let (public, private) = generate("Generated-by-Nova").expect("a key");
        assert!(public.starts_with("ssh-rsa "), "{public}");
        assert!(fingerprint(&public).is_some());
        let parsed = ssh_key::PrivateKey::from_openssh(&private).expect("OpenSSH's format");
        assert_eq!(parsed.public_key().to_openssh().expect("a line"), public);
        let ssh_key::private::KeypairData::Rsa(rsa) = parsed.key_data() else {
            panic!("not RSA: {private}")
        };
        let bn = |m: &ssh_key::Mpint| {
            BigNum::from_slice(m.as_positive_bytes().expect("positive")).expect("a number")
        };
        let (n, e, d) = (bn(&rsa.public.n), bn(&rsa.public.e), bn(&rsa.private.d));
        let (p, q, iqmp) = (
            bn(&rsa.private.p),
            bn(&rsa.private.q),
            bn(&rsa.private.iqmp),
        );
        assert_eq!(n.num_bits(), 2048);
        let mut ctx = BigNumContext::new().expect("ctx");
        let one = BigNum::from_u32(1).expect("1");
        let exponent = |prime: &BigNum, ctx: &mut BigNumContext| {
            let mut minus_one = BigNum::new().expect("bn");
            minus_one.checked_sub(prime, &one).expect("p-1");
            let mut r = BigNum::new().expect("bn");
            r.nnmod(&d, &minus_one, ctx).expect("d mod p-1");
            r
        };
        let (dmp1, dmq1) = (exponent(&p, &mut ctx), exponent(&q, &mut ctx));
        let key = openssl::rsa::Rsa::from_private_components(n, e, d, p, q, dmp1, dmq1, iqmp)
            .expect("components");
        assert!(key.check_key().expect("checked"), "inconsistent RSA key");
    }

    #[test]
    fn names_follow_the_microversion() {
        assert!(name_is_valid("my key_1-a", ApiVersion(2, 1)));
        assert!(!name_is_valid("me@host.example", ApiVersion(2, 91)));
        assert!(name_is_valid("me@host.example", ApiVersion(2, 92)));
        assert!(!name_is_valid("", ApiVersion(2, 92)));
        assert!(!name_is_valid("a/b", ApiVersion(2, 92)));
    }
}
