//! User records and password checks. Not built yet.
