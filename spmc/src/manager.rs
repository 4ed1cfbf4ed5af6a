//! The partition manager: the state the SPMC keeps and the one entry point
//! through which every call from the SPMD (the normal world, or the SPMD's own
//! framework messages) is handled.
//!
//! Errors are converted to FF-A registers in exactly one place,
//! [`Spmc::handle_spmd`]; handlers return `Result<Regs, FfaError>`.

use log::{debug, info};

use crate::features::{self, Instance};
use crate::ffa::{self, FfaError, PartitionId, Regs, Version, func, fwk};
use crate::manifest::SpmcConfig;

/// State kept for the normal world as one FF-A endpoint.
#[derive(Clone, Copy, Debug, Default)]
pub struct NormalWorld {
    /// The version the normal world negotiated with FFA_VERSION, if it did.
    pub version: Option<Version>,
}

impl NormalWorld {
    /// The version its calls are answered in: the negotiated one, else v1.0
    /// (an endpoint that never called FFA_VERSION is treated as v1.0).
    pub fn effective_version(&self) -> Version {
        self.version.unwrap_or(Version::V1_0)
    }
}

/// The SPMC core.
#[derive(Debug)]
pub struct Spmc {
    config: SpmcConfig,
    nwd: NormalWorld,
}

impl Spmc {
    /// Builds the manager from a validated configuration.
    pub fn new(config: SpmcConfig) -> Self {
        info!(
            "SPMC id {:#06x}, FF-A v{}, {} partition package(s) declared",
            config.spmc_id,
            config.version,
            config.partitions.len()
        );
        Self {
            config,
            nwd: NormalWorld::default(),
        }
    }

    /// The configuration the manager was built from.
    pub fn config(&self) -> &SpmcConfig {
        &self.config
    }

    /// The normal world's endpoint state.
    pub fn normal_world(&self) -> &NormalWorld {
        &self.nwd
    }

    /// The SPMC's endpoint ID.
    pub fn id(&self) -> PartitionId {
        self.config.spmc_id
    }

    /// Handles one call that arrived from the SPMD and writes the answer into
    /// `regs` (x0-x7; x8-x17 are kept unless the answer uses them, as SMCCC
    /// v1.2 asks and the SPMD expects).
    pub fn handle_spmd(&mut self, regs: &mut Regs) {
        let answer = match regs.func() {
            func::MSG_SEND_DIRECT_REQ_32 | func::MSG_SEND_DIRECT_REQ_64
                if ffa::sender(regs) == ffa::SPMD_ID =>
            {
                self.framework_message(regs)
            }
            func::MSG_SEND_DIRECT_REQ_32
            | func::MSG_SEND_DIRECT_REQ_64
            | func::MSG_SEND_DIRECT_REQ2_64 => self.direct_request_from_nwd(regs),
            func::FEATURES => {
                self.features(Instance::NormalWorld, self.nwd.effective_version(), regs)
            }
            func::ID_GET => Ok(Self::success_w2(0)),
            func::SPM_ID_GET => self.spm_id_get(self.nwd.effective_version()),
            // FFA_VERSION from the normal world arrives as a framework message;
            // a raw one here can only come from a hypervisor that forwards it.
            func::VERSION => Ok(self.version_call(regs.w(1))),
            other => {
                debug!("unsupported call {other:#010x} from the normal world");
                Err(FfaError::NotSupported)
            }
        };
        let answer = answer.unwrap_or_else(Regs::error);
        regs.0[..8].copy_from_slice(&answer.0[..8]);
    }

    fn success_w2(w2: u32) -> Regs {
        Regs::success32(w2)
    }

    /// FFA_VERSION as a plain call: w0 is the version or NOT_SUPPORTED (§13.2).
    fn version_call(&mut self, requested: u32) -> Regs {
        let mut r = Regs::default();
        r.0[0] = self.negotiate_nwd(requested) as u64;
        r
    }

    /// Negotiates for the normal world; returns the value for the answer register.
    fn negotiate_nwd(&mut self, requested: u32) -> u32 {
        match ffa::negotiate(requested) {
            Ok(v) => {
                debug!("normal world negotiated FF-A v{v}");
                self.nwd.version = Some(v);
                Version::IMPLEMENTED.bits()
            }
            Err(e) => {
                debug!("normal world asked for unsupported FF-A version {requested:#x}");
                e.as_u32()
            }
        }
    }

    /// Framework messages from the SPMD (TF-A SPMD; FF-A v1.2 §18).
    fn framework_message(&mut self, regs: &Regs) -> Result<Regs, FfaError> {
        let w2 = regs.w(2);
        if w2 & fwk::FLAG == 0 {
            // A partition message with the SPMD as sender: no partition takes those.
            return Err(FfaError::InvalidParameters);
        }
        let mut r = Regs::with_func(func::MSG_SEND_DIRECT_RESP_32);
        r.0[1] = ffa::endpoints(self.id(), ffa::SPMD_ID);
        match w2 & fwk::TYPE_MASK {
            fwk::VERSION_REQ => {
                r.0[2] = (fwk::FLAG | fwk::VERSION_RESP) as u64;
                r.0[3] = self.negotiate_nwd(regs.w(3)) as u64;
            }
            fwk::PSCI_REQ => {
                // CPU_OFF and the other PSCI notifications: nothing runs on a
                // core the normal world turns off, so the SPMC agrees.
                debug!("PSCI framework message {:#x}", regs.w(3));
                r.0[2] = (fwk::FLAG | fwk::PSCI_RESP) as u64;
                r.0[3] = ffa::psci::SUCCESS as u64;
            }
            other => {
                debug!("unknown framework message {other:#x} from the SPMD");
                return Err(FfaError::InvalidParameters);
            }
        }
        Ok(r)
    }

    fn direct_request_from_nwd(&mut self, regs: &Regs) -> Result<Regs, FfaError> {
        // No partition is loaded yet: every receiver is unknown (§15.2.2).
        debug!(
            "direct request {:#x} -> {:#x}: no such partition",
            ffa::sender(regs),
            ffa::receiver(regs)
        );
        Err(FfaError::InvalidParameters)
    }

    fn features(
        &self,
        instance: Instance,
        version: Version,
        regs: &Regs,
    ) -> Result<Regs, FfaError> {
        features::query(instance, version, regs.w(1), regs.w(2)).map(Self::success_w2)
    }

    /// FFA_SPM_ID_GET (§13.10, v1.1+): the SPMC's ID.
    fn spm_id_get(&self, version: Version) -> Result<Regs, FfaError> {
        if version < Version::V1_1 {
            return Err(FfaError::NotSupported);
        }
        Ok(Self::success_w2(self.id() as u32))
    }
}
