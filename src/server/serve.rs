//! Running the router on a socket: plain HTTP or rustls TLS through one code path, and
//! a graceful shutdown that stops accepting and lets in-flight uploads finish.

use std::future::Future;
use std::io;
use std::net::TcpListener;
use std::time::Duration;

use axum::Router;
use axum_server::Handle;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use hyper_util::rt::TokioTimer;

use super::conn_limit::{FirstByteDeadline, PerAddressLimit};

/// How long in-flight requests may take to finish after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Connection-level limits against clients that hold connections open.
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// How long a client may take to send a request's headers (`--header-timeout`). It
    /// also closes HTTP/1 keep-alive connections that stay idle that long.
    pub header_timeout: Duration,
    /// Open connections allowed from one address (`--max-connections-per-address`).
    pub max_connections_per_address: usize,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(30),
            max_connections_per_address: 256,
        }
    }
}

/// Serves `app` on an already bound `listener` until a `signal()` completes, then stops
/// accepting and waits up to [`SHUTDOWN_GRACE`] for open requests; a second `signal()`
/// cuts the wait short.
pub async fn serve<S, F>(
    listener: TcpListener,
    app: Router,
    tls: Option<RustlsConfig>,
    options: ServeOptions,
    signal: S,
) -> io::Result<()>
where
    S: Fn() -> F + Send + 'static,
    F: Future<Output = ()> + Send,
{
    let handle = Handle::new();
    let watcher = handle.clone();
    tokio::spawn(async move {
        signal().await;
        tracing::info!(
            grace_secs = SHUTDOWN_GRACE.as_secs(),
            open_connections = watcher.connection_count(),
            "shutting down: no new connections; letting open requests finish"
        );
        watcher.graceful_shutdown(Some(SHUTDOWN_GRACE));
        signal().await;
        tracing::warn!("second signal: closing open connections now");
        watcher.shutdown();
    });
    // The peer address feeds sign-in throttling.
    let service = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    let limit = PerAddressLimit::new(options.max_connections_per_address);
    let configure = |builder: &mut hyper_util::server::conn::auto::Builder<_>| {
        // Without a timer hyper enforces no header timeout at all.
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(options.header_timeout);
        // Pings find dead HTTP/2 peers; their streams end with the connection.
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(Some(options.header_timeout));
    };
    match tls {
        Some(config) => {
            let tls = RustlsAcceptor::new(config).acceptor(limit);
            let mut server = axum_server::from_tcp(listener)
                .acceptor(FirstByteDeadline::new(tls, options.header_timeout));
            configure(server.http_builder());
            server.handle(handle).serve(service).await
        }
        None => {
            let mut server = axum_server::from_tcp(listener)
                .acceptor(FirstByteDeadline::new(limit, options.header_timeout));
            configure(server.http_builder());
            server.handle(handle).serve(service).await
        }
    }
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
