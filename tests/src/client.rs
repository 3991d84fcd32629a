//! A small Compute API client, speaking as an OpenStack client does.

use serde_json::{json, Value};
use std::time::Duration;

/// A public disk image (bare/raw) every stack registers, for servers on VM nodes.
pub const IMAGE: &str = "70a599e0-31e7-49b7-b260-868f441e862b";
/// A public `docker` image every stack registers, for servers on container nodes.
pub const DOCKER_IMAGE: &str = "5c2d4e1e-9d4f-4a47-9d52-0c6b2b1a8f11";

#[derive(Clone)]
pub struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
    /// The compute microversion asked for (`OpenStack-API-Version: compute X.Y`); none: 2.1.
    microversion: Option<String>,
    /// More headers on every request.
    headers: Vec<(String, String)>,
}

/// A response: status and JSON body (`Null` when there is none).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Reply {
    /// A response's status, headers and JSON body (`null` when it has none).
    async fn read(res: reqwest::Response) -> anyhow::Result<Self> {
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let bytes = res.bytes().await?;
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)?
        };
        Ok(Self {
            status,
            body,
            headers,
        })
    }
}

impl Client {
    /// `token` is `user:project` (the noauth2 strategy).
    pub fn new(api_url: &str, token: &str) -> Self {
        Self {
            base: format!("{api_url}/v2.1"),
            token: token.to_owned(),
            microversion: None,
            headers: Vec::new(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .pool_max_idle_per_host(64)
                .build()
                .unwrap_or_default(),
        }
    }

    /// The same client asking for compute microversion `version`.
    pub fn at_microversion(&self, version: &str) -> Self {
        Self {
            microversion: Some(version.to_owned()),
            ..self.clone()
        }
    }

    /// The same client sending header `name: value` too.
    pub fn with_header(&self, name: &str, value: &str) -> Self {
        let mut headers = self.headers.clone();
        headers.push((name.to_owned(), value.to_owned()));
        Self {
            headers,
            ..self.clone()
        }
    }

    /// Sends a request to the compute API. Every response is checked against tempest's
    /// response schema for the microversion asked for ([`crate::schema`]); one that breaks it
    /// is an error.
    pub async fn raw(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<Reply> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .header("X-Auth-Token", &self.token)
            .header("Content-Type", "application/json")
            .header("Accept", "application/json");
        if let Some(v) = &self.microversion {
            req = req.header("OpenStack-API-Version", format!("compute {v}"));
        }
        for (name, value) in &self.headers {
            req = req.header(name, value);
        }
        let request: Option<Value> = body.as_deref().and_then(|b| serde_json::from_slice(b).ok());
        if let Some(b) = body {
            req = req.body(b);
        }
        let Reply {
            status,
            body,
            headers,
        } = Reply::read(req.send().await?).await?;
        // `latest` is checked as the version the service says it served.
        let served = headers
            .get("x-openstack-nova-api-version")
            .and_then(|v| v.to_str().ok());
        let version = match self.microversion.as_deref() {
            Some("latest") => served,
            asked => asked,
        };
        crate::schema::check(&crate::schema::Exchange {
            method: method.as_str(),
            path,
            version,
            status,
            headers: &headers,
            body: &body,
            request: request.as_ref(),
        })?;
        Ok(Reply {
            status,
            body,
            headers,
        })
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Reply> {
        self.raw(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Reply> {
        self.raw(reqwest::Method::POST, path, Some(serde_json::to_vec(body)?))
            .await
    }

    pub async fn put(&self, path: &str, body: &Value) -> anyhow::Result<Reply> {
        self.raw(reqwest::Method::PUT, path, Some(serde_json::to_vec(body)?))
            .await
    }

    pub async fn delete(&self, path: &str) -> anyhow::Result<Reply> {
        self.raw(reqwest::Method::DELETE, path, None).await
    }

    /// Creates a server from [`IMAGE`] and returns its id; fails unless the API answers 202.
    pub async fn create_server(&self, name: &str, flavor: &str) -> anyhow::Result<String> {
        self.create_server_from(name, flavor, IMAGE).await
    }

    pub async fn create_server_from(
        &self,
        name: &str,
        flavor: &str,
        image: &str,
    ) -> anyhow::Result<String> {
        let body = json!({"server": {"name": name, "imageRef": image, "flavorRef": flavor}});
        let r = self.post("/servers", &body).await?;
        anyhow::ensure!(r.status == 202, "create {name}: {} {}", r.status, r.body);
        r.body["server"]["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("no id in {}", r.body))
    }

    pub async fn server(&self, id: &str) -> anyhow::Result<Reply> {
        self.get(&format!("/servers/{id}")).await
    }

    /// Polls until the server shows `status` (or a terminal ERROR when another was wanted).
    pub async fn wait_status(
        &self,
        id: &str,
        status: &str,
        within: Duration,
    ) -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + within;
        let mut last = Value::Null;
        while tokio::time::Instant::now() < deadline {
            let r = self.server(id).await?;
            anyhow::ensure!(r.status == 200, "server {id}: {} {}", r.status, r.body);
            let s = r.body["server"]["status"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if s == status {
                return Ok(r.body["server"].clone());
            }
            if s == "ERROR" {
                anyhow::bail!(
                    "server {id} went to ERROR while waiting for {status}: {}",
                    r.body
                );
            }
            last = r.body;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("server {id} not {status} within {within:?}; last: {last}")
    }

    /// Polls until the server has no task running and returns it (a snapshot's server shows
    /// ACTIVE while its task still closes: an action then would meet Nova's 409).
    pub async fn wait_idle(&self, id: &str, within: Duration) -> anyhow::Result<Value> {
        let path = format!("/servers/{id}");
        crate::wait_until(within, "the task ended", || {
            let path = path.clone();
            async move {
                let r = self.get(&path).await?;
                Ok(r.body["server"]["OS-EXT-STS:task_state"].is_null())
            }
        })
        .await?;
        Ok(self.get(&path).await?.body["server"].clone())
    }

    /// Polls until the server is in ERROR and returns it.
    pub async fn wait_error(&self, id: &str, within: Duration) -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + within;
        while tokio::time::Instant::now() < deadline {
            let r = self.server(id).await?;
            if r.body["server"]["status"] == json!("ERROR") {
                return Ok(r.body["server"].clone());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("server {id} never reached ERROR within {within:?}")
    }

    /// Polls until the server is gone (404).
    pub async fn wait_gone(&self, id: &str, within: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + within;
        while tokio::time::Instant::now() < deadline {
            let r = self.server(id).await?;
            if r.status == 404 {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("server {id} still there after {within:?}")
    }

    pub async fn action(&self, id: &str, body: &Value) -> anyhow::Result<Reply> {
        self.post(&format!("/servers/{id}/action"), body).await
    }

    /// Sends a request to the networking service (`path` under `/network/v2.0`). tempest has
    /// no response schemas for it; the tests check its bodies themselves.
    pub async fn networking(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Reply> {
        let url = format!("{}/network/v2.0{path}", self.base.trim_end_matches("/v2.1"));
        let mut req = self
            .http
            .request(method, url)
            .header("X-Auth-Token", &self.token)
            .header("Accept", "application/json");
        if let Some(body) = body {
            req = req.json(body);
        }
        Reply::read(req.send().await?).await
    }

    /// Creates a network (as an admin may) and returns its id; fails unless the service
    /// answers 201.
    pub async fn create_network(&self, network: Value) -> anyhow::Result<String> {
        let r = self
            .networking(
                reqwest::Method::POST,
                "/networks",
                Some(&json!({ "network": network })),
            )
            .await?;
        anyhow::ensure!(r.status == 201, "network create: {} {}", r.status, r.body);
        r.body["network"]["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("no id in {}", r.body))
    }

    /// Creates an IPv4 subnet of `cidr` on a network; returns the subnet's view.
    pub async fn create_subnet(&self, network: &str, cidr: &str) -> anyhow::Result<Value> {
        let body = json!({"subnet": {"network_id": network, "ip_version": 4, "cidr": cidr}});
        let r = self
            .networking(reqwest::Method::POST, "/subnets", Some(&body))
            .await?;
        anyhow::ensure!(r.status == 201, "subnet create: {} {}", r.status, r.body);
        Ok(r.body["subnet"].clone())
    }

    /// The image service's document of an image (`null` body when it is not found).
    pub async fn image(&self, id: &str) -> anyhow::Result<Reply> {
        let url = format!(
            "{}/image/v2/images/{id}",
            self.base.trim_end_matches("/v2.1")
        );
        let res = self
            .http
            .get(url)
            .header("X-Auth-Token", &self.token)
            .send()
            .await?;
        Reply::read(res).await
    }

    /// Changes an image through the image service: `ops`, a JSON patch (200 expected).
    pub async fn patch_image(&self, id: &str, ops: Value) -> anyhow::Result<Value> {
        let url = format!(
            "{}/image/v2/images/{id}",
            self.base.trim_end_matches("/v2.1")
        );
        let res = self
            .http
            .patch(url)
            .header("X-Auth-Token", &self.token)
            .header(
                "Content-Type",
                "application/openstack-images-v2.1-json-patch",
            )
            .body(ops.to_string())
            .send()
            .await?;
        let r = Reply::read(res).await?;
        anyhow::ensure!(r.status == 200, "image patch: {} {}", r.status, r.body);
        Ok(r.body)
    }

    /// Deletes an image through the image service (204 expected).
    pub async fn delete_image(&self, id: &str) -> anyhow::Result<()> {
        let url = format!(
            "{}/image/v2/images/{id}",
            self.base.trim_end_matches("/v2.1")
        );
        let res = self
            .http
            .delete(url)
            .header("X-Auth-Token", &self.token)
            .send()
            .await?;
        anyhow::ensure!(res.status() == 204, "image delete: {}", res.status());
        Ok(())
    }

    /// Polls until the image has `status`.
    pub async fn wait_image_status(
        &self,
        id: &str,
        status: &str,
        within: Duration,
    ) -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + within;
        let mut last = Value::Null;
        while tokio::time::Instant::now() < deadline {
            let r = self.image(id).await?;
            if r.body["status"] == json!(status) {
                return Ok(r.body);
            }
            last = r.body;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("image {id} not {status} within {within:?}; last: {last}")
    }

    /// Creates an image in the image service and uploads `data`; returns its id.
    pub async fn create_image(
        &self,
        name: &str,
        container_format: &str,
        disk_format: &str,
        data: Vec<u8>,
    ) -> anyhow::Result<String> {
        self.create_image_with(name, container_format, disk_format, json!({}), data)
            .await
    }

    /// [`Self::create_image`] with more of the image's fields and properties (`extra`, an
    /// object) in its create.
    pub async fn create_image_with(
        &self,
        name: &str,
        container_format: &str,
        disk_format: &str,
        extra: Value,
        data: Vec<u8>,
    ) -> anyhow::Result<String> {
        let images = format!("{}/image/v2/images", self.base.trim_end_matches("/v2.1"));
        let mut body = json!({"name": name, "container_format": container_format,
                              "disk_format": disk_format});
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        let res = self
            .http
            .post(&images)
            .header("X-Auth-Token", &self.token)
            .json(&body)
            .send()
            .await?;
        anyhow::ensure!(res.status() == 201, "image create: {}", res.status());
        let doc: Value = res.json().await?;
        let id = doc["id"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("no id in {doc}"))?
            .to_owned();
        let res = self
            .http
            .put(format!("{images}/{id}/file"))
            .header("X-Auth-Token", &self.token)
            .header("Content-Type", "application/octet-stream")
            .body(data)
            .send()
            .await?;
        anyhow::ensure!(res.status() == 204, "image upload: {}", res.status());
        Ok(id)
    }
}

/// A project-scoped token by password (users and projects of the `default` domain), from the
/// identity API at `api_url/identity/v3`.
pub async fn password_token(
    api_url: &str,
    user: &str,
    password: &str,
    project: &str,
) -> anyhow::Result<String> {
    let body = json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": user, "domain": {"id": "default"}, "password": password}}},
        "scope": {"project": {"name": project, "domain": {"id": "default"}}}}});
    let res = reqwest::Client::new()
        .post(format!("{api_url}/identity/v3/auth/tokens"))
        .json(&body)
        .send()
        .await?;
    anyhow::ensure!(
        res.status().as_u16() == 201,
        "token for {user}: {}",
        res.status()
    );
    Ok(res.headers()["X-Subject-Token"].to_str()?.to_owned())
}

/// One request to any of the deployment's APIs (identity, image, …) with `token`, and a JSON
/// body when given: its status and its JSON answer (`null` when it has none). For the APIs
/// the compute [`Client`] does not check against a schema.
pub async fn send_json(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: &str,
    body: Option<Value>,
) -> anyhow::Result<(u16, Value)> {
    let mut req = http.request(method, url).header("X-Auth-Token", token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await?;
    let status = res.status().as_u16();
    Ok((status, res.json::<Value>().await.unwrap_or(Value::Null)))
}
