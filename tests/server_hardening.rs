//! The real `ects server` under attack or misuse (issues 15 and 16): each test
//! reproduces one attack or mistake and checks the server's answer and what it left on
//! disk or in its log.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::blocking::Client;
use support::{Role, TestServer, add_user, encode_path, sha256_hex, temp_dir};

const USER: &str = "asdf";
const PASSWORD: &str = "correct horse battery staple";

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(120))
        // The test certificates are self-signed; what is tested is the server's answer.
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap()
}

fn one_user(args: &[&str]) -> TestServer {
    TestServer::with_users(&[(USER, Role::Student, PASSWORD)], args)
}

fn put(server: &TestServer, path: &str, body: &[u8]) -> reqwest::blocking::Response {
    client()
        .put(server.at(&format!("/api/v1/files/{USER}/{}", encode_path(path))))
        .basic_auth(USER, Some(PASSWORD))
        .header("X-Content-SHA256", sha256_hex(body))
        .body(body.to_vec())
        .send()
        .unwrap()
}

/// A self-signed certificate for 127.0.0.1 in `dir` (cert.pem, key.pem); returns the
/// arguments that serve HTTPS with it.
fn tls_args(dir: &Path) -> Vec<String> {
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .current_dir(dir)
        .output()
        .expect("running openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    vec![
        "--tls-cert".into(),
        dir.join("cert.pem").display().to_string(),
        "--tls-key".into(),
        dir.join("key.pem").display().to_string(),
    ]
}

/// Issue 15 item 9: every component is valid and the whole path is under the 4096-byte
/// limit, but the data folder in front of it makes it too long for the disk (PATH_MAX).
#[test]
fn a_valid_path_too_long_for_the_disk_is_a_400_with_a_reason() {
    let server = one_user(&[]);
    let component = "d".repeat(200);
    let mut path = vec![component.as_str(); 20].join("/");
    path.push_str("/notes.txt");
    assert!(path.len() > 4000 && path.len() <= 4096, "{}", path.len());
    let r = put(&server, &path, b"long");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = r.json().unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("name too long"),
        "{body}"
    );
    assert!(support::stored_versions(&server.data).is_empty());
}

/// Issue 15 item 10: a name with a newline must not forge a line in the server's log.
#[test]
fn control_characters_in_a_sign_in_name_are_logged_escaped() {
    let server = one_user(&[]);
    let evil = "evil\nINJECTED fake log line\x1b[31m";
    let mut last = StatusCode::OK;
    // Enough failures to reach the lock-out, which logs the name.
    for _ in 0..8 {
        last = client()
            .get(server.at(&format!("/api/v1/tree/{USER}")))
            .basic_auth(evil, Some("guess"))
            .send()
            .unwrap()
            .status();
    }
    assert_eq!(last, StatusCode::TOO_MANY_REQUESTS);
    let log = server.log();
    assert!(log.contains("sign-in refused"), "{log}");
    assert!(
        !log.lines().any(|l| l.starts_with("INJECTED")),
        "a forged log line:\n{log}"
    );
    assert!(!log.contains('\x1b'), "a raw escape sequence in the log");
    assert!(log.contains(r"evil\nINJECTED"), "{log}");
}

/// Issue 15 item 11: the right password of a disabled account must not be told apart
/// from a wrong one, or a disabled account confirms a guessed password.
#[test]
fn a_disabled_account_with_the_right_password_is_answered_like_a_wrong_one() {
    let data = temp_dir();
    add_user(data.path(), USER, Role::Student, PASSWORD);
    add_user(data.path(), "gone", Role::Student, PASSWORD);
    ects::users::UserDb::open(data.path())
        .unwrap()
        .disable(&ects::names::UserName::parse("gone").unwrap())
        .unwrap();
    let server = TestServer::start(data.path(), &[]);
    let answer = |password: &str| {
        let r = client()
            .get(server.at("/api/v1/tree/gone"))
            .basic_auth("gone", Some(password))
            .send()
            .unwrap();
        (r.status(), r.text().unwrap())
    };
    let right = answer(PASSWORD);
    let wrong = answer("not the password");
    assert_eq!(right.0, StatusCode::UNAUTHORIZED);
    assert_eq!(right, wrong);
}

