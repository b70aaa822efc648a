//! `groupcache-header CRATE_DIR OUT`: writes the C header cbindgen generates
//! from CRATE_DIR/src/ffi under CRATE_DIR/cbindgen.toml (the one
//! configuration) to OUT, rewriting OUT only when its text changes.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [dir, out] = &args[..] else {
        eprintln!("usage: groupcache-header CRATE_DIR OUT (e.g. `. include/groupcache.h`)");
        return ExitCode::from(2);
    };
    let config = match cbindgen::Config::from_file(dir.join("cbindgen.toml")) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("groupcache-header: {}: {e}", dir.join("cbindgen.toml").display());
            return ExitCode::FAILURE;
        }
    };
    let header = match cbindgen::Builder::new()
        // Only the ffi tree: the C API is exactly what it declares.
        .with_src(dir.join("src/ffi/mod.rs"))
        .with_config(config)
        .generate()
    {
        Ok(h) => h,
        Err(e) => {
            eprintln!("groupcache-header: cbindgen could not generate the header: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut text = Vec::new();
    header.write(&mut text);
    if std::fs::read(out).ok().as_deref() == Some(&text[..]) {
        return ExitCode::SUCCESS;
    }
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        if let Err(e) = std::fs::create_dir_all(parent) {
            eprintln!("groupcache-header: {}: {e}", parent.display());
            return ExitCode::FAILURE;
        }
    }
    match std::fs::write(out, text) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("groupcache-header: {}: {e}", out.display());
            ExitCode::FAILURE
        }
    }
}
