//! Generates include/groupcache.h from the extern "C" layer with cbindgen.
//! The header is checked in; it is rewritten only when its text changes.

use std::path::PathBuf;

fn main() {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    println!("cargo:rerun-if-changed=src/ffi");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let header = match cbindgen::Builder::new()
        // Only the ffi tree: the C API is exactly what it declares.
        .with_src(dir.join("src/ffi/mod.rs"))
        .with_config(config)
        .generate() {
        Ok(h) => h,
        Err(e) => {
            // A syntax error elsewhere is reported by rustc more helpfully.
            println!("cargo:warning=cbindgen could not generate the header: {e}");
            return;
        }
    };
    let mut text = Vec::new();
    header.write(&mut text);
    let path = dir.join("include/groupcache.h");
    if std::fs::read(&path).ok().as_deref() != Some(&text[..]) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
    }
}
