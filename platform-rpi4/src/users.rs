//! The per-user checks on this board (`rpi4-*` PASS/FAIL lines): the VM
//! layer's calls into the core for general VMs 1-4, as it makes them after
//! trapping a VM's HVC/SMC (the VM's own ID stamped as sender, framework
//! messages refused), and its own VM life-cycle messages. The same policy
//! and answers as the `vtee` stage on QEMU virt (docs/rpi4.md lists which
//! of its checks run here and which do not yet).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use spmc::ffa::Regs;
use test_protocol::ffa::{self as f, fwk};
use test_protocol::{cmd, ids, status};

use crate::platform::{self, Core};

/// FF-A answers the VM layer reads.
type Answer = [u64; 8];

/// The VM layer: what it does with a general VM's trapped FF-A call.
struct Layer<'a> {
    core: &'a mut Core,
}

impl Layer<'_> {
    /// Passes `x` (x0-x7) to the core as the call of endpoint `vm` (0: the
    /// layer itself) and returns the answer; FFA_YIELD/FFA_INTERRUPT of a
    /// trusted VM are resumed with FFA_RUN, as the reference hypervisor does.
    fn raw(&mut self, x: [u64; 8]) -> Answer {
        let mut r = Regs::default();
        r.0[..8].copy_from_slice(&x);
        platform::call(self.core, &mut r);
        let mut n = 0;
        while (r.0[0] == f::YIELD || r.0[0] == f::INTERRUPT_32) && n < 1000 {
            let target = r.0[1] & 0xFFFF_FFFF;
            r = Regs::default();
            r.0[0] = f::RUN;
            r.0[1] = target;
            platform::call(self.core, &mut r);
            n += 1;
        }
        let mut a = [0; 8];
        a.copy_from_slice(&r.0[..8]);
        a
    }

    /// A general VM's direct request as the layer forwards it: the sender
    /// is the VM's own ID whatever w1[31:16] said; no VM-to-VM messages,
    /// no framework messages (DEN0077 v1.2 §18.3: only the hypervisor
    /// sends VM availability messages).
    fn vm_request(&mut self, vm: u16, mut x: [u64; 8]) -> Answer {
        let receiver = x[1] as u16;
        if receiver & 0x8000 == 0 || x[2] as u32 & fwk::FLAG != 0 {
            return [f::ERROR_32, 0, f::DENIED as u32 as u64, 0, 0, 0, 0, 0];
        }
        x[1] = (vm as u64) << 16 | receiver as u64;
        self.raw(x)
    }

    /// `command` with `args` to `dst` from VM `vm`.
    fn req(&mut self, vm: u16, dst: u16, command: u64, args: [u64; 4]) -> Answer {
        self.vm_request(
            vm,
            [
                f::MSG_SEND_DIRECT_REQ_64,
                dst as u64,
                0,
                command,
                args[0],
                args[1],
                args[2],
                args[3],
            ],
        )
    }

    /// A VM availability message from the layer (endpoint 0) to the vTEE
    /// template: 0 or the FF-A error code the acknowledgement carries.
    fn availability(&mut self, kind: u32, vm: u16) -> Result<(), String> {
        let a = self.raw([
            f::MSG_SEND_DIRECT_REQ_32,
            ids::VTEE_TEMPLATE as u64,
            (fwk::FLAG | kind) as u64,
            0xFFFF_FFFF,
            0xFFFF_FFFF,
            vm as u64,
            0,
            0,
        ]);
        let ack = (fwk::FLAG | (kind + 1)) as u64;
        if a[0] == f::MSG_SEND_DIRECT_RESP_32 && a[2] & 0xFFFF_FFFF == ack {
            match a[3] as u32 as i32 {
                0 => Ok(()),
                c => Err(format!("acknowledged with status {c}")),
            }
        } else {
            Err(format!("answer {:#x?}", &a[..4]))
        }
    }
}

/// The FF-A error code of an answer, if it is FFA_ERROR.
fn error_code(a: &Answer) -> Option<i32> {
    (a[0] == f::ERROR_32).then_some(a[2] as u32 as i32)
}

/// A direct response with status OK: its results x4-x7.
fn ok(a: &Answer) -> Result<[u64; 4], String> {
    if a[0] == f::MSG_SEND_DIRECT_RESP_64 && a[3] == status::OK {
        Ok([a[4], a[5], a[6], a[7]])
    } else {
        Err(format!("answer {:#x?}", &a[..5]))
    }
}

fn expect_error(a: &Answer, code: i32) -> Result<(), String> {
    match error_code(a) {
        Some(c) if c == code => Ok(()),
        _ => Err(format!("expected FFA_ERROR({code}), got {:#x?}", &a[..4])),
    }
}

