//! Links WinFsp's DLL as delay-loaded when building for Windows, so `ects.exe` starts
//! (and `server`, `backup`, `restore`, … run) on machines without WinFsp; only
//! `ects mount` loads it (src/drive/winfsp.rs). Nothing happens on other targets.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    #[cfg(windows)]
    if std::env::var_os("CARGO_CFG_WINDOWS").is_some() {
        winfsp::build::winfsp_link_delayload();
    }
}
