//! The public URL that links in responses use: the configured one (behind a proxy the public
//! URL differs from the bind address), else the scheme and host the request came to.

use actix_web::HttpRequest;

/// Configured public base URL, without a trailing slash.
#[derive(Clone, Debug, Default)]
pub struct ConfiguredPublicUrl(pub Option<String>);

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

    /// `[self, bookmark]` links of a resource, as Nova builds them.
    pub fn links(&self, collection: &str, id: &str) -> serde_json::Value {
        serde_json::json!([
            {"rel": "self", "href": format!("{}/v2.1/{collection}/{id}", self.0)},
            {"rel": "bookmark", "href": format!("{}/{collection}/{id}", self.0)},
        ])
    }

    pub fn bookmark(&self, collection: &str, id: &str) -> serde_json::Value {
        serde_json::json!([{"rel": "bookmark", "href": format!("{}/{collection}/{id}", self.0)}])
    }
}
