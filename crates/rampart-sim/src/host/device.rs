//! The simulated network device under smoltcp (`phy::Device`): packets the world delivers wait
//! in `rx`, packets the stack sends collect in `tx` until the world takes them.

use std::collections::VecDeque;

use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::time::Instant as SmolInstant;

/// The simulated network device under smoltcp: packets in, packets out.
pub(crate) struct SimDevice {
    pub(crate) rx: VecDeque<Vec<u8>>,
    pub(crate) tx: Vec<Vec<u8>>,
    pub(crate) mtu: usize,
}

impl SimDevice {
    pub(crate) fn new(mtu: usize) -> SimDevice {
        SimDevice {
            rx: VecDeque::new(),
            tx: Vec::new(),
            mtu,
        }
    }
}

pub(crate) struct SimRx(Vec<u8>);
pub(crate) struct SimTx<'a>(&'a mut Vec<Vec<u8>>);

impl RxToken for SimRx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl TxToken for SimTx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut p = vec![0u8; len];
        let r = f(&mut p);
        self.0.push(p);
        r
    }
}

impl Device for SimDevice {
    type RxToken<'a> = SimRx;
    type TxToken<'a> = SimTx<'a>;

    fn receive(&mut self, _: SmolInstant) -> Option<(SimRx, SimTx<'_>)> {
        let p = self.rx.pop_front()?;
        Some((SimRx(p), SimTx(&mut self.tx)))
    }

    fn transmit(&mut self, _: SmolInstant) -> Option<SimTx<'_>> {
        Some(SimTx(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = self.mtu;
        caps
    }
}
