//! The web page in a real browser (Debian's headless Chromium driven by chromedriver
//! over the W3C WebDriver HTTP protocol), plus the page's HTTP-level security rules.
//!
//! Browser tests print "SKIPPED: …" and pass when chromium or chromedriver is not
//! installed; CI installs both (`apt-get install chromium chromium-driver`).
//!
//! Unix-only: its class stores names Windows forbids (`<`, `>`, `"`), which a server
//! on Windows cannot keep, and the browser is Debian's.
#![cfg(unix)]

mod support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::blocking::Client;
use serde_json::{Value, json};
use support::{Role, TestServer, encode_path as encode, http_client as client, sha256_hex};

const PW: &str = "a long enough password";
const HOSTILE: &str = "<img src=x onerror=alert(1)>.html";
const WAIT: Duration = Duration::from_secs(60);

fn put(server: &TestServer, user: &str, path: &str, body: &[u8]) {
    support::put_version(server, user, PW, path, body);
}

const DRAFT: &[u8] = b"first draft\n";
const FINAL: &[u8] = b"final version, much longer\n";
const EVIL: &[u8] = b"<script>alert(2)</script><img src=x onerror=alert(3)>";

/// A teacher, alice with two versions of an essay and a hostile file name, bob.
fn class() -> TestServer {
    let server = TestServer::with_users(
        &[
            ("teach", Role::Teacher, PW),
            ("alice", Role::Student, PW),
            ("bob", Role::Student, PW),
        ],
        &[],
    );
    put(&server, "alice", "Docs/essay.txt", DRAFT);
    put(&server, "alice", "Docs/essay.txt", FINAL);
    put(&server, "alice", &format!("Docs/{HOSTILE}"), EVIL);
    put(&server, "bob", "Private/diary.txt", b"bob's secrets");
    server
}

