//! Refusals whose request body was never read still reach HTTP/2 clients whole.
//!
//! A handler that refuses early (401, 400, 413, 415…) drops the request body unread.
//! Over HTTP/2, dropping it while the response is still unsent makes h2 reset the
//! stream with CANCEL, and clients report "Stream error in the HTTP/2 framing layer"
//! instead of our status and JSON reason. So the dropped body is parked, and:
//! - a small rest (at most [`DRAIN_BYTES`], within [`DRAIN_TIME`], pauses at most
//!   [`DRAIN_IDLE`]) is read and discarded
//!   before the refusal is sent: the client finishes its request normally;
//! - a larger one is dropped only after the response's last frame is queued, when h2
//!   resets with NO_ERROR, which RFC 9113 §8.1 says clients must accept after a
//!   complete response (some older clients still report an error then).
//!
//! Over HTTP/1 this layer does nothing: hyper closes or drains the connection itself,
//! and a refused body is never read.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Frame, SizeHint};

/// Where a request body goes when its handler drops it.
type Parked = Arc<Mutex<Option<Body>>>;

/// The most of a refused body read and discarded so the request can end normally.
pub const DRAIN_BYTES: u64 = 1 << 20;
/// How long reading that rest may take.
pub const DRAIN_TIME: Duration = Duration::from_secs(5);
/// A client that pauses this long while its rest is read is not waited for: a stalled
/// client gets its refusal at once.
pub const DRAIN_IDLE: Duration = Duration::from_millis(500);

/// Middleware: parks the request body on drop; the response body releases it.
pub async fn keep_request_body(req: Request, next: Next) -> Response {
    // HTTP/1 handles an unread body itself (drains or closes the connection).
    if req.version() != axum::http::Version::HTTP_2 {
        return next.run(req).await;
    }
    let parked: Parked = Arc::default();
    let req = req.map(|body| {
        Body::new(Parking {
            inner: Some(body),
            parked: parked.clone(),
        })
    });
    let response = next.run(req).await;
    // A 408 means the client stopped sending: waiting for the rest would be pointless.
    let status = response.status();
    if !status.is_success() && status != axum::http::StatusCode::REQUEST_TIMEOUT {
        let unread = crate::sync::lock(&parked).take();
        if let Some(body) = unread
            && let Some(rest) = drain(body).await
        {
            *crate::sync::lock(&parked) = Some(rest);
        }
    }
    response.map(|body| {
        Body::new(Releasing {
            inner: body,
            _parked: parked,
        })
    })
}

/// Reads and discards a refused body's rest; gives it back if it is too long (as
/// declared or as sent) or too slow.
async fn drain(mut body: Body) -> Option<Body> {
    if body.size_hint().lower() > DRAIN_BYTES {
        return Some(body);
    }
    let mut read = 0u64;
    let finished = tokio::time::timeout(DRAIN_TIME, async {
        loop {
            let next = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx));
            let Ok(next) = tokio::time::timeout(DRAIN_IDLE, next).await else {
                return false;
            };
            let Some(Ok(frame)) = next else { return true };
            read += frame.data_ref().map_or(0, |d| d.len() as u64);
            if read > DRAIN_BYTES {
                return false;
            }
        }
    })
    .await;
    match finished {
        Ok(true) => None,
        _ => Some(body),
    }
}

/// The request body as the handler sees it.
struct Parking {
    inner: Option<Body>,
    parked: Parked,
}

impl Drop for Parking {
    fn drop(&mut self) {
        if let Some(body) = self.inner.take().filter(|b| !b.is_end_stream()) {
            *crate::sync::lock(&self.parked) = Some(body);
        }
    }
}

impl HttpBody for Parking {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        match self.get_mut().inner.as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), HttpBody::size_hint)
    }
}

/// The response body; dropping it (after its last frame) drops the parked request
/// body. Fields drop in order: the response first.
struct Releasing {
    inner: Body,
    _parked: Parked,
}

impl HttpBody for Releasing {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
