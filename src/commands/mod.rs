//! The binary's subcommands: argument handling and human-readable reports around the
//! library. Errors here carry context for a person (`anyhow`); the library's are typed.

mod fsck;

pub use fsck::fsck;