/// Issue 15 item 11: `Secure` follows the server's own TLS, not the `Origin` header.
#[test]
fn the_web_cookie_is_secure_exactly_when_the_server_uses_tls() {
    let tls = temp_dir();
    let cases = [(true, None), (false, Some("https"))];
    for (use_tls, origin_scheme) in cases {
        let args = if use_tls {
            tls_args(tls.path())
        } else {
            Vec::new()
        };
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let server = one_user(&args);
        let host = server.url.split_once("://").unwrap().1.to_owned();
        let mut request = client()
            .post(server.at("/web/login"))
            .header("content-type", "application/json")
            .body(serde_json::json!({"name": USER, "password": PASSWORD}).to_string());
        if let Some(scheme) = origin_scheme {
            request = request.header("origin", format!("{scheme}://{host}"));
        }
        let r = request.send().unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
        assert_eq!(
            cookie.contains("; Secure"),
            use_tls,
            "tls {use_tls}: {cookie}"
        );
    }
}

/// Issue 16 item 2: an unreadable users.toml fails every sign-in; the log says so once,
/// naming the file, instead of once per request.
#[test]
fn a_broken_users_file_is_logged_once_with_its_name() {
    let server = one_user(&[]);
    std::fs::write(server.data.join("users.toml"), "[[user]]\nname = 3\n").unwrap();
    for _ in 0..3 {
        let r = client()
            .get(server.at(&format!("/api/v1/tree/{USER}")))
            .basic_auth(USER, Some(PASSWORD))
            .send()
            .unwrap();
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
    let log = server.log();
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("reading the user database failed"))
        .collect();
    assert_eq!(errors.len(), 1, "{log}");
    assert!(errors[0].contains("users.toml"), "{log}");
}

/// Issue 15 item 2: under a umask of 0 every folder the store creates is 0700 and every
/// file 0600, so other local users cannot read students' work.
#[cfg(unix)]
#[test]
fn the_store_is_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt as _;
    let parent = temp_dir();
    let data = parent.path().join("data");
    // The child inherits the umask; restored at once (other tests' files are harmless).
    // SAFETY: umask(2) only swaps the process's file creation mask.
    let old = unsafe { libc::umask(0) };
    let started = TestServer::try_start(&data, &["--allow-registration"]);
    unsafe { libc::umask(old) };
    let server = started.expect("server");
    let r = put(&server, "Documents/essay.docx", b"private work");
    assert_eq!(r.status(), StatusCode::CREATED);
    let mut seen = 0;
    let mut stack = vec![data.clone()];
    while let Some(dir) = stack.pop() {
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{}", dir.display());
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            seen += 1;
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                let mode = meta.permissions().mode() & 0o777;
                assert_eq!(mode & 0o077, 0, "{}: {mode:o}", entry.path().display());
            }
        }
    }
    assert!(seen >= 8, "the walk saw only {seen} entries");
}

