//! Generates include/groupcache.h from the extern "C" layer with cbindgen.
//! The header is checked in; it is rewritten only when its text changes.

use std::path::PathBuf;

fn main() {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    println!("cargo:rerun-if-changed=src/ffi");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    soname();
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let header = match cbindgen::Builder::new()
        // Only the ffi tree: the C API is exactly what it declares.
        .with_src(dir.join("src/ffi/mod.rs"))
        .with_config(config)
        .generate()
    {
        Ok(h) => h,
        Err(e) => {
            // A syntax error elsewhere is reported by rustc more helpfully.
            println!("cargo:warning=cbindgen could not generate the header: {e}");
            return;
        }
    };
    let mut text = Vec::new();
    header.write(&mut text);
    let text = without_trailing_enum_commas(&String::from_utf8(text).expect("cbindgen writes UTF-8"));
    let text = text.into_bytes();
    let path = dir.join("include/groupcache.h");
    if std::fs::read(&path).ok().as_deref() != Some(&text[..]) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
    }
}

/// cbindgen ends every enum's last enumerator with a comma, which C89 and
/// C++98 do not allow (-pedantic warns): this drops it. An enum body is
/// the lines from one starting with `typedef enum`/`enum` and ending with
/// `{` to the next starting with `}`; its last enumerator is the last line
/// before that `}` that is not blank and not part of a comment.
fn without_trailing_enum_commas(text: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let mut fixed: Vec<(usize, &str)> = Vec::new();
    let mut in_enum = false;
    for line in text.lines() {
        let t = line.trim();
        if (t.starts_with("typedef enum") || t.starts_with("enum ")) && t.ends_with('{') {
            in_enum = true;
        } else if in_enum && t.starts_with('}') {
            in_enum = false;
            let last = out.iter().rposition(|l| {
                let l = l.trim();
                !(l.is_empty() || l.starts_with("/*") || l.starts_with('*') || l.starts_with("//"))
            });
            if let Some(i) = last {
                if let Some(stripped) = out[i].strip_suffix(',') {
                    fixed.push((i, stripped));
                }
            }
        }
        out.push(line);
    }
    for (i, line) in fixed {
        out[i] = line;
    }
    let mut s = out.join("\n");
    s.push('\n');
    s
}

/// Gives the library an ELF soname with the version part that promises
/// ABI compatibility: major.minor while the major is 0
/// (libgroupcache.so.0.1: a 0.x minor release may change the ABI), the
/// major alone from 1.0 on. Programs linked against it record that name,
/// so a compatible upgrade (libgroupcache.so.0.1.0 -> 0.1.1 behind the
/// .so.0.1 link `make install` lays out) needs no relink, and an
/// incompatible one is refused by the loader instead of misbehaving. Since
/// such programs look for the soname at run time, the same name is linked
/// next to the library cargo builds, for programs linked against the build
/// tree (`-Ltarget/release -lgroupcache -Wl,-rpath,...`).
fn soname() {
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    let unix = env("CARGO_CFG_TARGET_FAMILY").split(',').any(|f| f == "unix");
    if !unix || env("CARGO_CFG_TARGET_VENDOR") == "apple" {
        return; // not ELF
    }
    let (major, minor) = (env("CARGO_PKG_VERSION_MAJOR"), env("CARGO_PKG_VERSION_MINOR"));
    let soversion = if major == "0" { format!("0.{minor}") } else { major };
    let soname = format!("libgroupcache.so.{soversion}");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,{soname}");
    // OUT_DIR is <target>/<profile>/build/groupcache-<hash>/out.
    #[cfg(unix)]
    if let Some(profile_dir) = PathBuf::from(env("OUT_DIR")).ancestors().nth(3) {
        let link = profile_dir.join(&soname);
        let _ = std::fs::remove_file(&link);
        let _ = std::os::unix::fs::symlink("libgroupcache.so", &link);
    }
}
