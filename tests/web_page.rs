//! The web page's markup rules that a browser applies (issue 16 item 9): an element
//! marked `hidden` (the "Sign out" button on the sign-in form) must stay hidden even
//! where the stylesheet gives its kind a `display` (buttons are `inline-block`), since
//! any author `display` beats the browser's own `[hidden] { display: none }`.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;

use support::client::*;

fn get(url: &str, path: &str) -> String {
    let addr = url.strip_prefix("http://").unwrap();
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body
}

#[test]
fn hidden_wins_over_the_button_style_so_sign_out_is_not_on_the_sign_in_form() {
    let server = Server::start(&[]);
    let page = get(&server.url, "/");
    assert!(
        page.contains(r#"<button id="signout" type="button" hidden>"#),
        "{page}"
    );
    let css = get(&server.url, "/assets/app.css");
    assert!(css.starts_with("HTTP/1.1 200"), "{css}");
    let compact: String = css.split_whitespace().collect();
    assert!(
        compact.contains("button,.button{") && compact.contains("display:inline-block"),
        "the premise: buttons get a display of their own"
    );
    assert!(
        compact.contains("[hidden]{display:none!important;}"),
        "[hidden] must override it:\n{css}"
    );
}
