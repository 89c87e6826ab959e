//! The drive: a filesystem core with no FUSE or WinFsp types, and thin adapters. Not built yet.
