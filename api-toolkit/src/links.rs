//! Links in responses: the public URL they start from — the configured one (behind a proxy the
//! public URL differs from the bind address), else the scheme and host the request came to —
//! and the link to a listing's next page.

use actix_web::HttpRequest;

/// Configured public base URL, without a trailing slash (app data).
#[derive(Clone, Debug, Default)]
pub struct ConfiguredPublicUrl(pub Option<String>);

/// The base URL links of this request start with.
pub struct PublicUrl(pub String);

impl PublicUrl {
    pub fn of(req: &HttpRequest) -> Self {
        if let Some(url) = req
            .app_data::<ConfiguredPublicUrl>()
            .and_then(|c| c.0.clone())
        {
            return Self(url.trim_end_matches('/').to_owned());
        }
        let info = req.connection_info();
        Self(format!("{}://{}", info.scheme(), info.host()))
    }
}

/// The URL of the next page of a listing at `path` (under the public URL): the request's own
/// query without the keys in `drop`, then `add` in order — so that the next page keeps the
/// filters and sorting of this one.
pub fn next_page(req: &HttpRequest, path: &str, drop: &[&str], add: &[(&str, &str)]) -> String {
    let base = PublicUrl::of(req).0;
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (k, v) in form_urlencoded::parse(req.query_string().as_bytes()) {
        if !drop.contains(&k.as_ref()) {
            query.append_pair(&k, &v);
        }
    }
    for (k, v) in add {
        query.append_pair(k, v);
    }
    format!("{base}{path}?{}", query.finish())
}
