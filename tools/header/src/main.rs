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
    let Ok(text) = String::from_utf8(text) else {
        eprintln!("groupcache-header: cbindgen wrote something that is not UTF-8");
        return ExitCode::FAILURE;
    };
    let text = without_trailing_enum_commas(&text).into_bytes();
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
