//! Connection-level guards against clients that hold connections open (slowloris): a
//! cap on open connections per client address (over it, a connection is closed as soon
//! as it is accepted, before TLS or HTTP), and a deadline for a new connection's first
//! byte.

use std::collections::HashMap;
use std::future::{Future, Ready, ready};
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum_server::accept::Accept;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Counts open connections per address; an acceptor for axum-server.
#[derive(Clone, Debug)]
pub struct PerAddressLimit {
    max: usize,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl PerAddressLimit {
    pub fn new(max: usize) -> Self {
        Self {
            max,
            open: Arc::default(),
        }
    }

    /// Counts a new connection from `addr`, or `None` when it has `max` open already.
    fn enter(&self, addr: IpAddr) -> Option<Slot> {
        let mut open = crate::sync::lock(&self.open);
        let n = open.entry(addr).or_default();
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(Slot {
            addr,
            open: self.open.clone(),
        })
    }
}

/// One counted connection; uncounted when dropped (the connection closed).
#[derive(Debug)]
struct Slot {
    addr: IpAddr,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = crate::sync::lock(&self.open);
        if let Some(n) = open.get_mut(&self.addr) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.addr);
            }
        }
    }
}

impl<S> Accept<TcpStream, S> for PerAddressLimit {
    type Stream = Limited;
    type Service = S;
    type Future = Ready<io::Result<(Limited, S)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let slot = stream
            .peer_addr()
            .ok()
            .map(|a| (a.ip(), self.enter(a.ip())));
        ready(match slot {
            Some((_, Some(slot))) => Ok((
                Limited {
                    stream,
                    _slot: Some(slot),
                },
                service,
            )),
            Some((addr, None)) => {
                // Debug, not warn: a flood of these must not flood the log as well.
                tracing::debug!(%addr, max = self.max, "connection refused: too many open connections from one address");
                Err(io::Error::other("too many connections from one address"))
            }
            // No peer address: nothing to count it against.
            None => Ok((
                Limited {
                    stream,
                    _slot: None,
                },
                service,
            )),
        })
    }
}

/// A TCP stream that holds its address's slot while open.
#[derive(Debug)]
pub struct Limited {
    stream: TcpStream,
    _slot: Option<Slot>,
}

impl AsyncRead for Limited {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Limited {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_address_and_frees_on_close() {
        let limit = PerAddressLimit::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = limit.enter(a).unwrap();
        let _second = limit.enter(a).unwrap();
        assert!(limit.enter(a).is_none(), "third from one address");
        assert!(limit.enter(b).is_some(), "another address");
        drop(first);
        assert!(
            limit.enter(a).is_some(),
            "a closed connection frees its slot"
        );
    }
}

/// Closes a connection that sends nothing at all for `timeout` after it is accepted
/// (and, outermost, after its TLS handshake). hyper's own header timeout starts only
/// once the HTTP version is known, which needs the first bytes.
#[derive(Clone, Debug)]
pub struct FirstByteDeadline<A> {
    inner: A,
    timeout: Duration,
}

impl<A> FirstByteDeadline<A> {
    pub fn new(inner: A, timeout: Duration) -> Self {
        Self { inner, timeout }
    }
}

impl<I, S, A> Accept<I, S> for FirstByteDeadline<A>
where
    A: Accept<I, S>,
    A::Future: Send + 'static,
    A::Stream: Send + 'static,
    A::Service: Send + 'static,
{
    type Stream = Deadline<A::Stream>;
    type Service = A::Service;
    type Future = Pin<Box<dyn Future<Output = io::Result<(Self::Stream, A::Service)>> + Send>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        let accepting = self.inner.accept(stream, service);
        let timeout = self.timeout;
        Box::pin(async move {
            let (stream, service) = accepting.await?;
            Ok((
                Deadline {
                    inner: stream,
                    timer: Some(Box::pin(tokio::time::sleep(timeout))),
                },
                service,
            ))
        })
    }
}

/// A stream whose reads fail with `TimedOut` if its first byte does not come in time.
pub struct Deadline<T> {
    inner: T,
    /// Until the first byte arrives.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Deadline<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if polled.is_ready() && buf.filled().len() > before {
            this.timer = None;
        } else if polled.is_pending()
            && let Some(timer) = this.timer.as_mut()
            && timer.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client sent nothing",
            )));
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Deadline<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
