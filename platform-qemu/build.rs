//! Links the SPMC image at its load address with the platform's linker script.

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rustc-link-arg-bins=-T{dir}/spmc.ld");
    println!("cargo:rerun-if-changed=spmc.ld");
}
