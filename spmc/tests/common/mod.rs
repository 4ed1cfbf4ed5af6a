//! Helpers shared by the host tests: fixture paths and DTS compilation.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::path::PathBuf;
use std::process::Command;

/// The repository's top directory.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Compiles a DTS file with `dtc` and returns the blob.
///
/// `cargo xtask test` installs device-tree-compiler before it runs the host tests.
pub fn dtb(path: &std::path::Path) -> Vec<u8> {
    let out = Command::new("dtc")
        .args(["-q", "-I", "dts", "-O", "dtb"])
        .arg(path)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run dtc ({e}): install device-tree-compiler or run `cargo xtask test`")
        });
    assert!(
        out.status.success(),
        "dtc failed on {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Compiles a manifest fixture from `tests/fixtures/manifests`.
pub fn manifest_fixture(name: &str) -> Vec<u8> {
    dtb(&repo_root().join("tests/fixtures/manifests").join(name))
}

pub mod heap;
pub mod world;
