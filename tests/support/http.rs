//! Talking to a test server over HTTP.

use std::time::Duration;

use super::server::TestServer;
use super::store::sha256_hex;

/// A blocking HTTP client with a bound generous enough for a loaded machine.
pub fn http_client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("building an HTTP client")
}

/// A namespace path as the API wants it: each component percent-encoded.
pub fn encode_path(path: &str) -> String {
    path.split('/')
        .map(|c| {
            percent_encoding::utf8_percent_encode(c, percent_encoding::NON_ALPHANUMERIC).to_string()
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Stores `body` as a version of `user`'s `path` through the API; panics unless 2xx.
pub fn put_version(server: &TestServer, user: &str, password: &str, path: &str, body: &[u8]) {
    let r = http_client()
        .put(server.at(&format!("/api/v1/files/{user}/{}", encode_path(path))))
        .basic_auth(user, Some(password))
        .header("X-Content-SHA256", sha256_hex(body))
        .body(body.to_vec())
        .send()
        .expect("PUT");
    assert!(r.status().is_success(), "{}", r.text().unwrap_or_default());
}
