//! The real `ects server` binary on a loopback port: start-up rules, the SPEC layout
//! for the original's example path, Unicode round trips, the original client's
//! `POST /upload`, TLS, and a graceful SIGTERM that lets an upload in flight finish.

mod support;

use std::collections::BTreeSet;
#[cfg(unix)]
use std::io::Read;
#[cfg(unix)]
use std::path::Path;
#[cfg(unix)]
use std::process::Command;
#[cfg(unix)]
use std::sync::mpsc;
use std::time::Duration;
#[cfg(unix)]
use std::time::Instant;

use reqwest::StatusCode;
use reqwest::blocking::Client;
use support::{Role, TestServer, sha256_hex, temp_dir, temp_files};

const USER: &str = "asdf";
const PASSWORD: &str = "correct horse battery staple";

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

fn one_user(args: &[&str]) -> TestServer {
    TestServer::with_users(&[(USER, Role::Student, PASSWORD)], args)
}

/// Percent-encodes each component of `path` for a URL (spaces, brackets, Unicode…).
fn encode(path: &str) -> String {
    path.split('/')
        .map(|c| {
            percent_encoding::utf8_percent_encode(c, percent_encoding::NON_ALPHANUMERIC).to_string()
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn put(
    client: &Client,
    server: &TestServer,
    path: &str,
    body: &[u8],
) -> reqwest::blocking::Response {
    client
        .put(server.at(&format!("/api/v1/files/{USER}/{}", encode(path))))
        .basic_auth(USER, Some(PASSWORD))
        .header("X-Content-SHA256", sha256_hex(body))
        .body(body.to_vec())
        .send()
        .unwrap()
}

#[test]
fn refuses_to_start_without_users_and_says_how_to_add_one() {
    let data = temp_dir();
    let failure = TestServer::try_start(data.path(), &[])
        .err()
        .expect("it must not start");
    assert_eq!(
        failure.status.and_then(|s| s.code()),
        Some(2),
        "{}",
        failure.stderr
    );
    assert!(
        failure.stderr.contains("ects user add NAME --data")
            && failure.stderr.contains("--allow-registration"),
        "unhelpful message: {}",
        failure.stderr
    );
    // Nothing was created: no store appeared in the data folder.
    assert!(!data.path().join("uploads").exists());

    // With registration on, an empty server is fine.
    let server = TestServer::start(data.path(), &["--allow-registration"]);
    let r = client().get(server.at("/api/v1/health")).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[test]
fn second_server_on_the_same_data_is_refused() {
    let server = one_user(&[]);
    let failure = TestServer::try_start(&server.data, &[])
        .err()
        .expect("two servers must not share a data folder");
    assert_ne!(failure.status.and_then(|s| s.code()), Some(0));
    assert!(
        failure.stderr.contains("in use by another ects process"),
        "{}",
        failure.stderr
    );
}

#[test]
fn original_example_path_and_unicode_round_trip() {
    let mut server = one_user(&[]);
    let client = client();
    let doc = b"PK\x03\x04 not really a docx".as_slice();
    let h = sha256_hex(doc);
    let path = "Documents/New folder/New Microsoft Word Document - Copy (13).docx";
    let r = put(&client, &server, path, doc);
    assert_eq!(r.status(), StatusCode::CREATED);
    let want = server.data.join(format!("uploads/{USER}/{path}/{h}.docx"));
    assert!(want.is_file(), "not at {}", want.display());
    assert_eq!(std::fs::read(&want).unwrap(), doc);

    let names = [
        "Übung/日本語 [draft] {1}.txt",
        "Ελληνικά/ñandú #1 & 100%.md",
        "emoji 🎉/  leading and trailing spaces  .txt",
        "a/.bashrc",
    ];
    for (i, name) in names.iter().enumerate() {
        let body = format!("version {i} of {name}");
        let r = put(&client, &server, name, body.as_bytes());
        assert_eq!(r.status(), StatusCode::CREATED, "{name}");
    }
    // The server restarts on the same data: everything is still there.
    server.restart();
    for (i, name) in names.iter().enumerate() {
        let r = client
            .get(server.at(&format!("/api/v1/files/{USER}/{}", encode(name))))
            .basic_auth(USER, Some(PASSWORD))
            .send()
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{name}");
        assert_eq!(r.text().unwrap(), format!("version {i} of {name}"));
    }
    let r = client
        .get(server.at(&format!("/api/v1/tree/{USER}")))
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .unwrap();
    let tree: serde_json::Value = r.json().unwrap();
    let dirs: BTreeSet<&str> = tree["dirs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    let want: BTreeSet<&str> = ["Documents", "a", "emoji 🎉", "Ελληνικά", "Übung"].into();
    assert_eq!(dirs, want);

    // The log has one line per request and never a secret or a hash.
    let log = server.log();
    assert!(
        log.contains("method=PUT") && log.contains("status=201"),
        "{log}"
    );
    assert!(!log.contains(PASSWORD), "the password is in the log");
    assert!(
        !log.to_lowercase().contains("authorization"),
        "credentials in the log"
    );
    assert!(!log.contains(&h), "a hash is in the log");
}

/// The original client: multipart `upload_file` + `path`, Content-MD5 in hex, Basic auth.
#[test]
fn legacy_upload_as_the_original_client_called_it() {
    use md5::Digest as _;
    let server = one_user(&[]);
    let doc = b"a document saved on B:".as_slice();
    let name = "New Microsoft Word Document - Copy (13).docx";
    let boundary = "a7f3c2e1d0b9";
    let mut body = Vec::new();
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"path\"\r\n\r\n\
             Documents/New folder/{name}\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"upload_file\"; filename=\"{name}\"\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(doc);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let send = |md5: String| {
        client()
            .post(server.at("/upload"))
            .basic_auth(USER, Some(PASSWORD))
            .header(
                "Content-Type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .header("Content-MD5", md5)
            .body(body.clone())
            .send()
            .unwrap()
    };
    let r = send(hex::encode(md5::Md5::digest(b"not the content")));
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(support::stored_versions(&server.data).is_empty());
    assert!(temp_files(&server.data).is_empty());

    let r = send(hex::encode(md5::Md5::digest(doc)));
    assert_eq!(r.status(), StatusCode::OK);
    let json: serde_json::Value = r.json().unwrap();
    let h = sha256_hex(doc);
    assert_eq!(json["sha256"], h.as_str());
    let want = server.data.join(format!(
        "uploads/{USER}/Documents/New folder/{name}/{h}.docx"
    ));
    assert!(want.is_file(), "not at {}", want.display());
}

/// Makes a CA and a certificate for 127.0.0.1 signed by it, with the openssl CLI.
#[cfg(unix)]
fn make_tls(dir: &Path) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("running openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=ects test CA",
        ],
    ]
    .concat());
    run(&[
        &["req"][..],
        &ec,
        &[
            "-keyout",
            "key.pem",
            "-out",
            "leaf.csr",
            "-subj",
            "/CN=localhost",
        ],
    ]
    .concat());
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
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
        "cert.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
}

#[test]
#[cfg(unix)] // makes its certificates with the openssl command, which Windows lacks
fn serves_https_with_a_given_certificate() {
    let tls = temp_dir();
    make_tls(tls.path());
    let cert = tls.path().join("cert.pem");
    let key = tls.path().join("key.pem");
    let server = one_user(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    assert!(
        server.url.starts_with("https://127.0.0.1:"),
        "{}",
        server.url
    );
    let ca =
        reqwest::Certificate::from_pem(&std::fs::read(tls.path().join("ca.pem")).unwrap()).unwrap();
    let client = Client::builder().add_root_certificate(ca).build().unwrap();
    let r = client.get(server.at("/api/v1/health")).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = put(&client, &server, "secure.txt", b"over TLS");
    assert_eq!(r.status(), StatusCode::CREATED);
    // Plain HTTP to the TLS port does not get an answer.
    let plain = server.url.replace("https://", "http://");
    assert!(reqwest::blocking::get(format!("{plain}/api/v1/health")).is_err());
}

/// A request body fed from a channel, so the test decides when each part is sent.
#[cfg(unix)]
struct Feed(mpsc::Receiver<Vec<u8>>, Vec<u8>);

#[cfg(unix)]
impl Read for Feed {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.1.is_empty() {
            match self.0.recv() {
                Ok(chunk) => self.1 = chunk,
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.1.len());
        buf[..n].copy_from_slice(&self.1[..n]);
        self.1.drain(..n);
        Ok(n)
    }
}

#[test]
#[cfg(unix)] // SIGTERM; Windows stops a service through the service manager
fn sigterm_lets_an_upload_in_flight_finish_then_exits_0() {
    let mut server = one_user(&[]);
    let content: Vec<u8> = (0..4u32 << 20).map(|i| (i % 251) as u8).collect();
    let h = sha256_hex(&content);
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let url = server.at(&format!("/api/v1/files/{USER}/in-flight.bin"));
    let total = content.len() as u64;
    let upload = std::thread::spawn(move || {
        let body = reqwest::blocking::Body::sized(Feed(rx, Vec::new()), total);
        client()
            .put(url)
            .basic_auth(USER, Some(PASSWORD))
            .header("X-Content-SHA256", h)
            .body(body)
            .send()
            .map(|r| r.status())
    });
    let (first, rest) = content.split_at(1 << 20);
    tx.send(first.to_vec()).unwrap();
    // The upload is in flight once the server stages it in tmp/.
    let deadline = Instant::now() + support::PROCESS_TIMEOUT;
    while temp_files(&server.data).is_empty() {
        assert!(Instant::now() < deadline, "the upload never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    server.signal(libc::SIGTERM);
    // New connections are refused once the server is shutting down.
    let deadline = Instant::now() + support::PROCESS_TIMEOUT;
    while client().get(server.at("/api/v1/health")).send().is_ok() {
        assert!(Instant::now() < deadline, "still accepting after SIGTERM");
        std::thread::sleep(Duration::from_millis(10));
    }
    for chunk in rest.chunks(256 << 10) {
        tx.send(chunk.to_vec()).unwrap();
    }
    drop(tx);
    let status = upload
        .join()
        .unwrap()
        .expect("the upload in flight was cut off");
    assert_eq!(status, StatusCode::CREATED);
    let exit = server.wait_exit();
    assert_eq!(exit.code(), Some(0), "{}", server.log());
    let stored = server.data.join(format!(
        "uploads/{USER}/in-flight.bin/{}.bin",
        sha256_hex(&content)
    ));
    assert_eq!(std::fs::read(stored).unwrap(), content);
}