/// Counts of one run.
#[derive(Debug, Default)]
struct Report {
    passed: u32,
    failed: u32,
}

impl Report {
    fn check(&mut self, name: &str, f: impl FnOnce() -> Result<(), String>) {
        match f() {
            Ok(()) => {
                self.passed += 1;
                arch_aarch64::console::line(format_args!("PASS {name}"));
            }
            Err(why) => {
                self.failed += 1;
                arch_aarch64::console::line(format_args!("FAIL {name}: {why}"));
            }
        }
    }
}

/// The four users of the demo.
const USERS: [u16; 4] = [1, 2, 3, 4];

/// Runs the per-user checks; returns (passed, failed).
pub fn run(core: &mut Core) -> (u32, u32) {
    let mut r = Report::default();
    let booted = core.partitions().len();
    let mut l = Layer { core };
    r.check("rpi4-trusted-vms-booted", || {
        // sp1, sp2, tpm, crash-data and crash-undef (the vtee template is
        // kept, not run: its instances are built per user).
        if booted == 5 {
            Ok(())
        } else {
            Err(format!("{booted} trusted VMs"))
        }
    });
    r.check("rpi4-version-1.2", || {
        let a = l.raw([f::VERSION, f::V1_2 as u64, 0, 0, 0, 0, 0, 0]);
        if a[0] == f::V1_2 as u64 {
            Ok(())
        } else {
            Err(format!("{:#x}", a[0]))
        }
    });
    for vm in USERS {
        r.check(&format!("rpi4-vm{vm}-created"), || {
            l.availability(fwk::VM_CREATED, vm)
        });
    }
    let mut tees = Vec::new();
    for vm in USERS {
        r.check(&format!("rpi4-vm{vm}-reaches-own-trusted-vm"), || {
            let id = ok(&l.req(vm, ids::VTEE_TEMPLATE, cmd::WHOAMI, [0; 4]))?[0] as u16;
            let first = ids::VTEE_FIRST_INSTANCE;
            if !(first..first + ids::VTEE_INSTANCES).contains(&id) || tees.contains(&id) {
                return Err(format!("instance {id:#x} (others {tees:x?})"));
            }
            tees.push(id);
            Ok(())
        });
    }
    for vm in USERS {
        r.check(&format!("rpi4-vm{vm}-kv-put"), || {
            ok(&l.req(
                vm,
                ids::VTEE_TEMPLATE,
                cmd::KV_PUT,
                [7, 0x1000 + vm as u64, 0, 0],
            ))
            .map(|_| ())
        });
    }
    for vm in USERS {
        r.check(&format!("rpi4-vm{vm}-kv-isolated"), || {
            let v = ok(&l.req(vm, ids::VTEE_TEMPLATE, cmd::KV_GET, [7, 0, 0, 0]))?[0];
            if v == 0x1000 + vm as u64 {
                Ok(())
            } else {
                Err(format!("read {v:#x}"))
            }
        });
    }
    for vm in USERS {
        r.check(&format!("rpi4-vm{vm}-shared-tpm"), || {
            let x = ok(&l.req(vm, ids::TPM, cmd::ECHO, [vm as u64, 2, 3, 4]))?;
            if x == [vm as u64, 2, 3, 4] {
                Ok(())
            } else {
                Err(format!("{x:x?}"))
            }
        });
    }
    r.check("rpi4-vm1-reaches-bound-sp1", || {
        ok(&l.req(1, ids::SP1, cmd::ECHO, [1, 2, 3, 4])).map(|_| ())
    });
    for vm in [2, 3, 4] {
        r.check(&format!("rpi4-vm{vm}-denied-sp1"), || {
            expect_error(&l.req(vm, ids::SP1, cmd::ECHO, [0; 4]), f::DENIED)
        });
    }
    r.check("rpi4-vm4-denied-other-instance", || {
        let other = tees.first().copied().ok_or("no instance")?;
        expect_error(&l.req(4, other, cmd::ECHO, [0; 4]), f::DENIED)
    });
    r.check("rpi4-forged-sender-stamped", || {
        // VM 2 names VM 1 as sender: the layer stamps 2, so sp1 stays denied.
        let a = l.vm_request(
            2,
            [
                f::MSG_SEND_DIRECT_REQ_64,
                1 << 16 | ids::SP1 as u64,
                0,
                cmd::ECHO,
                0,
                0,
                0,
                0,
            ],
        );
        expect_error(&a, f::DENIED)
    });
    r.check("rpi4-forged-framework-message-refused", || {
        let a = l.vm_request(
            3,
            [
                f::MSG_SEND_DIRECT_REQ_32,
                ids::VTEE_TEMPLATE as u64,
                (fwk::FLAG | fwk::VM_DESTROYED) as u64,
                0xFFFF_FFFF,
                0xFFFF_FFFF,
                1,
                0,
                0,
            ],
        );
        expect_error(&a, f::DENIED)?;
        // VM 1's TEE is still there.
        ok(&l.req(1, ids::VTEE_TEMPLATE, cmd::ECHO, [0; 4])).map(|_| ())
    });
    r.check("rpi4-no-vm-to-vm", || {
        expect_error(&l.req(1, 2, cmd::ECHO, [0; 4]), f::DENIED)
    });
    r.check("rpi4-vm3-destroyed", || {
        l.availability(fwk::VM_DESTROYED, 3)
    });
    r.check("rpi4-vm3-destroyed-tee-gone", || {
        let a = l.req(3, ids::VTEE_TEMPLATE, cmd::ECHO, [0; 4]);
        error_code(&a)
            .map(|_| ())
            .ok_or_else(|| format!("answer {:#x?}", &a[..4]))
    });
    r.check("rpi4-vm3-recreated", || l.availability(fwk::VM_CREATED, 3));
    r.check("rpi4-vm3-recreated-tee-zeroed", || {
        let v = ok(&l.req(3, ids::VTEE_TEMPLATE, cmd::KV_GET, [7, 0, 0, 0]))?[0];
        if v == 0 {
            Ok(())
        } else {
            Err(format!("old value {v:#x} survived"))
        }
    });
    r.check("rpi4-others-kept-across-destroy", || {
        let v = ok(&l.req(4, ids::VTEE_TEMPLATE, cmd::KV_GET, [7, 0, 0, 0]))?[0];
        if v == 0x1004 {
            Ok(())
        } else {
            Err(format!("read {v:#x}"))
        }
    });
    r.check("rpi4-faulting-trusted-vm-aborted", || {
        // VM 2's own TEE executes an undefined instruction.
        let a = l.req(2, ids::VTEE_TEMPLATE, cmd::UNDEF, [0; 4]);
        expect_error(&a, f::ABORTED)
    });
    r.check("rpi4-aborted-stays-aborted", || {
        let a = l.req(2, ids::VTEE_TEMPLATE, cmd::ECHO, [0; 4]);
        error_code(&a)
            .map(|_| ())
            .ok_or_else(|| format!("answer {:#x?}", &a[..4]))
    });
    r.check("rpi4-others-go-on-after-abort", || {
        ok(&l.req(1, ids::VTEE_TEMPLATE, cmd::ECHO, [0; 4]))?;
        ok(&l.req(4, ids::TPM, cmd::ECHO, [0; 4]))?;
        ok(&l.req(1, ids::SP1, cmd::ECHO, [0; 4])).map(|_| ())
    });
    r.check("rpi4-scale-instances", || {
        // More users until the core says NO_MEMORY or runs out of IDs.
        let mut n = USERS.len() as u32;
        for vm in 5..=200u16 {
            match l.availability(fwk::VM_CREATED, vm) {
                Ok(()) => n += 1,
                Err(_) => break,
            }
        }
        log::info!("rpi4: {n} live per-user trusted VMs");
        if n >= 32 {
            Ok(())
        } else {
            Err(format!("only {n}"))
        }
    });
    bench(&mut l);
    (r.passed, r.failed)
}

