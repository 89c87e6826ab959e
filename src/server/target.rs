//! What a request's URL names: the namespace owner, the path inside it, the version.
//!
//! The path is taken raw from the URI and percent-decoded one component at a time, so
//! an encoded `/` (`%2F`) can never create or hide a separator; the decoded result is
//! then validated by [`RelPath::parse`]. Anything refused is a 400 before the store is
//! touched.

use percent_encoding::percent_decode_str;

use super::error::ApiError;
use crate::names::{RelPath, UserName};
use crate::store::Digest;

/// Splits `<user>/<rest>` (what follows a route's prefix) into the owner and the raw,
/// still-encoded rest (empty when there is none).
pub fn split_owner(raw: &str) -> Result<(UserName, &str), ApiError> {
    let (user, rest) = raw.split_once('/').unwrap_or((raw, ""));
    let user = decode_component(user)?;
    Ok((UserName::parse(&user)?, rest))
}

/// A file path from its raw, percent-encoded form.
pub fn file_path(raw: &str) -> Result<RelPath, ApiError> {
    Ok(RelPath::parse(&decode_path(raw)?)?)
}

/// A folder path from its raw form; empty (or `/`) is the namespace's root.
pub fn dir_path(raw: &str) -> Result<Option<RelPath>, ApiError> {
    Ok(RelPath::parse_dir(&decode_path(raw)?)?)
}

fn decode_path(raw: &str) -> Result<String, ApiError> {
    let parts = raw
        .split('/')
        .map(decode_component)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(parts.join("/"))
}

fn decode_component(raw: &str) -> Result<String, ApiError> {
    let decoded = percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| ApiError::bad_request("the path is not valid UTF-8 after decoding"))?;
    if decoded.contains('/') {
        return Err(ApiError::bad_request(
            "the path contains an encoded '/' (%2F) inside a name; use a plain '/' between folders",
        ));
    }
    Ok(decoded.into_owned())
}

/// The `sha256=<hex>` query parameter, if present.
pub fn sha256_query(query: Option<&str>) -> Result<Option<Digest>, ApiError> {
    let Some(query) = query else { return Ok(None) };
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key == "sha256" {
            let value = percent_decode_str(value).decode_utf8_lossy();
            return Ok(Some(value.parse()?));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_and_paths() {
        let (owner, rest) = split_owner("asdf/Documents/New%20folder/a%20(1).docx").unwrap();
        assert_eq!(owner.as_str(), "asdf");
        assert_eq!(
            file_path(rest).unwrap().as_str(),
            "Documents/New folder/a (1).docx"
        );
        assert_eq!(split_owner("asdf").unwrap().1, "");
        assert!(split_owner("..").is_err());
        assert!(split_owner("a%2Fb/x").is_err());
        assert_eq!(
            file_path("%C3%9Cbung/%E6%97%A5.txt").unwrap().as_str(),
            "Übung/日.txt"
        );
    }

    #[test]
    fn hostile_paths() {
        for raw in [
            "",
            "..",
            "%2e%2e",
            "%2E%2E/x",
            "a/%2e/b",
            "a/./b",
            "/abs",
            "a//b",
            "a/",
            "a%2Fb",
            "..%2F..%2Fetc",
            "a%00b",
            "a%0Ab",
            "a%5Cb",
            "%FF",
        ] {
            assert!(file_path(raw).is_err(), "{raw:?}");
        }
    }

    #[test]
    fn dirs() {
        assert_eq!(dir_path("").unwrap(), None);
        assert_eq!(dir_path("a/b/").unwrap().unwrap().as_str(), "a/b");
        assert!(dir_path("%2e%2e").is_err());
    }

    #[test]
    fn query() {
        let d = Digest::of(b"x");
        assert_eq!(sha256_query(None).unwrap(), None);
        assert_eq!(sha256_query(Some("a=1")).unwrap(), None);
        assert_eq!(
            sha256_query(Some(&format!("a=1&sha256={d}"))).unwrap(),
            Some(d)
        );
        assert!(sha256_query(Some("sha256=zz")).is_err());
    }
}
