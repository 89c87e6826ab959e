//! The command line (SPEC §1). Every flag (and the mount point) also reads
//! `ECTS_<FLAG>` from the environment; on/off flags accept 1/0, true/false, yes/no,
//! on/off there.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "ects",
    version,
    about = "Write-only, versioned backup drive and server for school labs"
)]
pub struct Cli {
    /// More log output (-v: debug, -vv: trace). RUST_LOG overrides it.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server that keeps every version.
    Server(ServerArgs),
    /// Manage users on the server host (no restart needed).
    User(UserArgs),
    /// Mount the self-backing drive (foreground).
    Mount(MountArgs),
    /// Back up existing folders once: upload every version the server lacks.
    Backup(BackupArgs),
    /// List the stored versions of a file.
    Versions(VersionsArgs),
    /// Fetch one stored version of a file.
    Restore(RestoreArgs),
    /// Show pending, failed and done uploads of a drive.
    Status(StatusArgs),
    /// Re-hash every stored version; report damage (exit 1).
    Fsck(FsckArgs),
    /// Teachers: fetch every student's version of matching files, as of a deadline.
    Collect(CollectArgs),
}

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Folder holding uploads/, journal/, tmp/ and users.toml.
    #[arg(long, env = "ECTS_DATA", default_value = "./ects-data")]
    pub data: PathBuf,
    /// Address to listen on.
    #[arg(long, env = "ECTS_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// PEM certificate chain; serves HTTPS when given with --tls-key.
    #[arg(long, env = "ECTS_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "ECTS_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Let the first login with an unknown name claim it (the original's behaviour).
    #[arg(long, env = "ECTS_ALLOW_REGISTRATION", value_parser = clap::builder::BoolishValueParser::new())]
    pub allow_registration: bool,
    /// Largest accepted version, e.g. 4GiB, 500M, 1048576.
    #[arg(long, env = "ECTS_MAX_FILE_SIZE", default_value = "4GiB", value_parser = parse_size)]
    pub max_file_size: u64,
    /// Bytes each user may store in all (each version counted once), e.g. 10GiB.
    #[arg(long, env = "ECTS_QUOTA", value_parser = parse_size)]
    pub quota: Option<u64>,
    /// How long a client may take to send a request's headers; also how long an idle
    /// keep-alive connection stays open. E.g. 30s, 2m.
    #[arg(long, env = "ECTS_HEADER_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub header_timeout: std::time::Duration,
    /// An upload whose body sends nothing for this long is dropped (nothing is kept).
    #[arg(long, env = "ECTS_BODY_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub body_timeout: std::time::Duration,
    /// Open connections allowed from one client address (a NAT or proxy counts once).
    #[arg(long, env = "ECTS_MAX_CONNECTIONS_PER_ADDRESS", default_value_t = 256)]
    pub max_connections_per_address: usize,
    /// Uploads one user may have in progress at once; more get 429 with Retry-After.
    #[arg(long, env = "ECTS_MAX_UPLOADS_PER_USER", default_value_t = 32)]
    pub max_uploads_per_user: usize,
    /// Uploads in progress at once for everyone; more get 503 with Retry-After.
    #[arg(long, env = "ECTS_MAX_UPLOADS", default_value_t = 256)]
    pub max_uploads: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    Student,
    Teacher,
}

#[derive(Debug, Args)]
pub struct UserArgs {
    /// The server's data folder.
    #[arg(long, env = "ECTS_DATA", default_value = "./ects-data", global = true)]
    pub data: PathBuf,
    #[command(subcommand)]
    pub command: UserCommand,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user. The password comes from --password-file, ECTS_PASSWORD or a prompt.
    Add {
        name: String,
        #[arg(long, env = "ECTS_ROLE", value_enum, default_value = "student")]
        role: RoleArg,
        #[arg(long, env = "ECTS_PASSWORD_FILE")]
        password_file: Option<PathBuf>,
    },
    /// Set a user's password (and enable the user again).
    Passwd {
        name: String,
        #[arg(long, env = "ECTS_PASSWORD_FILE")]
        password_file: Option<PathBuf>,
    },
    /// Stop a user from signing in; their stored work is kept.
    Disable { name: String },
    /// Add every user of a class list (lines `name,role[,password]`), all or none.
    ///
    /// A header line `name,role,password` is optional; `;` works as well as `,`; an
    /// empty role means student. Passwords left out are generated and written to
    /// --passwords-out (a new file only you can read).
    Import {
        /// The class list, e.g. exported from a spreadsheet as CSV (UTF-8).
        csv: PathBuf,
        /// Where to write the generated passwords (default: CSV-passwords.csv beside
        /// the list). Never replaces an existing file.
        #[arg(long, env = "ECTS_PASSWORDS_OUT")]
        passwords_out: Option<PathBuf>,
    },
    /// List users, roles and whether they are enabled.
    List,
}

