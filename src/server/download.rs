//! Sending versions: conditional requests (ETag / If-None-Match), single byte ranges,
//! and a body streamed in chunks from the blocking store.

use std::io::{self, Read, SeekFrom};

use axum::body::{Body, Bytes};
use axum::http::HeaderMap;
use axum::http::header;

use crate::store::{Digest, VersionRead};

const CHUNK: usize = 256 * 1024;

/// `Content-Disposition: attachment` naming the file: an ASCII fallback plus the exact
/// UTF-8 name (RFC 6266 / RFC 8187), so browsers save stored content, never show it.
pub fn attachment(name: &str) -> axum::http::HeaderValue {
    let fallback: String = name
        .chars()
        .map(|c| match c {
            ' '..='~' if !matches!(c, '"' | '\\' | '%' | ';') => c,
            _ => '_',
        })
        .collect();
    let exact = percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC);
    let value = format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{exact}");
    axum::http::HeaderValue::from_str(&value)
        .unwrap_or_else(|_| axum::http::HeaderValue::from_static("attachment"))
}

/// The strong entity tag of a version: its hash, quoted.
pub fn etag(digest: &Digest) -> String {
    format!("\"{digest}\"")
}

/// Whether `If-None-Match` matches this version (so the answer is 304).
pub fn not_modified(headers: &HeaderMap, digest: &Digest) -> bool {
    let tag = etag(digest);
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim())
        .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == tag)
}

/// What part of a version to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ranged {
    /// The whole version (no Range, or one this server ignores as RFC 9110 allows:
    /// malformed, several ranges, or an `If-Range` that does not match).
    Full,
    /// `start..=end`, both within the version.
    Part { start: u64, end: u64 },
    /// Nothing of the version is in the range: 416.
    Unsatisfiable,
}

/// Reads a `Range: bytes=…` header against a version of `size` bytes.
pub fn range(headers: &HeaderMap, size: u64, digest: &Digest) -> Ranged {
    let Some(value) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Ranged::Full;
    };
    if let Some(if_range) = headers.get(header::IF_RANGE)
        && if_range.to_str().ok().map(str::trim) != Some(etag(digest).as_str())
    {
        return Ranged::Full;
    }
    parse_range(value, size)
}

fn parse_range(value: &str, size: u64) -> Ranged {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Ranged::Full;
    };
    if spec.contains(',') {
        return Ranged::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Ranged::Full;
    };
    let (first, last) = (first.trim(), last.trim());
    let number = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    if first.is_empty() {
        // bytes=-N: the last N bytes.
        return match number(last) {
            None => Ranged::Full,
            Some(0) => Ranged::Unsatisfiable,
            Some(_) if size == 0 => Ranged::Unsatisfiable,
            Some(n) => Ranged::Part {
                start: size - n.min(size),
                end: size - 1,
            },
        };
    }
    let Some(start) = number(first) else {
        return Ranged::Full;
    };
    let end = if last.is_empty() {
        None
    } else {
        match number(last) {
            Some(end) if end >= start => Some(end),
            _ => return Ranged::Full,
        }
    };
    if start >= size {
        return Ranged::Unsatisfiable;
    }
    Ranged::Part {
        start,
        end: end.map_or(size - 1, |e| e.min(size - 1)),
    }
}

/// Streams `len` bytes from `start` of `reader`, reading on a blocking thread and
/// handing over one chunk at a time; stops as soon as the client goes away.
pub fn stream(mut reader: Box<dyn VersionRead>, start: u64, len: u64) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        if let Err(e) = reader.seek(SeekFrom::Start(start)) {
            let _ = tx.blocking_send(Err(e));
            return;
        }
        let mut left = len;
        while left > 0 {
            let mut buf = vec![0u8; CHUNK.min(usize::try_from(left).unwrap_or(CHUNK))];
            let item = match reader.read(&mut buf) {
                Ok(0) => Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the stored version is shorter than its size",
                )),
                Ok(n) => {
                    buf.truncate(n);
                    left -= n as u64;
                    Ok(Bytes::from(buf))
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
            let failed = item.is_err();
            if let Err(ref e) = item {
                tracing::error!(error = %e, "reading a stored version failed while sending it");
            }
            if tx.blocking_send(item).is_err() || failed {
                return;
            }
        }
    });
    Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let part = |start, end| Ranged::Part { start, end };
        let cases = [
            ("bytes=0-0", 10, part(0, 0)),
            ("bytes=2-5", 10, part(2, 5)),
            ("bytes=2-", 10, part(2, 9)),
            ("bytes=5-100", 10, part(5, 9)),
            ("bytes=-3", 10, part(7, 9)),
            ("bytes=-30", 10, part(0, 9)),
            ("bytes=10-", 10, Ranged::Unsatisfiable),
            ("bytes=10-20", 10, Ranged::Unsatisfiable),
            ("bytes=-0", 10, Ranged::Unsatisfiable),
            ("bytes=0-", 0, Ranged::Unsatisfiable),
            ("bytes=-5", 0, Ranged::Unsatisfiable),
            ("bytes=5-2", 10, Ranged::Full),
            ("bytes=0-1,3-4", 10, Ranged::Full),
            ("items=0-1", 10, Ranged::Full),
            ("bytes=x-1", 10, Ranged::Full),
            ("bytes=-", 10, Ranged::Full),
            ("bytes=+1-2", 10, Ranged::Full),
        ];
        for (value, size, want) in cases {
            assert_eq!(parse_range(value, size), want, "{value} of {size}");
        }
    }

    #[test]
    fn attachments() {
        let v = attachment("<img src=x onerror=alert(1)>\"ü;.html");
        let v = v.to_str().unwrap();
        assert!(v.starts_with("attachment; filename=\"<img src=x onerror=alert(1)>___.html\""));
        assert!(v.contains("filename*=UTF-8''%3Cimg%20src%3Dx"));
        assert!(v.ends_with("%C3%BC%3B%2Ehtml"), "{v}");
    }

    #[test]
    fn conditional() {
        let d = Digest::of(b"x");
        let mut h = HeaderMap::new();
        assert!(!not_modified(&h, &d));
        h.insert(header::IF_NONE_MATCH, "\"abc\", W/".parse().unwrap());
        assert!(!not_modified(&h, &d));
        h.insert(
            header::IF_NONE_MATCH,
            format!("\"abc\", {}", etag(&d)).parse().unwrap(),
        );
        assert!(not_modified(&h, &d));
        h.insert(header::IF_NONE_MATCH, "*".parse().unwrap());
        assert!(not_modified(&h, &d));

        let mut h = HeaderMap::new();
        h.insert(header::RANGE, "bytes=1-2".parse().unwrap());
        assert_eq!(range(&h, 5, &d), Ranged::Part { start: 1, end: 2 });
        h.insert(header::IF_RANGE, "\"other\"".parse().unwrap());
        assert_eq!(range(&h, 5, &d), Ranged::Full);
        h.insert(header::IF_RANGE, etag(&d).parse().unwrap());
        assert_eq!(range(&h, 5, &d), Ranged::Part { start: 1, end: 2 });
    }
}
