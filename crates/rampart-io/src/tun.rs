//! The TUN device: inner IP packets in and out, and the packet buffer layout the node needs.

use std::io;

use tun_rs::{AsyncDevice, DeviceBuilder, VIRTIO_NET_HDR_LEN};

use crate::IoError;

/// Bytes kept free before a packet read from the TUN device, so the node can write the ESP header
/// and IV in place (equal to `rampart_esp::MAX_HEADROOM`: ESP header + largest IV).
pub const HEADROOM: usize = 8 + 16;
/// Bytes kept free after a packet read from the TUN device for the ESP trailer and ICV (equal to
/// `rampart_esp::MAX_TAILROOM`: padding + pad length/next header + ICV).
pub const TAILROOM: usize = 15 + 2 + 16;
/// The largest packet any of our devices or sockets hands over (an IPv4/IPv6 datagram, or a
/// segment-offload super-packet).
pub const MAX_PACKET: usize = 65_535;

/// An open, up TUN device.
///
/// With offload (`IFF_VNET_HDR` and TSO4/TSO6/USO), one read may return a TCP or UDP
/// super-packet of up to 64 KB, which [`Tun::try_recv_batch`] splits into MTU-sized IP packets,
/// and [`Tun::write_vectored`] takes one coalesced write gathered by
/// [`crate::tun_gro::GroWriter`]. Without offload both move one packet per system call.
pub struct Tun {
    device: AsyncDevice,
    name: String,
    index: u32,
    mtu: u16,
}

impl Tun {
    /// Creates the device `name`, or attaches to it if it exists, sets its MTU and brings it up.
    /// With `offload`, asks for segmentation offload; a kernel that refuses it gets a warning
    /// and a device without. No address is assigned: routes through the device are all it needs.
    ///
    /// Must be called inside a tokio runtime.
    pub fn open(name: &str, mtu: u16, offload: bool) -> Result<Tun, IoError> {
        let err = |source: io::Error| IoError::Tun {
            device: name.to_owned(),
            source,
        };
        let build = |offload: bool| {
            DeviceBuilder::new()
                .name(name)
                .mtu(mtu)
                .offload(offload)
                .enable(true)
                .build_async()
        };
        let device = match build(offload) {
            Ok(device) => device,
            Err(e) if offload => {
                tracing::warn!(
                    "TUN {name}: segmentation offload refused ({e}); one packet per read and write"
                );
                build(false).map_err(err)?
            }
            Err(e) => return Err(err(e)),
        };
        let index = device.if_index().map_err(err)?;
        Ok(Tun {
            device,
            name: name.to_owned(),
            index,
            mtu,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The interface index, for routes through this device.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The MTU the device was opened with: no packet read from it is larger.
    pub fn mtu(&self) -> u16 {
        self.mtu
    }

    /// Whether the device was opened with segmentation offload.
    pub fn offload(&self) -> bool {
        self.device.tcp_gso()
    }

    /// Whether the device also takes UDP segmentation offload writes (USO, Linux 6.2 and
    /// later): only then may a `tun_gro::GroWriter` coalesce UDP datagrams.
    pub fn udp_offload(&self) -> bool {
        self.device.udp_gso()
    }

    /// Writes one packet gathered from `iov`; returns the bytes written. With offload the
    /// gathered bytes must start with a virtio-net header (`VIRTIO_NET_HDR_LEN` bytes), as
    /// `tun_gro::GroWriter::iovecs` produces them; without offload they are a bare IP packet.
    pub async fn write_vectored(&self, iov: &[std::io::IoSlice<'_>]) -> io::Result<usize> {
        self.device.send_vectored(iov).await
    }

    /// Waits until a packet may be readable (false positives are possible: a read then
    /// returns `WouldBlock`).
    pub async fn readable(&self) -> io::Result<()> {
        self.device.readable().await
    }

    /// One read from the device: `raw` takes the read as it comes (virtio header and a
    /// super-packet, `RAW_READ_LEN` bytes), and the IP packets it holds are placed at
    /// `bufs[i][offset..offset + sizes[i]]` for the returned count of `i`. `WouldBlock` when
    /// nothing is waiting. `bufs` must have room for the largest packet the device's MTU
    /// allows after `offset`, and there must be more of them than 64 KB / MTU.
    pub fn try_recv_batch<B: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        raw: &mut [u8],
        bufs: &mut [B],
        sizes: &mut [usize],
        offset: usize,
    ) -> io::Result<usize> {
        self.device.try_recv_multiple(raw, bufs, sizes, offset)
    }
}

/// Size of the buffer a TUN read lands in before it is split: virtio header + 64 KB.
pub const RAW_READ_LEN: usize = VIRTIO_NET_HDR_LEN + MAX_PACKET;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_layout_leaves_room_for_esp_and_virtio() {
        // The ESP engine's worst case must fit the room the TUN split leaves around a packet.
        const {
            assert!(HEADROOM >= rampart_esp::MAX_HEADROOM);
            assert!(TAILROOM >= rampart_esp::MAX_TAILROOM);
        }
    }
}
