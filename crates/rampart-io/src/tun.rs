//! The TUN device: inner IP packets in and out, and the packet buffer layout the node needs.

use std::io;

use tun_rs::{AsyncDevice, DeviceBuilder};

use crate::IoError;

/// Bytes kept free before a packet read from the TUN device, so the node can write the ESP header
/// and IV in place (equal to `rampart_esp::MAX_HEADROOM`: ESP header + largest IV).
pub const HEADROOM: usize = 8 + 16;
/// Bytes kept free after a packet read from the TUN device for the ESP trailer and ICV (equal to
/// `rampart_esp::MAX_TAILROOM`: padding + pad length/next header + ICV).
pub const TAILROOM: usize = 15 + 2 + 16;
/// The largest packet any of our devices or sockets hands over (an IPv4/IPv6 datagram, or a
/// segment-offload super-packet later).
pub const MAX_PACKET: usize = 65_535;
/// Size of one packet buffer: room for the largest packet plus the ESP head- and tailroom.
pub const BUFFER_LEN: usize = HEADROOM + MAX_PACKET + TAILROOM;

/// An open, up TUN device (no packet-information header, no offloads).
pub struct Tun {
    device: AsyncDevice,
    name: String,
    index: u32,
}

impl Tun {
    /// Creates the device `name`, or attaches to it if it exists, sets its MTU and brings it up.
    /// No address is assigned: routes through the device are all it needs.
    ///
    /// Must be called inside a tokio runtime.
    pub fn open(name: &str, mtu: u16) -> Result<Tun, IoError> {
        let err = |source: io::Error| IoError::Tun {
            device: name.to_owned(),
            source,
        };
        let device = DeviceBuilder::new()
            .name(name)
            .mtu(mtu)
            .enable(true)
            .build_async()
            .map_err(err)?;
        let index = device.if_index().map_err(err)?;
        Ok(Tun {
            device,
            name: name.to_owned(),
            index,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The interface index, for routes through this device.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// Waits until a packet may be readable (false positives are possible: `try_recv` then
    /// returns `WouldBlock`).
    pub async fn readable(&self) -> io::Result<()> {
        self.device.readable().await
    }

    /// Reads one packet into `buf`, or `WouldBlock` when none is waiting.
    pub fn try_recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.device.try_recv(buf)
    }

    /// Writes one IP packet to the device.
    pub async fn send(&self, packet: &[u8]) -> io::Result<()> {
        self.device.send(packet).await.map(|_| ())
    }
}

/// The range of a buffer of `buf_len` bytes that a TUN read may fill so that `HEADROOM` bytes
/// stay free before the packet and `TAILROOM` after the largest packet.
pub fn read_window(buf_len: usize) -> std::ops::Range<usize> {
    HEADROOM..buf_len.saturating_sub(TAILROOM).max(HEADROOM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_window_leaves_head_and_tailroom() {
        let w = read_window(BUFFER_LEN);
        assert_eq!(w.start, HEADROOM);
        assert_eq!(BUFFER_LEN - w.end, TAILROOM);
        assert_eq!(w.len(), MAX_PACKET);
        // Too small a buffer gives an empty window, never an inverted one.
        assert!(read_window(10).is_empty());
    }
}