/// How a client command reaches the server.
#[derive(Debug, Clone, Args)]
pub struct ConnectArgs {
    /// Server URL, e.g. https://ects.school.lan:8080
    #[arg(long, env = "ECTS_SERVER")]
    pub server: Option<String>,
    /// User name on the server.
    #[arg(long, env = "ECTS_USER")]
    pub user: Option<String>,
    /// File holding the password (first line). Otherwise ECTS_PASSWORD, or a prompt.
    #[arg(long, env = "ECTS_PASSWORD_FILE")]
    pub password_file: Option<PathBuf>,
    /// The password itself; prefer ECTS_PASSWORD or --password-file (flags show in `ps`).
    #[arg(long, env = "ECTS_PASSWORD", hide_env_values = true, hide = true)]
    pub password: Option<String>,
    /// Extra CA certificate (PEM) to trust, for a school's own TLS certificate.
    #[arg(long, env = "ECTS_CA_FILE")]
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct MountArgs {
    /// Empty folder to mount the drive on; on Windows a drive letter such as `B:`, or a
    /// folder that does not exist yet.
    #[arg(env = "ECTS_MOUNTPOINT")]
    pub mountpoint: PathBuf,
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Local backing folder and upload spool (default: per server+user under the cache dir).
    #[arg(long, env = "ECTS_CACHE")]
    pub cache: Option<PathBuf>,
    /// Embedded store's data folder, used when no --server is given (default: ects/data
    /// under the user's data folder, e.g. ~/.local/share/ects/data).
    #[arg(long, env = "ECTS_DATA")]
    pub data: Option<PathBuf>,
    /// Seconds to keep uploading at unmount before leaving the rest in the spool.
    #[arg(long, env = "ECTS_DRAIN_TIMEOUT", default_value_t = 10)]
    pub drain_timeout: u64,
    /// Windows only: serve the drive as the network share `\\server\share` given
    /// here as `\server\share` (e.g. `\ects\alice`), so Explorer shows it as a
    /// network drive and `net use` / GPO drive maps work through the WinFsp launcher.
    #[arg(long, env = "ECTS_VOLUME_PREFIX")]
    pub volume_prefix: Option<String>,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Folders to back up; each is stored under its own name.
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Folder for the upload spool and the hash cache (default: per server+user under
    /// the cache dir). Versions a killed run left there are sent by the next run.
    #[arg(long, env = "ECTS_CACHE")]
    pub cache: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct VersionsArgs {
    /// Path of the file in your namespace, e.g. Documents/essay.docx
    pub path: String,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Path of the file in your namespace, e.g. Documents/essay.docx
    pub path: String,
    /// The version to fetch (full hash or a unique prefix). Default: the newest.
    #[arg(long, env = "ECTS_SHA256", conflicts_with = "at")]
    pub sha256: Option<String>,
    /// The newest version stored at or before this time (RFC 3339, "YYYY-MM-DD HH:MM[:SS]"
    /// or a date). A time means the whole unit typed: "14:30:05" includes everything
    /// stored during that second (as `ects versions` shows it), "14:30" that minute.
    #[arg(long, env = "ECTS_AT")]
    pub at: Option<String>,
    /// Where to write it (default: the file's name in the current folder; - for stdout).
    #[arg(short = 'o', long, env = "ECTS_OUT")]
    pub out: Option<PathBuf>,
    /// Replace an existing output file.
    #[arg(long, env = "ECTS_FORCE", value_parser = clap::builder::BoolishValueParser::new())]
    pub force: bool,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The drive's cache folder.
    #[arg(long, env = "ECTS_CACHE")]
    pub cache: Option<PathBuf>,
    /// A mounted drive (its folder, e.g. ~/B): the spool named in its .ects-status.txt
    /// (wins over --cache / ECTS_CACHE).
    #[arg(long, env = "ECTS_DRIVE")]
    pub drive: Option<PathBuf>,
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Wait until no upload is pending (for logoff scripts): exit 0 then, 1 if some
    /// uploads were refused for good, 3 on --timeout. The drive must keep running.
    #[arg(long, env = "ECTS_WAIT", value_parser = clap::builder::BoolishValueParser::new())]
    pub wait: bool,
    /// With --wait: give up after this many seconds (default: wait as long as it takes).
    /// With --retry-failed: how long to keep sending (default 60).
    #[arg(long, env = "ECTS_TIMEOUT")]
    pub timeout: Option<u64>,
    /// Queue the failed uploads again (after the cause is fixed, e.g. a bigger size
    /// limit). With --server/--user they are sent now; else at the next mount or backup.
    /// The drive must not be running on this spool.
    #[arg(long, env = "ECTS_RETRY_FAILED", conflicts_with_all = ["wait", "dismiss"],
          value_parser = clap::builder::BoolishValueParser::new())]
    pub retry_failed: bool,
    /// Take the failed uploads off the list: their bytes move to the cache's
    /// `not-uploaded/` folder (each path printed), never deleted.
    #[arg(long, env = "ECTS_DISMISS", conflicts_with = "wait",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub dismiss: bool,
}

#[derive(Debug, Args)]
pub struct FsckArgs {
    /// The store's data folder.
    #[arg(long, env = "ECTS_DATA", default_value = "./ects-data")]
    pub data: PathBuf,
    /// Set every version's stored_at (its file's mtime) that disagrees with the
    /// journal back to the journal's time, e.g. after a copy with `cp -r`.
    #[arg(long, env = "ECTS_REPAIR_TIMES", value_parser = clap::builder::BoolishValueParser::new())]
    pub repair_times: bool,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("who").required(true).args(["students", "all"]))]
