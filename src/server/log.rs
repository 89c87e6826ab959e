//! One log line per request: user, method, path, status, bytes in and out, and
//! milliseconds until the response body was fully sent (or abandoned).
//!
//! Never logged: the `Authorization` header, passwords, the query string (it carries
//! hashes) and request or response bodies.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Frame, SizeHint};

/// Where sign-in records who made the request, for the log line.
#[derive(Clone, Default)]
pub struct LogUser(Arc<OnceLock<String>>);

impl LogUser {
    pub fn set(&self, name: &str) {
        let _ = self.0.set(name.to_owned());
    }
}

/// Middleware: counts the bytes of both bodies and logs once the response is done.
pub async fn log_requests(mut req: Request, next: Next) -> Response {
    let start = Instant::now();
    let user = LogUser::default();
    req.extensions_mut().insert(user.clone());
    let received = Arc::new(AtomicU64::new(0));
    let method = req.method().clone();
    // The path only: the query string may carry a hash.
    let path = req.uri().path().to_owned();
    let req = req.map(|body| {
        Body::new(Counted {
            inner: body,
            on_frame: CountIn(received.clone()),
        })
    });
    let response = next.run(req).await;
    let line = Line {
        start,
        user,
        method,
        path,
        status: response.status(),
        received,
        sent: 0,
        done: false,
    };
    response.map(|body| {
        Body::new(Counted {
            inner: body,
            on_frame: line,
        })
    })
}

/// A body that reports each data frame and its own end (or drop) to `on_frame`.
struct Counted<F: Observe> {
    inner: Body,
    on_frame: F,
}

trait Observe: Unpin {
    fn data(&mut self, len: u64);
    fn end(&mut self) {}
}

struct CountIn(Arc<AtomicU64>);

impl Observe for CountIn {
    fn data(&mut self, len: u64) {
        self.0.fetch_add(len, Ordering::Relaxed);
    }
}

struct Line {
    start: Instant,
    user: LogUser,
    method: Method,
    path: String,
    status: StatusCode,
    received: Arc<AtomicU64>,
    sent: u64,
    done: bool,
}

impl Observe for Line {
    fn data(&mut self, len: u64) {
        self.sent += len;
    }

    fn end(&mut self) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let user = self.user.0.get().map(String::as_str).unwrap_or("-");
        let ms = self.start.elapsed().as_millis() as u64;
        let bytes_in = self.received.load(Ordering::Relaxed);
        let status = self.status.as_u16();
        if self.status.is_server_error() {
            tracing::warn!(user = %user, method = %self.method, path = %self.path, status, bytes_in, bytes_out = self.sent, ms, "request");
        } else {
            tracing::info!(user = %user, method = %self.method, path = %self.path, status, bytes_in, bytes_out = self.sent, ms, "request");
        }
    }
}

impl<F: Observe> Drop for Counted<F> {
    fn drop(&mut self) {
        self.on_frame.end();
    }
}

impl<F: Observe> HttpBody for Counted<F> {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.on_frame.data(data.len() as u64);
                }
            }
            Poll::Ready(None) => this.on_frame.end(),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
