//! The client library takes a plain `ConnectConfig`; clap's `ConnectArgs` and the
//! password prompt belong to the binary's commands (issue 9 item 2). A library user
//! (the drive, a GUI, a test) never pulls in a terminal prompt.

use std::fs;
use std::path::Path;

fn sources(dir: &Path, out: &mut Vec<(String, String)>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push((p.display().to_string(), fs::read_to_string(&p).unwrap()));
        }
    }
}

#[test]
fn the_client_library_knows_no_command_line() {
    let mut files = Vec::new();
    sources(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src/client"),
        &mut files,
    );
    assert!(files.len() > 10);
    for (path, text) in &files {
        for banned in [
            "crate::cli::",
            "crate::cli;",
            "rpassword",
            "clap::",
            "is_terminal",
        ] {
            assert!(!text.contains(banned), "{path} uses {banned}");
        }
    }
}
