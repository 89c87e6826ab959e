//! Server ingest benchmark (issue 2): versions/s and MB/s on loopback for 4 KiB and
//! 1 MiB versions with 1 and 32 concurrent clients, next to the machine's own disk
//! write (dd, fdatasync) and SHA-256 speed measured in the same run.
//!
//! Run: `cargo bench --bench ingest` (or `bench/ingest.sh`). Knobs (env):
//! `ECTS_BENCH_DIR` (data folder parent, default a temp dir under target/),
//! `ECTS_BENCH_SCALE` (multiplies the version counts, default 1).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use sha2::Digest as _;

const USER: &str = "bench";
const PASSWORD: &str = "bench-password";

struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ects_bin() -> PathBuf {
    // benches build in target/release; the binary sits beside the bench's deps folder.
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("ects");
    assert!(
        bin.exists(),
        "{} missing: run `cargo build --release` first (bench/ingest.sh does)",
        bin.display()
    );
    bin
}

fn start_server(data: &Path) -> Server {
    let bin = ects_bin();
    std::fs::write(data.join("pw"), PASSWORD).unwrap();
    let status = Command::new(&bin)
        .args(["user", "add", USER, "--data"])
        .arg(data)
        .arg("--password-file")
        .arg(data.join("pw"))
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let mut child = Command::new(&bin)
        .args(["server", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .to_owned();
    Server { child, url }
}

/// Sequential write speed of the data folder's disk, made durable, in MB/s.
fn dd_write(dir: &Path) -> f64 {
    let file = dir.join("dd.bin");
    let t = Instant::now();
    let out = Command::new("dd")
        .args(["if=/dev/zero", "bs=1M", "count=512", "conv=fdatasync"])
        .arg(format!("of={}", file.display()))
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(out.success());
    let secs = t.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(file);
    512.0 * 1.048576 / secs
}

/// SHA-256 speed of this machine (in memory), in MB/s.
fn sha_speed() -> f64 {
    let buf = vec![7u8; 64 << 20];
    let t = Instant::now();
    let mut h = sha2::Sha256::new();
    for _ in 0..4 {
        h.update(&buf);
    }
    std::hint::black_box(h.finalize());
    256.0 * 1.048576 / t.elapsed().as_secs_f64()
}

async fn run(url: &str, clients: usize, size: usize, total: usize, tag: &str) -> (f64, f64) {
    let http = reqwest::Client::new();
    let per = total / clients;
    let started = Instant::now();
    let mut tasks = Vec::new();
    let url = Arc::new(url.to_owned());
    for c in 0..clients {
        let http = http.clone();
        let url = url.clone();
        let tag = tag.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut body = vec![0u8; size];
            for i in 0..per {
                // Unique content per version: every upload is a real new version.
                body[..16].copy_from_slice(&((c as u64) << 32 | i as u64).to_le_bytes().repeat(2));
                let sha = hex::encode(sha2::Sha256::digest(&body));
                let resp = http
                    .put(format!("{url}/api/v1/files/{USER}/{tag}/c{c}/f{i}.bin"))
                    .basic_auth(USER, Some(PASSWORD))
                    .header("X-Content-SHA256", sha)
                    .body(body.clone())
                    .send()
                    .await
                    .expect("request");
                assert_eq!(
                    resp.status().as_u16(),
                    201,
                    "{}",
                    resp.text().await.unwrap_or_default()
                );
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    let n = (per * clients) as f64;
    (n / secs, n * size as f64 / 1e6 / secs)
}

fn main() {
    let scale: usize = std::env::var("ECTS_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let base = std::env::var_os("ECTS_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"));
    std::fs::create_dir_all(&base).unwrap();
    let dir = tempfile::tempdir_in(&base).unwrap();
    let server = start_server(dir.path());
    let rt = tokio::runtime::Runtime::new().unwrap();

    let disk = dd_write(dir.path());
    let sha = sha_speed();
    println!("ceiling: dd write (fdatasync) {disk:.0} MB/s, sha256 {sha:.0} MB/s");
    println!("| versions | clients | count | versions/s | MB/s | % of dd |");
    println!("|---|---|---|---|---|---|");
    for (size, label, count) in [(4096, "4 KiB", 1000), (1 << 20, "1 MiB", 256)] {
        for clients in [1, 32] {
            let count = count * scale;
            let tag = format!("s{size}-c{clients}");
            let (vps, mbps) = rt.block_on(run(&server.url, clients, size, count, &tag));
            println!(
                "| {label} | {clients} | {count} | {vps:.0} | {mbps:.1} | {:.0}% |",
                mbps / disk * 100.0
            );
        }
    }
    drop(server);
}
