//! Links the partition at its IPA with its own section layout (`sp.ld`).

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rustc-link-arg-bins=-T{dir}/sp.ld");
    println!("cargo:rerun-if-changed=sp.ld");
}
