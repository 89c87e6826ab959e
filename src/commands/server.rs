use std::io::Write as _;
use std::net::TcpListener;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;

use crate::cli::ServerArgs;
use crate::server::{self, AppState, Limits};
use crate::store::FsStore;
use crate::users::UserDb;

/// `ects server`: refuses to start open to nobody, then serves until SIGTERM/Ctrl-C.
pub fn server(args: ServerArgs) -> anyhow::Result<ExitCode> {
    let users = UserDb::open(&args.data)
        .with_context(|| format!("opening the users of {}", args.data.display()))?;
    if users.is_empty()? && !args.allow_registration {
        eprintln!(
            "ects server: {} has no users yet, so nobody could sign in.\n\
             Add one first:   ects user add NAME --data {}\n\
             (or a teacher:   ects user add NAME --role teacher --data {})\n\
             or let the first sign-in with a new name claim it: ects server --allow-registration",
            args.data.display(),
            args.data.display(),
            args.data.display(),
        );
        return Ok(ExitCode::from(2));
    }
    // For the debug log: what the server starts with.
    let users_count = users.list().map(|u| u.len()).unwrap_or(0);
    let store = FsStore::open(&args.data)
        .with_context(|| format!("opening the store in {}", args.data.display()))?
        .with_quota(args.quota);
    let state = AppState {
        store: Arc::new(store),
        users: Arc::new(users),
        limits: Limits {
            max_file_size: args.max_file_size,
            quota: args.quota,
            body_timeout: args.body_timeout,
            max_uploads_per_user: args.max_uploads_per_user,
            max_uploads: args.max_uploads,
        },
        allow_registration: args.allow_registration,
        tls: args.tls_cert.is_some(),
        data: Some(args.data.clone()),
        stopping: server::Stopping::default(),
    };
    let stopping = state.stopping.clone();

    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let result = runtime.block_on(async {
        let tls = match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => {
                // One process-wide crypto provider; ring is the one compiled in.
                let _ = rustls::crypto::ring::default_provider().install_default();
                let config = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                    .await
                    .with_context(|| {
                        format!(
                            "loading the TLS certificate {} and key {}",
                            cert.display(),
                            key.display()
                        )
                    })?;
                Some(config)
            }
            _ => None,
        };
        let listener = TcpListener::bind(args.listen)
            .with_context(|| format!("listening on {}", args.listen))?;
        let addr = listener
            .local_addr()
            .context("reading the listening address")?;
        tracing::debug!(
            listen = %addr,
            tls_cert = ?args.tls_cert,
            tls_key = ?args.tls_key,
            users = users_count,
            "configuration"
        );
        let scheme = if tls.is_some() { "https" } else { "http" };
        // Tests and scripts wait for exactly this line.
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "ects server listening on {scheme}://{addr}")
            .and_then(|()| stdout.flush())
            .context("writing to stdout")?;
        drop(stdout);
        tracing::info!(
            data = %args.data.display(),
            max_file_size = args.max_file_size,
            quota = ?args.quota,
            registration = args.allow_registration,
            "serving"
        );
        server::serve(
            listener,
            server::router(state),
            tls,
            server::ServeOptions {
                header_timeout: args.header_timeout,
                max_connections_per_address: args.max_connections_per_address,
            },
            move || {
                let stopping = stopping.clone();
                async move {
                    server::shutdown_signal().await;
                    stopping.stop();
                }
            },
        )
        .await
        .context("serving HTTP")
    });
    // Uploads still being written finish (or are dropped whole) within this bound.
    runtime.shutdown_timeout(std::time::Duration::from_secs(10));
    result?;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}
