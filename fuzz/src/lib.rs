//! Shared by the fuzz targets: a booted SPMC over the fake platform with the
//! real QEMU partition manifests, a meter of the heap the SPMC takes, and a
//! driver that decodes bytes into calls from the normal world and from the
//! partitions and checks the contract after each (docs/fuzzing.md).

pub mod driver;
pub mod heap;
pub mod input;
pub mod world;
