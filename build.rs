//! Links WinFsp's DLL as delay-loaded when building for Windows, so `ects.exe` starts
//! (and `server`, `backup`, `restore`, … run) on machines without WinFsp; only
//! `ects mount` loads it (src/drive/winfsp.rs). Nothing happens on other targets.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // The build script runs on the host: on a Windows host building for MSVC.
    #[cfg(all(windows, target_env = "msvc"))]
    if std::env::var_os("CARGO_CFG_WINDOWS").is_some()
        && std::env::var("CARGO_CFG_TARGET_ENV").is_ok_and(|e| e == "msvc")
    {
        winfsp::build::winfsp_link_delayload();
    }
}