/// Issue 16 item 4: over TLS with HTTP/2, a PUT refused before its body is read (401,
/// 400, 413, 415) reaches the client as its status and JSON reason, not as "Stream
/// error in the HTTP/2 framing layer".
#[test]
fn refusals_with_unread_bodies_reach_http2_clients_whole() {
    let tls = temp_dir();
    let mut args = tls_args(tls.path());
    args.extend(["--max-file-size".into(), "100000".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = one_user(&args);
    let body = tls.path().join("body.bin");
    std::fs::write(&body, vec![b'x'; 200 * 1024]).unwrap();
    let file_url = server.at(&format!("/api/v1/files/{USER}/big.bin"));
    let login_url = server.at("/web/login");
    let right = format!("{USER}:{PASSWORD}");
    let sha = format!("x-content-sha256: {}", sha256_hex(&vec![b'x'; 200 * 1024]));
    let wrong = format!("{USER}:not the password");
    let cases: [(&str, &str, &str, &str, u16); 4] = [
        (
            "PUT",
            file_url.as_str(),
            wrong.as_str(),
            "x-ects-none: 1",
            401,
        ),
        (
            "PUT",
            file_url.as_str(),
            right.as_str(),
            "x-content-sha256: zz",
            400,
        ),
        ("PUT", file_url.as_str(), right.as_str(), sha.as_str(), 413),
        (
            "POST",
            login_url.as_str(),
            right.as_str(),
            "content-type: text/plain",
            415,
        ),
    ];
    for (method, url, user, header, want) in cases {
        let out = Command::new("curl")
            .args([
                "-sS", "-k", "--http2", "-X", method, "-u", user, "-H", header,
            ])
            .arg("--data-binary")
            .arg(format!("@{}", body.display()))
            .args(["-w", "\n%{http_code} %{http_version}", url])
            .output()
            .expect("running curl");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{want}: curl failed ({:?}): {}{stdout}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        let (json, status) = stdout.rsplit_once('\n').unwrap();
        assert_eq!(status, format!("{want} 2"), "{stdout}");
        let json: serde_json::Value = serde_json::from_str(json).expect(&stdout);
        assert!(json["error"].is_string(), "{want}: {json}");
    }
}

/// The `host:port` of a server's URL.
fn authority(server: &TestServer) -> String {
    server.url.split_once("://").unwrap().1.to_owned()
}

/// Reads until the server closes the connection; `false` if it stays open for a minute.
fn closed_by_server(stream: &mut std::net::TcpStream) -> bool {
    use std::io::Read as _;
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// Sends one keep-alive GET of the health check and reads its whole answer.
fn health_on(stream: &mut std::net::TcpStream, host: &str) -> String {
    use std::io::{Read as _, Write as _};
    write!(
        stream,
        "GET /api/v1/health HTTP/1.1\r\nHost: {host}\r\nConnection: keep-alive\r\n\r\n"
    )
    .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("\"status\"") {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "closed before answering");
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// Issue 15 item 4: a connection that never sends its headers, and a keep-alive
/// connection left idle, are closed after `--header-timeout`.
#[test]
fn silent_and_idle_connections_are_closed_after_the_header_timeout() {
    let server = one_user(&["--header-timeout", "1s"]);
    let host = authority(&server);
    let mut silent = std::net::TcpStream::connect(&host).unwrap();
    let mut idle = std::net::TcpStream::connect(&host).unwrap();
    assert!(health_on(&mut idle, &host).starts_with("HTTP/1.1 200"));
    assert!(
        closed_by_server(&mut silent),
        "a silent connection stayed open"
    );
    assert!(
        closed_by_server(&mut idle),
        "an idle keep-alive connection stayed open"
    );
}

/// Issue 15 item 4: one address cannot hold more than `--max-connections-per-address`
/// connections; closing one frees its place.
#[test]
fn connections_per_address_are_capped() {
    let server = one_user(&["--max-connections-per-address", "2"]);
    let host = authority(&server);
    let mut first = std::net::TcpStream::connect(&host).unwrap();
    let mut second = std::net::TcpStream::connect(&host).unwrap();
    // Answered: both are accepted and counted.
    health_on(&mut first, &host);
    health_on(&mut second, &host);
    let mut third = std::net::TcpStream::connect(&host).unwrap();
    assert!(closed_by_server(&mut third), "a third connection was kept");
    drop(first);
    // The server notices the close asynchronously: wait until a new one is served.
    let served = (0..600).any(|_| {
        let mut again = std::net::TcpStream::connect(&host).unwrap();
        use std::io::Write as _;
        let _ = write!(
            again,
            "GET /api/v1/health HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        );
        let mut answer = String::new();
        use std::io::Read as _;
        let _ = again.read_to_string(&mut answer);
        let ok = answer.starts_with("HTTP/1.1 200");
        if !ok {
            std::thread::sleep(Duration::from_millis(50));
        }
        ok
    });
    assert!(
        served,
        "the freed place was never given to a new connection"
    );
}

/// Starts a PUT that declares 1,000 bytes, sends 10 and then stalls.
fn trickle(server: &TestServer, user: &str, password: &str, name: &str) -> std::net::TcpStream {
    use base64::Engine as _;
    use std::io::Write as _;
    let host = authority(server);
    let mut stream = std::net::TcpStream::connect(&host).unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    write!(
        stream,
        "PUT /api/v1/files/{user}/{name} HTTP/1.1\r\nHost: {host}\r\n\
         Authorization: Basic {auth}\r\nX-Content-SHA256: {}\r\n\
         Content-Length: 1000\r\n\r\n0123456789",
        "0".repeat(64)
    )
    .unwrap();
    stream
}

/// Reads a response's head (status line and headers).
fn response_head(stream: &mut std::net::TcpStream) -> String {
    use std::io::Read as _;
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).expect("waiting for an answer");
        assert!(n > 0, "closed without an answer");
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// Waits (bounded) until `cond` holds.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..1200 {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting until {what}");
}

/// Issue 15 item 3: one user's many trickling uploads take at most their own places
/// (the rest get 429 with Retry-After), and another user's upload still succeeds.
#[test]
fn trickling_uploads_of_one_user_cannot_crowd_out_others() {
    let server = TestServer::with_users(
        &[
            (USER, Role::Student, PASSWORD),
            ("other", Role::Student, PASSWORD),
        ],
        &["--max-uploads-per-user", "2", "--max-uploads", "4"],
    );
    let _stalled: Vec<_> = (0..2)
        .map(|i| trickle(&server, USER, PASSWORD, &format!("slow{i}.bin")))
        .collect();
    wait_until("two uploads are staging", || {
        support::temp_files(&server.data).len() == 2
    });
    for i in 2..6 {
        let mut refused = trickle(&server, USER, PASSWORD, &format!("slow{i}.bin"));
        let head = response_head(&mut refused);
        assert!(head.starts_with("HTTP/1.1 429"), "{head}");
        assert!(
            head.to_ascii_lowercase().contains("retry-after: "),
            "{head}"
        );
    }
    let r = client()
        .put(server.at("/api/v1/files/other/fast.txt"))
        .basic_auth("other", Some(PASSWORD))
        .header("X-Content-SHA256", sha256_hex(b"on time"))
        .body(&b"on time"[..])
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
}

/// Issue 15 item 3: an upload that stops sending is dropped after `--body-timeout`
/// with a 408, and its temp file is gone.
#[test]
fn a_stalled_upload_is_dropped_with_nothing_left_behind() {
    let server = one_user(&["--body-timeout", "1s"]);
    let mut stalled = trickle(&server, USER, PASSWORD, "slow.bin");
    let head = response_head(&mut stalled);
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    wait_until("the stalled temp file is gone", || {
        support::temp_files(&server.data).is_empty()
    });
    assert!(support::stored_versions(&server.data).is_empty());
}

/// A client whose connections come from `local` (any 127.x.y.z works on Linux).
#[cfg(target_os = "linux")]
fn client_from(local: &str) -> Client {
    Client::builder()
        .timeout(Duration::from_secs(120))
        .local_address(local.parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap()
}

/// Issue 15 item 5: a student who signed in from a PC keeps signing in from it while
/// their name is guessed at from other PCs, also after the server restarts.
#[cfg(target_os = "linux")]
#[test]
fn the_owner_signs_in_while_their_name_is_guessed_even_after_a_restart() {
    let mut server = one_user(&[]);
    let tree = |c: &Client, server: &TestServer, password: &str| {
        c.get(server.at(&format!("/api/v1/tree/{USER}")))
            .basic_auth(USER, Some(password))
            .send()
            .unwrap()
            .status()
    };
    let home = client_from("127.0.0.1");
    assert_eq!(tree(&home, &server, PASSWORD), StatusCode::OK);
    let trust = server.data.join("signin-trust.json");
    wait_until("trust is saved", || trust.exists());
    server.restart();
    // 5 wrong guesses from each of 4 other addresses: the name's limit (20) is reached.
    for i in 2..6 {
        let guesser = client_from(&format!("127.0.0.{i}"));
        for _ in 0..5 {
            assert_eq!(tree(&guesser, &server, "guess"), StatusCode::UNAUTHORIZED);
        }
    }
    let newcomer = client_from("127.0.0.9");
    assert_eq!(
        tree(&newcomer, &server, PASSWORD),
        StatusCode::TOO_MANY_REQUESTS,
        "the name is locked for addresses it never signed in from"
    );
    assert_eq!(tree(&home, &server, PASSWORD), StatusCode::OK);
}

/// Threads of a running process, from /proc.
#[cfg(target_os = "linux")]
fn threads_of(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap()
}

/// Issue 15 item 3: a stalled upload holds no thread. Before, each one held a blocking
/// thread while waiting for the network, so 40 stalled uploads meant 40 more threads.
#[cfg(target_os = "linux")]
#[test]
fn stalled_uploads_hold_no_threads() {
    const STALLED: usize = 40;
    let server = one_user(&["--max-uploads-per-user", "100", "--body-timeout", "10m"]);
    let pid = server.pid().unwrap();
    // The runtime's own threads (one worker per core) are there before any upload.
    let base = threads_of(pid);
    let _stalled: Vec<_> = (0..STALLED)
        .map(|i| trickle(&server, USER, PASSWORD, &format!("slow{i}.bin")))
        .collect();
    wait_until("every upload is staging", || {
        support::temp_files(&server.data).len() == STALLED
    });
    // Signing 40 clients in at once spawns blocking threads for argon2; idle ones
    // leave the pool after 10 s. Threads held by stalled uploads would never leave.
    wait_until("idle blocking threads have left", || {
        threads_of(pid) < base + STALLED / 2
    });
    assert_eq!(
        support::temp_files(&server.data).len(),
        STALLED,
        "still staging"
    );
}
