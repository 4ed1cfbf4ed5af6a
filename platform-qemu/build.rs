//! Links the SPMC image at its load address with the board's linker script
//! (feature `sbsa`: sbsa-ref; otherwise QEMU virt) and the shared sections.

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let board = if std::env::var_os("CARGO_FEATURE_SBSA").is_some() {
        "spmc-sbsa.ld"
    } else {
        "spmc-virt.ld"
    };
    println!("cargo:rustc-link-arg-bins=-T{dir}/{board}");
    println!("cargo:rustc-link-arg-bins=-T{dir}/spmc-sections.ld");
    for f in ["spmc-virt.ld", "spmc-sbsa.ld", "spmc-sections.ld"] {
        println!("cargo:rerun-if-changed={f}");
    }
}
