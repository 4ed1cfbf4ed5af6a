//! The whole dispatcher over the fake platform: a booted SPMC driven by a
//! sequence of calls from the normal world and from partitions on two
//! cores, with the memory contract checked after every step
//! (`spmc_fuzz::driver`).

#![no_main]

use libfuzzer_sys::fuzz_target;

#[global_allocator]
static HEAP: spmc_fuzz::heap::Counting = spmc_fuzz::heap::Counting;

fuzz_target!(|data: &[u8]| {
    spmc_fuzz::driver::Driver::new().run(data);
});
