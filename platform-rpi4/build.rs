//! Links the EL2 image where TF-A's rpi4 port enters BL33 (rpi4.ld) with the
//! SPMC's shared sections (platform-qemu/spmc-sections.ld).

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rustc-link-arg-bins=-T{dir}/rpi4.ld");
    println!("cargo:rustc-link-arg-bins=-T{dir}/../platform-qemu/spmc-sections.ld");
    for f in ["rpi4.ld", "../platform-qemu/spmc-sections.ld"] {
        println!("cargo:rerun-if-changed={f}");
    }
}
