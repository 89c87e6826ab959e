//! The API client, the durable upload spool and the client commands. Not built yet.
