//! Interrupt claims at non-secure EL2 (`board.rs` calls these).
//!
//! The Raspberry Pi 4 has no secure world: there is no Group 1 Secure
//! interrupt a trusted VM could own, so a manifest claim is refused
//! (`configure_secure` answers false and the core refuses the partition).
//! The GIC-400 is left as TF-A set it up.

/// Refuses every secure-interrupt claim: there is no secure world here.
pub fn configure_secure(
    _intid: u32,
    _priority: u8,
    _level: bool,
    _core: usize,
    _cores: usize,
) -> bool {
    false
}

/// Nothing was configured, so nothing to disable.
pub fn disable(_intid: u32, _cores: usize) {}
