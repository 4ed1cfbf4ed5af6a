//! The GICv2 encoding of the core's list-register images.
//!
//! [`crate::vcpu::VirtualGic`] keeps a vCPU's list registers as images of
//! the GICv3 ICH_LR<n>_EL2 (GICv3 architecture §12.4.6), whatever the
//! board's GIC. A GICv2 with the virtualisation extension (the Raspberry
//! Pi 4's GIC-400) has 32-bit GICH_LR<n> registers instead (GICv2
//! architecture IHI0048B §5.3.9): the arch layer converts with these two
//! functions when it loads and saves a vCPU's interface, so the core's
//! interrupt code (injection, `holds`, `in_flight`, the end of a hardware
//! interrupt) is the same on both.
//!
//! | field | ICH_LR (GICv3) | GICH_LR (GICv2) |
//! |---|---|---|
//! | virtual INTID | [31:0] | [9:0] |
//! | physical INTID (HW = 1) | [41:32] | [19:10] |
//! | priority | [55:48] | [27:23] (the top 5 bits) |
//! | group 1 | 60 | 30 |
//! | HW | 61 | 31 |
//! | state | [63:62] | [29:28] |
//!
//! A GICv2 has 1020 INTIDs and 32 priority levels in its list registers:
//! the core only injects INTIDs below 1020 (`sp_manifest` refuses larger
//! claims), and the low 3 bits of a priority are dropped, as a GICv3 with
//! 5 priority bits would. An invalid list register (state 0) converts to
//! 0 both ways: the core reads 0 as a free register.

/// The GICv2 GICH_LR value for the GICv3 ICH_LR image `lr`.
pub fn lr_to_gicv2(lr: u64) -> u32 {
    let state = (lr >> 62) & 3;
    if state == 0 {
        return 0;
    }
    let hw = (lr >> 61) & 1;
    let group1 = (lr >> 60) & 1;
    let priority = (lr >> 48) & 0xFF;
    let virtual_id = lr & 0x3FF;
    let physical_id = if hw != 0 { (lr >> 32) & 0x3FF } else { 0 };
    (hw << 31 | group1 << 30 | state << 28 | (priority >> 3) << 23 | physical_id << 10 | virtual_id)
        as u32
}

/// The GICv3 ICH_LR image for the GICv2 GICH_LR value `lr`.
pub fn lr_from_gicv2(lr: u32) -> u64 {
    let lr = lr as u64;
    let state = (lr >> 28) & 3;
    if state == 0 {
        return 0;
    }
    let hw = (lr >> 31) & 1;
    let group1 = (lr >> 30) & 1;
    let priority = ((lr >> 23) & 0x1F) << 3;
    let virtual_id = lr & 0x3FF;
    let physical_id = if hw != 0 { (lr >> 10) & 0x3FF } else { 0 };
    state << 62 | hw << 61 | group1 << 60 | priority << 48 | physical_id << 32 | virtual_id
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vcpu::VirtualGic;

    #[test]
    fn a_hardware_interrupt_round_trips() {
        let mut v = VirtualGic::default();
        v.inject(27, Some(27), 0xA0).unwrap();
        let v2 = lr_to_gicv2(v.lr[0]);
        // HW, group 1, pending, priority 0xA0 >> 3 = 0x14, pINTID 27, vINTID 27.
        assert_eq!(v2, 1 << 31 | 1 << 30 | 1 << 28 | 0x14 << 23 | 27 << 10 | 27);
        assert_eq!(lr_from_gicv2(v2), v.lr[0]);
    }

    #[test]
    fn a_virtual_interrupt_round_trips_and_keeps_its_state() {
        let mut v = VirtualGic::default();
        v.inject(5, None, 0x80).unwrap();
        let pending = lr_to_gicv2(v.lr[0]);
        assert_eq!(pending, 1 << 30 | 1 << 28 | 0x10 << 23 | 5);
        // The guest acknowledged it: active (state 0b10), as GICH shows it.
        let active = (pending & !(3 << 28)) | 2 << 28;
        let back = lr_from_gicv2(active);
        assert_eq!(back >> 62, 2);
        assert!(
            VirtualGic {
                lr: [back, 0, 0, 0],
                ..v
            }
            .holds(5)
        );
    }

    #[test]
    fn low_priority_bits_are_dropped() {
        let mut v = VirtualGic::default();
        v.inject(40, None, 0x47).unwrap();
        assert_eq!((lr_from_gicv2(lr_to_gicv2(v.lr[0])) >> 48) & 0xFF, 0x40);
    }

    #[test]
    fn invalid_is_free_both_ways() {
        // Stale IDs in an invalid register are not an interrupt.
        assert_eq!(lr_from_gicv2(27 << 10 | 27), 0);
        assert_eq!(lr_to_gicv2(27), 0);
        assert!(
            !VirtualGic {
                lr: [lr_from_gicv2(27), 0, 0, 0],
                ..Default::default()
            }
            .holds(27)
        );
    }
}
