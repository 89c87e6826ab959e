//! The shared HTTP machinery behind [`super::Remote`] and [`super::HttpUploader`]: one
//! reqwest client (connection reuse, rustls, an optional extra CA), its own small tokio
//! runtime so callers can stay blocking, URL building and error mapping.

use std::time::Duration;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::StatusCode;

use super::{ClientError, ConnectConfig};
use crate::names::{RelPath, UserName};
use crate::store::Digest;

/// Everything but RFC 3986 unreserved characters is encoded inside a path component.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest silence while reading an answer; a big upload's answer waits for the server's
/// fsync, so this is generous.
pub(crate) const READ_TIMEOUT: Duration = Duration::from_secs(120);
/// Whole-request limit for small requests (HEAD, listings, health).
pub(crate) const SMALL_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) struct Http {
    rt: tokio::runtime::Runtime,
    pub(crate) client: reqwest::Client,
    /// Base URL without a trailing slash, as the user gave it (for messages too).
    pub(crate) server: String,
    pub(crate) user: UserName,
    password: String,
}

impl Http {
    pub(crate) fn new(cfg: &ConnectConfig) -> Result<Self, ClientError> {
        let url = reqwest::Url::parse(&cfg.server).map_err(|e| {
            ClientError::Config(format!("{:?} is not a server URL: {e}", cfg.server))
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ClientError::Config(format!(
                "{:?}: the server URL must start with http:// or https://",
                cfg.server
            )));
        }
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .user_agent(concat!("ects/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &cfg.ca_file {
            let pem = std::fs::read(ca).map_err(|e| {
                ClientError::Config(format!("cannot read the CA file {}: {e}", ca.display()))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                ClientError::Config(format!(
                    "the CA file {} is not a PEM certificate: {e}",
                    ca.display()
                ))
            })?;
            if certs.is_empty() {
                return Err(ClientError::Config(format!(
                    "the CA file {} holds no PEM certificate",
                    ca.display()
                )));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder
            .build()
            .map_err(|e| ClientError::Config(format!("cannot set up the HTTP client: {e}")))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ects-http")
            .enable_all()
            .build()
            .map_err(|e| ClientError::Io {
                context: "starting the HTTP client's runtime".into(),
                source: e,
            })?;
        Ok(Self {
            rt,
            client,
            server: cfg.server.trim_end_matches('/').to_owned(),
            user: cfg.user.clone(),
            password: cfg.password.clone(),
        })
    }

    /// Runs a future to completion on the calling thread (which must not be async).
    pub(crate) fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.rt.handle().block_on(f)
    }

    /// `{server}/api/v1/{kind}/{user}/{path}` with every component percent-encoded.
    pub(crate) fn url(&self, kind: &str, path: Option<&RelPath>) -> String {
        let mut url = format!(
            "{}/api/v1/{kind}/{}/",
            self.server,
            encode(self.user.as_str())
        );
        if let Some(path) = path {
            url.push_str(&encode_path(path));
        }
        url
    }

    pub(crate) fn file_url(&self, path: &RelPath, sha: Option<&Digest>) -> String {
        let mut url = self.url("files", Some(path));
        if let Some(sha) = sha {
            url.push_str("?sha256=");
            url.push_str(&sha.to_hex());
        }
        url
    }

    pub(crate) fn health_url(&self) -> String {
        format!("{}/api/v1/health", self.server)
    }

    pub(crate) fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, url)
            .basic_auth(self.user.as_str(), Some(&self.password))
    }

    /// Maps a transport error to a person's message.
    pub(crate) fn transport_error(&self, e: &reqwest::Error) -> ClientError {
        ClientError::Unreachable {
            server: self.server.clone(),
            reason: super::words::transport_failure(&self.server, &describe(e)),
        }
    }

    /// Maps a non-success answer (its status and body) to an error.
    pub(crate) fn status_error(&self, status: StatusCode, body: &str) -> ClientError {
        let message = error_message(status, body);
        let server = self.server.clone();
        match status.as_u16() {
            401 => ClientError::Auth {
                server,
                user: self.user.to_string(),
            },
            403 => ClientError::Forbidden { server, message },
            404 => ClientError::NotFound,
            s if s >= 500 => ClientError::Server {
                server,
                status: s,
                message,
            },
            s => ClientError::Refused {
                server,
                status: s,
                message,
            },
        }
    }
}

pub(crate) fn encode(component: &str) -> String {
    utf8_percent_encode(component, COMPONENT).to_string()
}

pub(crate) fn encode_path(path: &RelPath) -> String {
    path.components().map(encode).collect::<Vec<_>>().join("/")
}

/// The server's `{"error": "..."}` text, else a short form of the body, else the reason.
pub(crate) fn error_message(status: StatusCode, body: &str) -> String {
    if let Ok(b) = serde_json::from_str::<crate::api::ErrorBody>(body) {
        return b.error;
    }
    let text: String = body.trim().chars().take(200).collect();
    if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("no reason given")
            .to_owned()
    } else {
        text
    }
}

/// The innermost cause of a reqwest error, which is what a person can act on
/// ("Connection refused", "dns error", "certificate verify failed").
pub(crate) fn describe(e: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    if e.is_timeout() {
        parts.push("timed out".into());
    } else if e.is_connect() {
        parts.push("could not connect".into());
    }
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    let mut last = None;
    while let Some(s) = source {
        last = Some(s.to_string());
        source = s.source();
    }
    match last {
        Some(l) => parts.push(l),
        None => parts.push(e.to_string()),
    }
    parts.dedup();
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_encode_each_component() {
        let cfg = ConnectConfig::new(
            "http://h:1/base/",
            UserName::parse("a.b").unwrap(),
            "x".into(),
        );
        let http = Http::new(&cfg).unwrap();
        let p = RelPath::parse("New folder/Übung [1]/a?b#c%d.txt").unwrap();
        assert_eq!(
            http.file_url(&p, None),
            "http://h:1/base/api/v1/files/a.b/New%20folder/%C3%9Cbung%20%5B1%5D/a%3Fb%23c%25d.txt"
        );
        let sha = Digest::of(b"");
        assert!(
            http.file_url(&p, Some(&sha))
                .ends_with(&format!("?sha256={sha}"))
        );
        assert_eq!(http.url("tree", None), "http://h:1/base/api/v1/tree/a.b/");
        assert_eq!(http.health_url(), "http://h:1/base/api/v1/health");
    }

    #[test]
    fn bad_urls_and_ca_files_are_config_errors() {
        let u = UserName::parse("a").unwrap();
        assert!(matches!(
            Http::new(&ConnectConfig::new("ftp://x", u.clone(), String::new())),
            Err(ClientError::Config(_))
        ));
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "not a certificate").unwrap();
        let mut cfg = ConnectConfig::new("https://x", u, String::new());
        cfg.ca_file = Some(ca);
        let e = Http::new(&cfg).err().unwrap().to_string();
        assert!(e.contains("CA file"), "{e}");
    }

    #[test]
    fn error_messages() {
        assert_eq!(
            error_message(StatusCode::CONFLICT, r#"{"error":"a is a folder"}"#),
            "a is a folder"
        );
        assert_eq!(error_message(StatusCode::BAD_GATEWAY, ""), "Bad Gateway");
        assert_eq!(error_message(StatusCode::BAD_GATEWAY, " oops "), "oops");
    }
}
