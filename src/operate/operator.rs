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
