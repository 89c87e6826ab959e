//! Each failure in the words a student or teacher can act on: the same sentence in
//! `.ects-status.txt`, `ects status` and the CLI (issue 16 item 3). Pure functions of
//! what happened, so the table below tests every case.

use std::time::Duration;

use super::upload::AUTH_FAILED;

/// An HTTP refusal (`status`, the server's own `message`) for a person, as the
/// spool shows it (the failed list adds the status).
pub fn http_failure(
    server: &str,
    status: u16,
    message: &str,
    retry_after: Option<Duration>,
) -> String {
    own_words(server, status, message, retry_after).unwrap_or_else(|| match status {
        s if s >= 500 => format!("server {server}: HTTP {s}: {message}"),
        _ => message.to_owned(),
    })
}

/// The same for a command's error line: statuses without words of their own name the
/// server and the status.
pub fn http_error(server: &str, status: u16, message: &str) -> String {
    if status == 429 {
        // A command does not retry: the server's own words say when to.
        return format!("the ects server at {server} is busy (too many requests): {message}");
    }
    own_words(server, status, message, None).unwrap_or_else(|| match status {
        s if s >= 500 => format!(
            "the ects server at {server} failed (HTTP {s}): {message}. Try again later or ask the admin to check the server's log"
        ),
        s => format!("the ects server at {server} refused the request (HTTP {s}): {message}"),
    })
}

fn own_words(
    server: &str,
    status: u16,
    message: &str,
    retry_after: Option<Duration>,
) -> Option<String> {
    Some(match status {
        401 => format!("{AUTH_FAILED} (server {server})"),
        429 => match retry_after {
            Some(d) => format!(
                "the server {server} is busy (too many requests); trying again in {}",
                seconds(d)
            ),
            None => {
                format!("the server {server} is busy (too many requests); trying again in a moment")
            }
        },
        507 => format!(
            "your space on the server is full — tell your teacher (saved versions wait on this computer; server {server}: {message})"
        ),
        413 => format!("the file is larger than the server {server} accepts: {message}"),
        _ => return None,
    })
}

/// A connection that failed before any HTTP answer, from the innermost cause.
pub fn transport_failure(server: &str, cause: &str) -> String {
    let c = cause.to_ascii_lowercase();
    let https = server.to_ascii_lowercase().starts_with("https://");
    let has = |needles: &[&str]| needles.iter().any(|n| c.contains(n));
    if has(&[
        "unknownissuer",
        "unknown issuer",
        "unknownca",
        "self-signed",
        "self signed",
        "causedasendentity",
    ]) {
        format!(
            "cannot reach the server {server} safely: its certificate is not from an issuer this computer trusts; give the school's CA certificate with --ca-file (or ECTS_CA_FILE)"
        )
    } else if has(&["notvalidforname", "not valid for name"]) {
        format!(
            "cannot reach the server {server} safely: its certificate is for another name; use the name on the certificate in --server"
        )
    } else if https
        && has(&[
            "invalidcontenttype",
            "corrupt message",
            "wrong version number",
        ])
    {
        format!(
            "the server {server} speaks plain HTTP, not HTTPS: use {} in --server",
            swap_scheme(server)
        )
    } else if !https
        && has(&[
            "invalid http version",
            "invalid http status",
            "connection closed before message completed",
            "connection reset",
        ])
    {
        format!(
            "the server {server} seems to speak HTTPS, not plain HTTP: use {} in --server",
            swap_scheme(server)
        )
    } else if has(&["connection refused"]) {
        format!(
            "cannot reach the server {server}: nobody answers there (connection refused); is the server running and the address right?"
        )
    } else if has(&["dns error", "failed to lookup", "name or service not known"]) {
        format!(
            "cannot reach the server {server}: its name is unknown here (DNS); check the address"
        )
    } else if has(&["timed out"]) {
        format!(
            "cannot reach the server {server}: it does not answer (timed out); check the network"
        )
    } else {
        format!("cannot reach the server {server}: {cause}")
    }
}

fn swap_scheme(server: &str) -> String {
    if let Some(rest) = server.strip_prefix("https://") {
        format!("http://{rest}")
    } else if let Some(rest) = server.strip_prefix("http://") {
        format!("https://{rest}")
    } else {
        server.to_owned()
    }
}