/// Round trips timed for the benchmark line.
const BENCH_ROUNDS: u64 = 200;

/// Times VM 1's direct request to its own trusted VM and back (ECHO),
/// through the VM layer and the core, on the generic counter. Under QEMU's
/// `-icount shift=0` (one instruction per virtual nanosecond) the counter's
/// ticks convert to instructions: `ticks * 10^9 / CNTFRQ_EL0`. Not a check:
/// a figure, printed whatever it is (`cargo xtask bench` reads it on virt).
fn bench(l: &mut Layer<'_>) {
    let freq = arch_aarch64::sysreg::read_cntfrq_el0().max(1);
    let start = arch_aarch64::sysreg::read_cntvct_el0();
    for i in 0..BENCH_ROUNDS {
        if ok(&l.req(1, ids::VTEE_TEMPLATE, cmd::ECHO, [i, 0, 0, 0])).is_err() {
            log::warn!("rpi4: bench: round trip {i} failed");
            return;
        }
    }
    let ticks = arch_aarch64::sysreg::read_cntvct_el0() - start;
    let per = ticks * 1_000_000_000 / freq / BENCH_ROUNDS;
    log::info!(
        "rpi4: bench: vm-to-own-trusted-vm round trip: {per} instructions under -icount shift=0 \
         ({ticks} ticks at {freq} Hz for {BENCH_ROUNDS}; the VM's trap excluded)"
    );
}
