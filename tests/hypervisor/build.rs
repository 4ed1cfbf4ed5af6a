//! Links the hypervisor at BL33's load address (0x60000000 on TF-A's QEMU port).

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rustc-link-arg-bins=-T{dir}/memory.ld");
    println!("cargo:rustc-link-arg-bins=-T{dir}/../baremetal/image.ld");
    println!("cargo:rerun-if-changed=memory.ld");
    println!("cargo:rerun-if-changed=../baremetal/image.ld");
}
