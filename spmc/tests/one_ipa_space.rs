//! Stage 2 with feature `one-ipa-space` (non-secure EL2, platform-rpi4):
//! a partition's two IPA spaces are one table, the one VTTBR_EL2 loads.
//! Run with `cargo test -p spmc --features one-ipa-space --test one_ipa_space`;
//! without the feature the same test checks the two tables stay apart.

use spmc::addr::{Ipa, IpaSpace, Pa};
use spmc::sp_manifest::Access;
use spmc::stage2::{Kind, S2Error, Stage2};

const RW: Kind = Kind::Memory(Access {
    read: true,
    write: true,
    exec: false,
});

#[test]
fn shares_land_in_the_table_vttbr_loads() {
    let mut s2 = Stage2::new(7);
    // The trusted VM's own memory, and a general VM's page shared at IPA = PA.
    s2.map(
        IpaSpace::Secure,
        Ipa(0x1000_0000),
        Pa(0x0060_0000),
        0x1000,
        RW,
    )
    .unwrap();
    s2.map(
        IpaSpace::NonSecure,
        Ipa(0x4000_0000),
        Pa(0x4000_0000),
        0x1000,
        RW,
    )
    .unwrap();
    let root = s2.vttbr() & !(0xFFFF << 48);
    assert_eq!(s2.vttbr() >> 48, 7);
    if cfg!(feature = "one-ipa-space") {
        // VTTBR_EL2 translates both: the share and the VM's own memory.
        assert_eq!(root, s2.vsttbr());
        assert!(s2.lookup(IpaSpace::NonSecure, Ipa(0x1000_0000)).is_some());
        assert!(s2.lookup(IpaSpace::Secure, Ipa(0x4000_0000)).is_some());
        // A share that would land on the VM's own memory is refused.
        assert_eq!(
            s2.map(
                IpaSpace::NonSecure,
                Ipa(0x1000_0000),
                Pa(0x4000_1000),
                0x1000,
                RW
            ),
            Err(S2Error::AlreadyMapped)
        );
    } else {
        assert_ne!(root, s2.vsttbr());
        assert!(s2.lookup(IpaSpace::NonSecure, Ipa(0x1000_0000)).is_none());
        s2.map(
            IpaSpace::NonSecure,
            Ipa(0x1000_0000),
            Pa(0x4000_1000),
            0x1000,
            RW,
        )
        .unwrap();
    }
}
