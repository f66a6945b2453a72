//! A Load Sharing member's share of a pool: the prefix split into `B` equal CIDR blocks
//! (`B` the member count rounded up to a power of two), member `index` owning blocks
//! `index`, `index + of`, ... below `B`. Every member computes the same split from the same
//! configuration, so the shares are disjoint and together cover the prefix.
//!
//! Inside a share, addresses are numbered by *ordinal* (0, 1, ... through the owned blocks in
//! order), which is what the pool's lazy cursor walks.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use crate::PoolError;

/// Member `index` of `of` members (sorted by member id) of a Load Sharing cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Share {
    pub index: u32,
    pub of: u32,
}

impl Share {
    /// Refused unless `index < of`.
    pub fn new(index: u32, of: u32) -> Result<Share, PoolError> {
        if index >= of {
            return Err(PoolError::BadShare { index, of });
        }
        Ok(Share { index, of })
    }

    /// `B`: how many blocks the prefix is split into.
    pub fn block_count(self) -> u32 {
        self.of.next_power_of_two()
    }

    /// The block numbers this member owns, ascending (one or two: `B < 2 * of`).
    pub fn block_numbers(self) -> impl Iterator<Item = u32> {
        let b = self.block_count();
        (self.index..b).step_by(self.of.max(1) as usize)
    }

    /// The owned blocks of `prefix` as CIDR prefixes. Refused when `prefix` has fewer
    /// addresses than blocks.
    pub fn blocks(self, prefix: IpNet) -> Result<Vec<IpNet>, PoolError> {
        let prefix = prefix.trunc();
        let layout = Layout::new(prefix, Some(self))?;
        let bits = self.block_count().trailing_zeros() as u8;
        let len = prefix.prefix_len() + bits;
        let base = to_u128(prefix.network());
        Ok(layout
            .blocks
            .iter()
            .map(|&b| {
                let start = base + b * layout.block_size;
                let net = match prefix {
                    IpNet::V4(_) => IpNet::new(IpAddr::V4(Ipv4Addr::from(start as u32)), len),
                    IpNet::V6(_) => IpNet::new(IpAddr::V6(Ipv6Addr::from(start)), len),
                };
                net.unwrap_or(prefix)
            })
            .collect())
    }
}

pub(crate) fn to_u128(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// Which offsets of the prefix a pool hands out fresh, and their ordinals.
///
/// Invariant: `blocks` ascending, each below `2^host_bits / block_size`; `len` the number of
/// ordinals (`blocks.len() * block_size`, capped at `u128::MAX` for a whole IPv6 /0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout {
    pub blocks: Vec<u128>,
    pub block_size: u128,
    pub len: u128,
}

impl Layout {
    /// The whole prefix (`share` `None`) or a member's share of it.
    pub fn new(prefix: IpNet, share: Option<Share>) -> Result<Layout, PoolError> {
        let host_bits = u32::from(prefix.max_prefix_len() - prefix.prefix_len());
        let (blocks, bits) = match share {
            None => (vec![0], 0),
            Some(s) => (
                s.block_numbers().map(u128::from).collect(),
                s.block_count().trailing_zeros(),
            ),
        };
        let Some(size_bits) = host_bits.checked_sub(bits) else {
            let s = share.unwrap_or(Share { index: 0, of: 1 });
            return Err(PoolError::ShareEmpty {
                prefix,
                index: s.index,
                of: s.of,
            });
        };
        // A whole IPv6 /0 spans 2^128 offsets: capped (the last one is never usable).
        let block_size = 1u128.checked_shl(size_bits).unwrap_or(u128::MAX);
        let len = block_size.saturating_mul(blocks.len() as u128);
        Ok(Layout {
            blocks,
            block_size,
            len,
        })
    }

    /// The offset of ordinal `ord` (`ord < len`).
    pub fn offset(&self, ord: u128) -> u128 {
        let j = (ord / self.block_size) as usize;
        self.blocks[j.min(self.blocks.len() - 1)] * self.block_size + ord % self.block_size
    }

    /// The ordinal of offset `off`, `None` outside the share.
    pub fn ordinal(&self, off: u128) -> Option<u128> {
        let block = off / self.block_size;
        let j = self.blocks.iter().position(|&b| b == block)? as u128;
        let ord = j * self.block_size + off % self.block_size;
        (ord < self.len).then_some(ord)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn blocks_of_two_and_three_members() {
        let p = net("10.99.0.0/24");
        let two: Vec<Vec<IpNet>> = (0..2)
            .map(|i| Share::new(i, 2).unwrap().blocks(p).unwrap())
            .collect();
        assert_eq!(
            two,
            vec![vec![net("10.99.0.0/25")], vec![net("10.99.0.128/25")]]
        );
        let three: Vec<Vec<IpNet>> = (0..3)
            .map(|i| Share::new(i, 3).unwrap().blocks(p).unwrap())
            .collect();
        assert_eq!(
            three,
            vec![
                vec![net("10.99.0.0/26"), net("10.99.0.192/26")],
                vec![net("10.99.0.64/26")],
                vec![net("10.99.0.128/26")],
            ]
        );
        assert_eq!(
            Share::new(0, 1).unwrap().blocks(p).unwrap(),
            vec![net("10.99.0.0/24")]
        );
        assert_eq!(
            Share::new(2, 2),
            Err(PoolError::BadShare { index: 2, of: 2 })
        );
        assert!(Share::new(0, 4)
            .unwrap()
            .blocks(net("10.0.0.0/31"))
            .is_err());
    }

    #[test]
    fn ordinals_round_trip() {
        let l = Layout::new(net("10.0.0.0/24"), Some(Share { index: 0, of: 3 })).unwrap();
        assert_eq!((l.block_size, l.len), (64, 128));
        assert_eq!(l.offset(0), 0);
        assert_eq!(l.offset(64), 192);
        assert_eq!(l.ordinal(200), Some(72));
        assert_eq!(l.ordinal(64), None);
        for ord in [0, 5, 63, 64, 127] {
            assert_eq!(l.ordinal(l.offset(ord)), Some(ord));
        }
        let whole = Layout::new(net("::/0"), None).unwrap();
        assert_eq!(whole.len, u128::MAX);
        assert_eq!(whole.ordinal(u128::MAX), None);
        let half = Layout::new(net("::/0"), Some(Share { index: 1, of: 2 })).unwrap();
        assert_eq!(half.offset(0), 1 << 127);
        assert_eq!(half.ordinal(u128::MAX), Some((1 << 127) - 1));
    }
}