// ---- a minimal WebDriver client ----------------------------------------------------

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// chromedriver in its own process group, killed with everything it started (the
/// browser) when dropped, also on panic.
struct Driver {
    child: Child,
    url: String,
    http: Client,
    session: Option<String>,
    _profile: tempfile::TempDir,
    downloads: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(id) = self.session.take() {
            let _ = self
                .http
                .delete(format!("{}/session/{id}", self.url))
                .timeout(Duration::from_secs(10))
                .send();
        }
        // SAFETY: kill(2) on the process group of a child we started in its own group.
        #[cfg(unix)]
        unsafe {
            libc::kill(-(self.child.id() as libc::pid_t), libc::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find_program(candidates: &[&str]) -> Option<PathBuf> {
    candidates.iter().map(PathBuf::from).find(|p| p.is_file())
}

impl Driver {
    /// Starts chromedriver and a headless Chromium session, or `None` when either is
    /// not installed.
    fn start() -> Option<Driver> {
        let chromium = find_program(&["/usr/lib/chromium/chromium", "/usr/bin/chromium"])?;
        let chromedriver = find_program(&["/usr/bin/chromedriver"])?;
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut command = Command::new(chromedriver);
        command
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // Its own process group, so Drop kills the browser it starts too. (The
        // program paths above exist on Debian only; elsewhere the tests skip.)
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command.spawn().expect("starting chromedriver");
        let profile = support::temp_dir();
        let downloads = support::temp_dir();
        let mut driver = Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
            http: Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .unwrap(),
            session: None,
            _profile: profile,
            downloads,
        };
        let deadline = Instant::now() + WAIT;
        loop {
            let ready = driver
                .http
                .get(format!("{}/status", driver.url))
                .send()
                .ok()
                .and_then(|r| r.json::<Value>().ok())
                .is_some_and(|v| v["value"]["ready"] == true);
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let download_dir = driver.downloads.path().to_str().unwrap().to_owned();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1024,768",
                    format!("--user-data-dir={}", driver._profile.path().display()),
                ],
                "prefs": {
                    "download.default_directory": download_dir,
                    "download.prompt_for_download": false,
                    "safebrowsing.enabled": false,
                },
            },
        }}});
        let v = driver.post("/session", &caps);
        driver.session = Some(
            v["value"]["sessionId"]
                .as_str()
                .unwrap_or_else(|| panic!("no session: {v}"))
                .to_owned(),
        );
        // Headless Chromium also needs downloads allowed explicitly.
        let _ = driver.cmd(
            "/goog/cdp/execute",
            &json!({"cmd": "Browser.setDownloadBehavior",
                    "params": {"behavior": "allow", "downloadPath": download_dir}}),
        );
        Some(driver)
    }

    fn post(&self, path: &str, body: &Value) -> Value {
        let r = self
            .http
            .post(format!("{}{path}", self.url))
            .json(body)
            .send()
            .unwrap();
        r.json().unwrap()
    }

    /// A session command; `Err(value)` when WebDriver answered with an error.
    fn cmd(&self, path: &str, body: &Value) -> Result<Value, Value> {
        let id = self.session.as_ref().unwrap();
        let r = self
            .http
            .post(format!("{}/session/{id}{path}", self.url))
            .json(body)
            .send()
            .unwrap();
        let ok = r.status().is_success();
        let v: Value = r.json().unwrap();
        if ok { Ok(v["value"].clone()) } else { Err(v) }
    }

    fn get(&self, path: &str) -> Result<Value, Value> {
        let id = self.session.as_ref().unwrap();
        let r = self
            .http
            .get(format!("{}/session/{id}{path}", self.url))
            .send()
            .unwrap();
        let ok = r.status().is_success();
        let v: Value = r.json().unwrap();
        if ok { Ok(v["value"].clone()) } else { Err(v) }
    }

    fn goto(&self, url: &str) {
        self.cmd("/url", &json!({ "url": url })).unwrap();
    }

    fn js(&self, script: &str) -> Value {
        self.cmd("/execute/sync", &json!({ "script": script, "args": [] }))
            .unwrap_or_else(|e| panic!("script failed: {e}"))
    }

    /// Polls until `css` finds an element (bounded), returns its id.
    fn wait_for(&self, css: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let found = self.cmd(
                "/element",
                &json!({ "using": "css selector", "value": css }),
            );
            if let Ok(v) = found {
                return v[ELEMENT].as_str().unwrap().to_owned();
            }
            if Instant::now() > deadline {
                panic!(
                    "no element {css:?}; the page shows:\n{}",
                    self.js("return document.body.innerText")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Finds `css` and runs `action` on it, finding it again when the page re-rendered
    /// it in between (a "stale element reference"), within the usual bound.
    fn on_element(&self, css: &str, action: impl Fn(&str) -> Result<Value, Value>) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let id = self.wait_for(css);
            match action(&id) {
                Ok(v) => return v,
                Err(e) if e["value"]["error"] == "stale element reference" => {
                    assert!(Instant::now() < deadline, "{css:?} stays stale: {e}");
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("{css:?}: {e}"),
            }
        }
    }

    fn click(&self, css: &str) {
        self.on_element(css, |id| {
            self.cmd(&format!("/element/{id}/click"), &json!({}))
        });
    }

    fn type_into(&self, css: &str, text: &str) {
        self.on_element(css, |id| {
            self.cmd(&format!("/element/{id}/value"), &json!({ "text": text }))
        });
    }

    fn text_of(&self, css: &str) -> String {
        self.on_element(css, |id| self.get(&format!("/element/{id}/text")))
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Whether a JavaScript dialog (alert) is open.
    fn alert_open(&self) -> bool {
        self.get("/alert/text").is_ok()
    }

    fn sign_in(&self, base: &str, name: &str) {
        self.goto(&format!("{base}/"));
        self.type_into("#signin-name", name);
        self.type_into("#signin-password", PW);
        self.click("#signin-submit");
        self.wait_for("#signout:not([hidden])");
    }

    /// Waits (bounded) for the one finished download and returns its name and bytes,
    /// emptying the folder for the next.
    fn downloaded(&self) -> (String, Vec<u8>) {
        let deadline = Instant::now() + WAIT;
        loop {
            let names = list(self.downloads.path());
            let partial = names.iter().any(|n| n.ends_with(".crdownload"));
            if let [name] = names.as_slice()
                && !partial
            {
                let path = self.downloads.path().join(name);
                let bytes = std::fs::read(&path).unwrap();
                std::fs::remove_file(&path).unwrap();
                return (name.clone(), bytes);
            }
            if Instant::now() > deadline {
                panic!("no single finished download; the folder has {names:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn list(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

macro_rules! driver_or_skip {
    () => {
        match Driver::start() {
            Some(d) => d,
            None => {
                println!("SKIPPED: chromium or chromedriver is not installed");
                return;
            }
        }
    };
}

// ---- browser tests -----------------------------------------------------------------

#[test]
fn teacher_opens_a_students_file_and_downloads_an_old_version() {
    let server = class();
    let d = driver_or_skip!();
    d.sign_in(&server.url, "teach");

    d.click("a[data-user=\"alice\"]");
    d.click("a[data-dir=\"Docs\"]");
    d.click("a[data-file=\"essay.txt\"]");
    d.wait_for("#versions li");
    let shown: Vec<String> = serde_json::from_value(
        d.js("return [...document.querySelectorAll('#versions li')].map(li => li.dataset.sha256)"),
    )
    .unwrap();
    assert_eq!(
        shown,
        [sha256_hex(FINAL), sha256_hex(DRAFT)],
        "newest first"
    );
    let first = d.text_of("#versions li:last-child");
    assert!(first.contains(&sha256_hex(DRAFT)[..8]), "{first}");
    assert!(first.contains("12 B"), "{first}");

    d.click(&format!(
        "#versions li[data-sha256=\"{}\"] a",
        sha256_hex(DRAFT)
    ));
    assert_eq!(d.downloaded(), ("essay.txt".to_owned(), DRAFT.to_vec()));
    assert!(!d.alert_open());

    // Back on the class page: collect the essays and download them as one zip.
    d.click("a.brand");
    d.type_into("#collect-pattern", "Docs/essay*");
    d.click("#collect-form button[type=submit]");
    d.click("#collect-zip");
    let (name, zip) = d.downloaded();
    assert_eq!(name, "collection.zip");
    assert_eq!(&zip[..4], b"PK\x03\x04");
    let summary = d.text_of("#collect-result");
    assert!(
        summary.contains("1 on time, 0 late only, 1 missing"),
        "{summary}"
    );
}

#[test]
fn a_hostile_file_name_shows_as_text_and_runs_nothing() {
    let server = class();
    let d = driver_or_skip!();
    d.sign_in(&server.url, "teach");
    d.goto(&format!("{}/#/tree/alice/Docs", server.url));
    d.wait_for("#entries");
    let names: Vec<String> = serde_json::from_value(
        d.js("return [...document.querySelectorAll('#entries a')].map(a => a.textContent)"),
    )
    .unwrap();
    assert!(names.iter().any(|n| n == HOSTILE), "{names:?}");
    assert_eq!(d.js("return document.querySelectorAll('img').length"), 0);
    assert!(!d.alert_open());

    // Its own page: the name as the heading's text.
    d.click(&format!(
        "a[data-file=\"{}\"]",
        HOSTILE.replace('"', "\\\"")
    ));
    d.wait_for("#versions li");
    assert_eq!(d.text_of("#view h1"), HOSTILE);
    assert_eq!(d.js("return document.querySelectorAll('img').length"), 0);

    // Opening the stored file itself downloads it; it is never rendered on the site.
    d.goto(&format!(
        "{}/api/v1/files/alice/Docs/{}",
        server.url,
        encode(HOSTILE)
    ));
    // (Chromium replaces '<' and '>' in the saved file's name.)
    let (name, bytes) = d.downloaded();
    assert_eq!(bytes, EVIL);
    assert!(name.ends_with(".html"), "{name}");
    assert!(!d.alert_open(), "no script from the stored file ran");
}

#[test]
fn a_student_cannot_reach_another_students_pages() {
    let server = class();
    let d = driver_or_skip!();
    d.sign_in(&server.url, "bob");
    // Bob's home is his own files; there is no class list.
    d.wait_for("a[data-dir=\"Private\"]");
    assert_eq!(
        d.js("return document.querySelectorAll('a[data-user]').length"),
        0
    );

    // Editing the address to alice's folder or file shows a refusal and nothing of hers.
    for hash in [
        "#/tree/alice/",
        "#/tree/alice/Docs",
        "#/file/alice/Docs/essay.txt",
    ] {
        d.goto(&format!("{}/{hash}", server.url));
        let error = d.text_of("#view-error");
        assert!(error.contains("another user"), "{hash}: {error}");
        assert_eq!(
            d.js("return document.querySelectorAll('#entries, #versions').length"),
            0,
            "{hash}"
        );
        let body = d.js("return document.body.innerText");
        assert!(!body.as_str().unwrap().contains("essay"), "{hash}: {body}");
    }
    // Going round the page with the session cookie does not help either.
    let status = d.cmd(
        "/execute/async",
        &json!({"script": "const done = arguments[0]; \
            Promise.all(['/api/v1/tree/alice/', '/api/v1/users', \
              '/api/v1/files/alice/Docs/essay.txt'] \
              .map(u => fetch(u).then(r => r.status))).then(done);",
            "args": []}),
    );
    assert_eq!(status.unwrap(), json!([403, 403, 403]));
}

// ---- HTTP-level rules of the page (no browser needed) -----------------------------

#[test]
fn page_sessions_csrf_headers_and_throttling() {
    let server = class();
    let c = client();

    let page = c.get(server.at("/")).send().unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("default-src 'none'"));
    assert_eq!(page.headers()["x-content-type-options"], "nosniff");
    assert!(page.text().unwrap().contains("/assets/app.js"));

    // Stored content: always an attachment, never sniffed, sandboxed.
    let file = c
        .get(server.at(&format!("/api/v1/files/alice/Docs/{}", encode(HOSTILE))))
        .basic_auth("alice", Some(PW))
        .send()
        .unwrap();
    assert_eq!(file.status(), StatusCode::OK);
    let disposition = file.headers()["content-disposition"].to_str().unwrap();
    assert!(disposition.starts_with("attachment;"), "{disposition}");
    assert_eq!(file.headers()["x-content-type-options"], "nosniff");
    assert_eq!(file.headers()["content-type"], "application/octet-stream");
    assert!(
        file.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("sandbox")
    );

    // Sign-in: JSON only; the cookie is HttpOnly and SameSite=Strict.
    let form = c
        .post(server.at("/web/login"))
        .form(&[("name", "alice"), ("password", PW)])
        .send()
        .unwrap();
    assert_eq!(form.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let login = c
        .post(server.at("/web/login"))
        .json(&json!({"name": "alice", "password": PW}))
        .send()
        .unwrap();
    assert_eq!(login.status(), StatusCode::OK);
    let cookie = login.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    let pair = cookie.split(';').next().unwrap().to_owned();
    let session: Value = login.json().unwrap();
    let csrf = session["csrf"].as_str().unwrap().to_owned();
    assert_eq!(session["name"], "alice");

    // The cookie reads, but never writes.
    let read = c
        .get(server.at("/api/v1/tree/alice/"))
        .header("cookie", &pair)
        .send()
        .unwrap();
    assert_eq!(read.status(), StatusCode::OK);
    let write = c
        .put(server.at("/api/v1/files/alice/x.txt"))
        .header("cookie", &pair)
        .header("X-Content-SHA256", sha256_hex(b"x"))
        .body("x")
        .send()
        .unwrap();
    assert_eq!(write.status(), StatusCode::UNAUTHORIZED);
    assert!(
        support::stored_versions(&server.data)
            .iter()
            .all(|p| !p.starts_with("alice/x.txt"))
    );

    // Sign-out needs the CSRF token and a same-site origin.
    let no_token = c
        .post(server.at("/web/logout"))
        .header("cookie", &pair)
        .send()
        .unwrap();
    assert_eq!(no_token.status(), StatusCode::FORBIDDEN);
    let cross_site = c
        .post(server.at("/web/logout"))
        .header("cookie", &pair)
        .header("x-csrf-token", &csrf)
        .header("origin", "http://evil.example")
        .send()
        .unwrap();
    assert_eq!(cross_site.status(), StatusCode::FORBIDDEN);
    let out = c
        .post(server.at("/web/logout"))
        .header("cookie", &pair)
        .header("x-csrf-token", &csrf)
        .send()
        .unwrap();
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    let after = c
        .get(server.at("/api/v1/tree/alice/"))
        .header("cookie", &pair)
        .send()
        .unwrap();
    assert_eq!(after.status(), StatusCode::UNAUTHORIZED);

    // Guessing: a few failures are 401, then even the right password waits (429),
    // on the page and over HTTP Basic alike; other users are not affected.
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let r = c
            .post(server.at("/web/login"))
            .header("x-ects-web", "1")
            .json(&json!({"name": "bob", "password": "guess"}))
            .send()
            .unwrap();
        assert!(!r.headers().contains_key("www-authenticate"));
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429]);
    let basic = c
        .get(server.at("/api/v1/tree/bob/"))
        .basic_auth("bob", Some(PW))
        .send()
        .unwrap();
    assert_eq!(basic.status(), StatusCode::TOO_MANY_REQUESTS);
    let other = c
        .get(server.at("/api/v1/tree/alice/"))
        .basic_auth("alice", Some(PW))
        .send()
        .unwrap();
    assert_eq!(other.status(), StatusCode::OK);
}
