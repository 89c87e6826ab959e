//! Links WinFsp's DLL as delay-loaded when building for Windows (MSVC), so `ects.exe`
//! starts (and `server`, `backup`, `restore`, … run) on machines without WinFsp; only
//! `ects mount` loads it (src/drive/winfsp.rs). Nothing happens on other targets.
//!
//! The build script runs on the *host*: `cfg(windows)` here would describe the machine
//! building, not the one running `ects.exe`, so a cross build from Linux linked WinFsp
//! eagerly. Decide on the target Cargo reports instead. The two link arguments do what
//! `winfsp::build::winfsp_link_delayload` does, without a build dependency.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    if var("CARGO_CFG_TARGET_OS") != "windows" || var("CARGO_CFG_TARGET_ENV") != "msvc" {
        return;
    }
    let dll = match var("CARGO_CFG_TARGET_ARCH").as_str() {
        "x86" => "winfsp-x86.dll",
        "aarch64" => "winfsp-a64.dll",
        _ => "winfsp-x64.dll",
    };
    // Both as link arguments, so they reach every executable alike: a `-l delayimp`
    // only reaches those that link the library, and lld-link refuses /DELAYLOAD in
    // one without the helper (e.g. a test suite that is empty on Windows).
    println!("cargo:rustc-link-arg=delayimp.lib");
    println!("cargo:rustc-link-arg=/DELAYLOAD:{dll}");
}