pub struct CollectArgs {
    /// Glob over each student's paths, e.g. 'Documents/History/essay*.docx' (* and ?
    /// within a name, ** for any folders, [abc]; case is ignored). Quote it.
    pub pattern: String,
    /// Folder to collect into: OUT/<student>/<path> and OUT/manifest.csv.
    #[arg(long, env = "ECTS_OUT")]
    pub out: PathBuf,
    /// Deadline: only versions the server stored strictly before it count as on time
    /// (RFC 3339, or local "YYYY-MM-DD HH:MM[:SS]", or a date meaning its end).
    #[arg(long, env = "ECTS_BEFORE")]
    pub before: Option<String>,
    /// Comma-separated user names to collect from.
    #[arg(long, env = "ECTS_STUDENTS", value_delimiter = ',')]
    pub students: Vec<String>,
    /// Collect from every enabled student.
    #[arg(long, env = "ECTS_ALL", value_parser = clap::builder::BoolishValueParser::new())]
    pub all: bool,
    /// Replace files in OUT that differ from the version collected.
    #[arg(long, env = "ECTS_FORCE", value_parser = clap::builder::BoolishValueParser::new())]
    pub force: bool,
    /// Also fetch files that have only late versions (their newest); the manifest marks
    /// them late-only either way.
    #[arg(long, env = "ECTS_INCLUDE_LATE", value_parser = clap::builder::BoolishValueParser::new())]
    pub include_late: bool,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// Parses a duration: a whole number of seconds, or with a unit `s`, `m` or `h`
/// (`30`, `30s`, `2m`). Zero is refused: it would close every connection at once.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration: expected e.g. 30s or 2m"))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        other => {
            return Err(format!(
                "unknown time unit {other:?} in {s:?}: use s, m or h"
            ));
        }
    };
    if secs == 0 {
        return Err(format!("{s:?}: the time must be at least one second"));
    }
    Ok(std::time::Duration::from_secs(secs))
}

/// Parses a byte size: a whole number with an optional unit K, M, G, T (powers of
/// 1024), with or without `iB`/`B`, e.g. `4GiB`, `500M`, `1048576`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size: expected a number like 4GiB or 500M"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        other => {
            return Err(format!(
                "unknown size unit {other:?} in {s:?}: use K, M, G or T"
            ));
        }
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("4GiB"), Ok(4 << 30));
        assert_eq!(parse_size("500M"), Ok(500 << 20));
        assert_eq!(parse_size("2 kb"), Ok(2048));
        assert!(parse_size("").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("3X").is_err());
        assert!(parse_size("99999999999T").is_err());
    }

    /// "Every flag also reads ECTS_<FLAG>": checked over the whole command tree, so a
    /// flag added without `env` fails here. Positionals other than the mount point
    /// (paths, names, patterns) are per-call and stay on the command line.
    #[test]
    fn every_flag_reads_the_environment() {
        use clap::CommandFactory;
        fn walk(cmd: &clap::Command, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version" | "verbose") {
                    continue;
                }
                if arg.is_positional() && id != "mountpoint" {
                    continue;
                }
                if arg.get_env().is_none() {
                    missing.push(format!("{} --{id}", cmd.get_name()));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), &mut missing);
        assert!(missing.is_empty(), "flags without ECTS_ env: {missing:?}");
    }

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
