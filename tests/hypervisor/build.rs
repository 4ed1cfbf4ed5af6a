//! Links the hypervisor at BL33's load address (0x60000000 on TF-A's QEMU
//! port; with feature `sbsa`, 0x10020000000 on its qemu_sbsa port).

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let memory = if std::env::var_os("CARGO_FEATURE_SBSA").is_some() {
        "memory-sbsa.ld"
    } else {
        "memory.ld"
    };
    println!("cargo:rustc-link-arg-bins=-T{dir}/{memory}");
    println!("cargo:rustc-link-arg-bins=-T{dir}/../baremetal/image.ld");
    println!("cargo:rerun-if-changed=memory.ld");
    println!("cargo:rerun-if-changed=memory-sbsa.ld");
    println!("cargo:rerun-if-changed=../baremetal/image.ld");
}