/// "1 second", "30 seconds", "1 minute", "5 minutes": whole units, right plural.
pub fn seconds(d: Duration) -> String {
    let s = d.as_secs().max(1);
    if s >= 120 && s.is_multiple_of(60) || s >= 600 {
        plural(s.div_ceil(60), "minute")
    } else {
        plural(s, "second")
    }
}

/// `1 minute`, `2 minutes`.
pub fn plural(n: u64, unit: &str) -> String {
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: &str = "http://ects.lan:8080";
    const SS: &str = "https://ects.lan:8080";

    #[test]
    fn each_http_failure_in_its_own_words() {
        let secs = |n| Some(Duration::from_secs(n));
        let table: &[(u16, &str, Option<Duration>, &str)] = &[
            (
                401,
                "wrong user name or password",
                None,
                "wrong user name or password (server http://ects.lan:8080)",
            ),
            // A disabled account is answered like a wrong password (issue 15 item 11).
            (
                401,
                "this account is disabled; ask a teacher",
                None,
                "wrong user name or password",
            ),
            (
                429,
                "too many sign-ins",
                secs(30),
                "is busy (too many requests); trying again in 30 seconds",
            ),
            (429, "slow down", secs(1), "trying again in 1 second"),
            (429, "slow down", secs(300), "trying again in 5 minutes"),
            (429, "slow down", None, "trying again in a moment"),
            (
                507,
                "quota of 100 MiB reached",
                None,
                "your space on the server is full — tell your teacher",
            ),
            (
                413,
                "larger than 2 GiB",
                None,
                "the file is larger than the server http://ects.lan:8080 accepts: larger than 2 GiB",
            ),
            (503, "shutting down", None, "HTTP 503: shutting down"),
            (409, "a is a folder", None, "a is a folder"),
        ];
        for (status, msg, after, want) in table {
            let got = http_failure(S, *status, msg, *after);
            assert!(
                got.contains(want),
                "{status} {msg:?}: got {got:?}, want {want:?}"
            );
        }
    }

    #[test]
    fn each_connection_failure_in_its_own_words() {
        let table: &[(&str, &str, &str)] = &[
            (
                SS,
                "invalid peer certificate: UnknownIssuer",
                "give the school's CA certificate with --ca-file",
            ),
            (
                SS,
                "invalid peer certificate: Other(OtherError(CaUsedAsEndEntity))",
                "--ca-file",
            ),
            (
                SS,
                "invalid peer certificate: NotValidForName",
                "its certificate is for another name",
            ),
            (
                SS,
                "received corrupt message of type InvalidContentType",
                "speaks plain HTTP, not HTTPS: use http://ects.lan:8080",
            ),
            (
                S,
                "invalid HTTP version parsed",
                "seems to speak HTTPS, not plain HTTP: use https://ects.lan:8080",
            ),
            (
                S,
                "connection closed before message completed",
                "use https://ects.lan:8080",
            ),
            (
                S,
                "could not connect: Connection refused (os error 111)",
                "nobody answers there (connection refused)",
            ),
            (
                S,
                "could not connect: dns error: failed to lookup address information",
                "its name is unknown here (DNS)",
            ),
            (
                S,
                "timed out: operation timed out",
                "it does not answer (timed out)",
            ),
            (
                S,
                "something new",
                "cannot reach the server http://ects.lan:8080: something new",
            ),
        ];
        for (server, cause, want) in table {
            let got = transport_failure(server, cause);
            assert!(got.contains(want), "{cause:?}: got {got:?}, want {want:?}");
        }
    }

    #[test]
    fn command_errors_name_server_and_status_unless_they_have_words() {
        assert!(http_error(S, 409, "a is a folder").contains("(HTTP 409): a is a folder"));
        assert!(http_error(S, 500, "boom").contains("failed (HTTP 500)"));
        assert!(http_error(S, 507, "quota").starts_with("your space on the server is full"));
        let busy = http_error(S, 429, "too many failed sign-ins; try again in 5 minutes");
        assert!(
            busy.ends_with(
                "busy (too many requests): too many failed sign-ins; try again in 5 minutes"
            ),
            "{busy}"
        );
    }

    #[test]
    fn plurals() {
        assert_eq!(plural(1, "minute"), "1 minute");
        assert_eq!(plural(2, "minute"), "2 minutes");
        assert_eq!(seconds(Duration::from_secs(60)), "60 seconds");
        assert_eq!(seconds(Duration::from_secs(3600)), "60 minutes");
    }
}
