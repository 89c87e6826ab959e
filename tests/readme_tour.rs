//! The README's quick tour is run, command by command, as a reader would: a real
//! server on loopback, real drives (FUSE), a temp folder as the working directory and
//! `~`. The test fails when a command fails, so the tour cannot rot.
//!
//! What the runner changes, and why (nothing else):
//! - `cargo build … && export PATH=…` is not run: cargo built the binary this test runs
//!   (`ects` is `env!("CARGO_BIN_EXE_ects")`).
//! - `--listen 0.0.0.0:8080` becomes `127.0.0.1:0`: the server reports its address,
//!   and the URL it reports replaces `https://ects.school.lan:8080` and a `…` after
//!   `--server`. A bare trailing `…` means "the same --server/--user as the line
//!   above" and becomes `--server URL --user asdf`. The school's CA comes from
//!   `ECTS_CA_FILE` (as the lab image would set it).
//! - The files the tour assumes exist are made first: `pw.txt`, `cert.pem`/`key.pem`
//!   (a test CA, via openssl), `essay.docx`, `class-7b.csv`, `~/Documents`.
//! - `ects server` and `ects mount` run in the background until the end; a second
//!   `ects mount` on the same mountpoint (the tour's "…or") unmounts the first.
//! - `~/.cache/ects/…` is the first cache folder there by name (the server drive's);
//!   `--at "<time>"` is the newest
//!   time the preceding `ects versions` printed ("a time from `versions`").

mod support;

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::client::PASSWORD;
use support::{BIN, clean, temp_dir, text, wait_until};

/// The commands of the README's quick-tour block: comments dropped, continued lines
/// joined, each split into words as `sh` would (quotes, no expansion yet).
fn tour_commands(readme: &str) -> Vec<Vec<String>> {
    let after = readme
        .split_once("## Quick tour")
        .expect("README has a Quick tour")
        .1;
    let block = after
        .split_once("```sh\n")
        .expect("the tour has a sh block")
        .1
        .split_once("\n```")
        .expect("the block ends")
        .0;
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in block.lines() {
        let line = strip_comment(line);
        let trimmed = line.trim_end();
        if let Some(head) = trimmed.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        if !current.trim().is_empty() {
            joined.push(std::mem::take(&mut current));
        }
        current.clear();
    }
    joined.iter().map(|l| words(l)).collect()
}

/// A line without its `# comment` (a `#` after a blank, outside quotes).
fn strip_comment(line: &str) -> String {
    let mut quote = None;
    let mut prev_blank = true;
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '#') if prev_blank => return line[..i].to_owned(),
            _ => {}
        }
        prev_blank = c.is_whitespace();
    }
    line.to_owned()
}

fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote = None;
    for c in line.chars() {
        match (quote, c) {
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (Some(q), c) if c == q => quote = None,
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (_, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(word);
    }
    out
}

/// A background process (server or drive), stopped at the end or on panic.
struct Background {
    child: Child,
    mountpoint: Option<PathBuf>,
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(m) = &self.mountpoint {
            let _ = Command::new("fusermount3")
                .arg("-u")
                .arg("-z")
                .arg(m)
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Tour {
    cwd: PathBuf,
    home: PathBuf,
    ca: PathBuf,
    url: Option<String>,
    server: Option<Background>,
    drive: Option<Background>,
    last_output: String,
}

impl Tour {
    fn command(&self, program: &str, args: &[String]) -> Command {
        let mut c = if program == "ects" {
            clean(Command::new(BIN))
        } else {
            Command::new(program)
        };
        c.args(args)
            .current_dir(&self.cwd)
            .env("HOME", &self.home)
            .env_remove("XDG_CACHE_HOME")
            .env_remove("XDG_DATA_HOME")
            .env_remove("XDG_CONFIG_HOME")
            .env("ECTS_PASSWORD", PASSWORD)
            .env("ECTS_CA_FILE", &self.ca)
            .stdin(Stdio::null());
        c
    }

    fn tilde(&self, w: &str) -> String {
        match w.strip_prefix('~') {
            Some(rest) if rest.is_empty() || rest.starts_with('/') => {
                format!("{}{rest}", self.home.display())
            }
            _ => w.to_owned(),
        }
    }

    /// The substitutions listed in the module comment.
    fn expand(&self, line: &[String]) -> Vec<String> {
        let url = || self.url.clone().expect("the server runs by now");
        let mut out: Vec<String> = Vec::new();
        let mut i = 0;
        while i < line.len() {
            let w = &line[i];
            let prev = out.last().map(String::as_str);
            if w == "https://ects.school.lan:8080" || (w == "…" && prev == Some("--server")) {
                out.push(url());
            } else if w == "…" {
                out.extend(["--server".into(), url(), "--user".into(), "asdf".into()]);
            } else if prev == Some("--listen") {
                out.push("127.0.0.1:0".into());
            } else if prev == Some("--at") {
                out.push(newest_time(&self.last_output));
            } else if w.ends_with("/…") {
                let dir = PathBuf::from(self.tilde(w.trim_end_matches("/…")));
                let mut entries: Vec<PathBuf> = fs::read_dir(&dir)
                    .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                    .map(|e| e.unwrap().path())
                    .collect();
                entries.sort();
                assert!(!entries.is_empty(), "{w}: nothing there");
                out.push(entries.remove(0).display().to_string());
            } else {
                out.push(self.tilde(w));
            }
            i += 1;
        }
        out
    }

    fn run(&mut self, raw: &[String]) {
        // `a && b`: in order, stopping at the first failure.
        for part in raw.split(|w| w == "&&") {
            let line = self.expand(part);
            eprintln!("tour$ {}", line.join(" "));
            let (program, args) = line.split_first().expect("a command");
            match (program.as_str(), args.first().map(String::as_str)) {
                ("ects", Some("server")) => self.start_server(args),
                ("ects", Some("mount")) => self.mount(args),
                _ => {
                    let out = self.finish(self.command(program, args));
                    assert!(
                        out.status.success(),
                        "README tour: `{}` failed\n{}",
                        line.join(" "),
                        text(&out)
                    );
                    self.last_output = String::from_utf8_lossy(&out.stdout).into_owned();
                }
            }
        }
    }

    fn finish(&self, mut cmd: Command) -> Output {
        let child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        support::Guard(Some(child)).wait()
    }

    fn start_server(&mut self, args: &[String]) {
        let mut child = self
            .command("ects", args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let bg = Background {
            child,
            mountpoint: None,
        };
        let mut lines = BufReader::new(stdout).lines();
        let url = loop {
            let line = lines
                .next()
                .expect("the server says where it listens")
                .unwrap();
            if let Some(url) = line.strip_prefix("ects server listening on ") {
                break url.trim().to_owned();
            }
        };
        // Keep reading so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        self.url = Some(url);
        self.server = Some(bg);
    }

    fn mount(&mut self, args: &[String]) {
        let mountpoint = PathBuf::from(&args[1]);
        if let Some(mut previous) = self.drive.take() {
            let st = Command::new("fusermount3")
                .arg("-u")
                .arg(previous.mountpoint.take().unwrap())
                .status()
                .unwrap();
            assert!(st.success());
            let deadline = Instant::now() + Duration::from_secs(120);
            while previous.child.try_wait().unwrap().is_none() {
                assert!(Instant::now() < deadline, "the first drive did not stop");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let mut child = self
            .command("ects", args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let bg = Background {
            child,
            mountpoint: Some(mountpoint.clone()),
        };
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push_str(&format!("{l}\n"));
            }
        });
        self.drive = Some(bg);
        let status = mountpoint.join(".ects-status.txt");
        let drive = self.drive.as_mut().unwrap();
        wait_until("the drive to mount", || {
            if let Ok(Some(st)) = drive.child.try_wait() {
                panic!(
                    "README tour: `ects {}` exited ({st}):\n{}",
                    args.join(" "),
                    log.lock().unwrap()
                );
            }
            status.exists()
        });
    }
}

/// The newest `YYYY-MM-DD HH:MM:SS` in `text`.
fn newest_time(text: &str) -> String {
    let b = text.as_bytes();
    let mut times: Vec<&str> = (0..b.len().saturating_sub(18))
        .filter(|&i| {
            let s = &b[i..i + 19];
            s.iter().enumerate().all(|(j, c)| match j {
                4 | 7 => *c == b'-',
                10 => *c == b' ',
                13 | 16 => *c == b':',
                _ => c.is_ascii_digit(),
            })
        })
        .map(|i| &text[i..i + 19])
        .collect();
    times.sort();
    times
        .pop()
        .unwrap_or_else(|| panic!("no time in `ects versions` output:\n{text}"))
        .to_owned()
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (to make the tour's test certificate)");
    assert!(out.status.success(), "openssl {args:?}: {}", text(&out));
}

/// The files the tour takes for granted.
fn fixtures(cwd: &Path, home: &Path) -> PathBuf {
    fs::write(cwd.join("pw.txt"), format!("{PASSWORD}\n")).unwrap();
    fs::write(cwd.join("essay.docx"), b"my essay, first draft").unwrap();
    fs::write(
        cwd.join("class-7b.csv"),
        "name,role,password\nkim,student,kims long password\n",
    )
    .unwrap();
    fs::create_dir_all(home.join("Documents")).unwrap();
    fs::write(home.join("Documents/notes.txt"), b"notes").unwrap();
    let tls = cwd.join("tls");
    fs::create_dir(&tls).unwrap();
    openssl(
        &tls,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=tour test CA",
        ],
    );
    openssl(
        &tls,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "../key.pem",
            "-out",
            "leaf.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    fs::write(tls.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(
        &tls,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "../cert.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
    tls.join("ca.pem")
}

#[test]
fn the_readme_quick_tour_runs() {
    let readme = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let commands = tour_commands(&readme);
    assert!(commands.len() >= 15, "{commands:?}");
    let tmp = temp_dir();
    let cwd = tmp.path().join("work");
    let home = tmp.path().join("home");
    fs::create_dir_all(&cwd).unwrap();
    fs::create_dir_all(&home).unwrap();
    let ca = fixtures(&cwd, &home);
    let mut tour = Tour {
        cwd,
        home,
        ca,
        url: None,
        server: None,
        drive: None,
        last_output: String::new(),
    };
    let mut ran = 0;
    for line in &commands {
        if line.first().map(String::as_str) == Some("cargo") {
            continue; // built by cargo already: see the module comment
        }
        tour.run(line);
        ran += 1;
    }
    assert!(ran >= 15);
    // What the tour promised arrived: the essay on the server, the collected copy.
    assert!(tour.cwd.join("essay-old.docx").exists());
    assert_eq!(
        fs::read(tour.cwd.join("essay-old.docx")).unwrap(),
        b"my essay, first draft"
    );
    drop(tour.drive.take());
    drop(tour.server.take());
}

#[test]
fn the_runner_reads_the_shell_as_sh_would() {
    assert_eq!(
        words(r#"ects restore "a b" --at '2026-11-20 14:00:07' -o x"#),
        [
            "ects",
            "restore",
            "a b",
            "--at",
            "2026-11-20 14:00:07",
            "-o",
            "x"
        ]
    );
    assert_eq!(strip_comment("ects x 'a # b'  # note"), "ects x 'a # b'  ");
    let cmds = tour_commands("## Quick tour\n```sh\n# c\na b \\\n  c  # d\n\ne\n```\n");
    assert_eq!(cmds, [vec!["a", "b", "c"], vec!["e"]]);
}
