//! The HTTP server (SPEC §3). Not built yet.
