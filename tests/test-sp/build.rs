//! Links the partition at its IPA with its own section layout: `sp.ld` for
//! `test-sp` (the image alone at load-address), `sp-pkg.ld` for
//! `test-sp-pkg` (the image 0x4000 into a package run in place).

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rustc-link-arg-bins=-L{dir}");
    println!("cargo:rustc-link-arg-bin=test-sp=-T{dir}/sp.ld");
    println!("cargo:rustc-link-arg-bin=test-sp-pkg=-T{dir}/sp-pkg.ld");
    for f in ["sp.ld", "sp-pkg.ld", "sp-sections.ld"] {
        println!("cargo:rerun-if-changed={f}");
    }
}
