//! How the command line reaches a running switch's operator routes (`[metrics]
//! listen`): an [`Endpoint`] is the address and the operator token read from
//! `[metrics] operator_token_file`, sent as `Authorization: Bearer TOKEN`. The routes
//! themselves are mounted by [`super::http`].

use std::net::SocketAddr;

use axum::http::header;

use crate::config::Config;

/// Where the command line reaches a running switch's operator routes.
pub struct Endpoint {
    addr: SocketAddr,
    token: Option<String>,
}

impl Endpoint {
    /// The endpoint of the switch that holds `config`'s data directory.
    pub fn of(config: &Config) -> Result<Endpoint, String> {
        let addr = config.metrics.listen.ok_or_else(|| {
            format!(
                "{} is in use by a running switch without a [metrics] listen address",
                config.data_dir.display()
            )
        })?;
        let token = config.metrics.operator_token()?;
        Ok(Endpoint { addr, token })
    }

    /// The URL of `path` (starting with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sends `body` (or nothing) to `path` with `method` and reads the JSON answer. An
    /// answer that is not a success but says `{"error": ...}` is a refusal; anything
    /// else that goes wrong names the URL.
    pub fn call<B: serde::Serialize, T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, Remote> {
        let url = self.url(path);
        let failed = |e: &dyn std::fmt::Display| Remote::Failed(format!("{url}: {e}"));
        let request = ureq::http::Request::builder()
            .method(method)
            .uri(&url)
            .header("content-type", "application/json");
        let request = match &self.token {
            Some(token) => {
                request.header(header::AUTHORIZATION.as_str(), format!("Bearer {token}"))
            }
            None => request,
        };
        let text = match body {
            Some(body) => serde_json::to_vec(body).map_err(|e| failed(&e))?,
            None => Vec::new(),
        };
        self.send(request.body(text).map_err(|e| failed(&e))?)
    }

    /// Sends a file's bytes to `path` with `POST` and reads the JSON answer, like
    /// [`Endpoint::call`]; `name` (header `X-File-Name`) is how the switch names the
    /// file in errors.
    pub fn upload<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        name: &str,
        bytes: Vec<u8>,
    ) -> Result<T, Remote> {
        let url = self.url(path);
        let request = ureq::http::Request::builder()
            .method("POST")
            .uri(&url)
            .header("content-type", "application/octet-stream")
            .header(FILE_NAME, name);
        let request = match &self.token {
            Some(token) => {
                request.header(header::AUTHORIZATION.as_str(), format!("Bearer {token}"))
            }
            None => request,
        };
        let request = request
            .body(bytes)
            .map_err(|e| Remote::Failed(format!("{url}: {e}")))?;
        self.send(request)
    }

    fn send<T: serde::de::DeserializeOwned>(
        &self,
        request: ureq::http::Request<Vec<u8>>,
    ) -> Result<T, Remote> {
        let url = request.uri().to_string();
        let failed = |e: &dyn std::fmt::Display| Remote::Failed(format!("{url}: {e}"));
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut response = agent.run(request).map_err(|e| failed(&e))?;
        let status = response.status();
        let text = (response.body_mut().read_to_string()).map_err(|e| failed(&e))?;
        if status.is_success() {
            return serde_json::from_str(&text).map_err(|e| failed(&e));
        }
        match serde_json::from_str::<Refusal>(&text) {
            Ok(refusal) if status.as_u16() == 422 => Err(Remote::BadInput(refusal.error)),
            Ok(refusal) => Err(Remote::Refused(refusal.error)),
            Err(_) => Err(failed(&format!("{status}: {text}"))),
        }
    }

    /// `request` with the operator token, when there is one.
    pub fn authorize<B>(&self, request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.token {
            Some(token) => {
                request.header(header::AUTHORIZATION.as_str(), format!("Bearer {token}"))
            }
            None => request,
        }
    }
}

/// The header naming an uploaded file.
pub const FILE_NAME: &str = "x-file-name";

/// What went wrong talking to a running switch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Remote {
    /// The switch refused, saying why.
    #[error("{0}")]
    Refused(String),
    /// The switch found the input bad (`422`), saying where.
    #[error("{0}")]
    BadInput(String),
    /// The switch could not be reached or answered something else.
    #[error("{0}")]
    Failed(String),
}

/// The body of a refusal: `{"error": "why"}`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Refusal {
    /// Why.
    pub error: String,
}
