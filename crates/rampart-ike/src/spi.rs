//! Per-member SPI allocation (in the manner of quinn-proto's `cid_generator`): every SPI a
//! cluster member hands out carries the member id in its top bits, so two members never pick the
//! same SPI and a packet's SPI names the member that owns the SA.
//!
//! Layout: an IKE SPI is `member_id << 48 | 48 random bits` (never 0); an ESP SPI is
//! `member_id << 28 | 28 random bits`, never one of the values 0..=255 that RFC 4303 reserves.

use rampart_crypto::Rng;

/// Largest member id: four bits of the ESP SPI name the member.
pub const MAX_MEMBER_ID: u16 = 15;

/// Bits of an IKE SPI below the member id.
const IKE_RANDOM_BITS: u32 = 48;
/// Bits of an ESP SPI below the member id.
const ESP_RANDOM_BITS: u32 = 28;
/// ESP SPIs 0..=255 are reserved (RFC 4303 2.1).
const ESP_RESERVED: u32 = 0x100;

/// Draws SPIs for one cluster member. Invariant: `member <= MAX_MEMBER_ID`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpiGenerator {
    member: u16,
}

impl SpiGenerator {
    /// `None` when `member_id` exceeds [`MAX_MEMBER_ID`].
    pub fn new(member_id: u16) -> Option<SpiGenerator> {
        (member_id <= MAX_MEMBER_ID).then_some(SpiGenerator { member: member_id })
    }

    pub fn member_id(&self) -> u16 {
        self.member
    }

    /// A fresh IKE SPI of this member: never 0.
    pub fn ike_spi(&self, rng: &mut Rng) -> u64 {
        loop {
            let low = rng.next_u64() & ((1 << IKE_RANDOM_BITS) - 1);
            let spi = u64::from(self.member) << IKE_RANDOM_BITS | low;
            if spi != 0 {
                return spi;
            }
        }
    }

    /// A fresh ESP SPI of this member: never a reserved value (< 256).
    pub fn esp_spi(&self, rng: &mut Rng) -> u32 {
        loop {
            let low = rng.next_u32() & ((1 << ESP_RANDOM_BITS) - 1);
            let spi = u32::from(self.member) << ESP_RANDOM_BITS | low;
            if spi >= ESP_RESERVED {
                return spi;
            }
        }
    }

    /// The member that allocated an IKE SPI (one of ours or the peer's: only ours are meaningful).
    pub fn ike_spi_member(spi: u64) -> u16 {
        (spi >> IKE_RANDOM_BITS) as u16
    }

    /// The member that allocated an ESP SPI.
    pub fn esp_spi_member(spi: u32) -> u16 {
        (spi >> ESP_RANDOM_BITS) as u16
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn member_range() {
        assert!(SpiGenerator::new(0).is_some());
        assert!(SpiGenerator::new(MAX_MEMBER_ID).is_some());
        assert!(SpiGenerator::new(MAX_MEMBER_ID + 1).is_none());
    }

    #[test]
    fn member_recoverable_and_no_reserved_values() {
        let mut rng = Rng::from_seed([7; 32]);
        for m in 0..=MAX_MEMBER_ID {
            let g = SpiGenerator::new(m).unwrap();
            for _ in 0..500 {
                let ike = g.ike_spi(&mut rng);
                assert_ne!(ike, 0);
                assert_eq!(SpiGenerator::ike_spi_member(ike), m);
                let esp = g.esp_spi(&mut rng);
                assert!(esp >= 256, "{esp}");
                assert_eq!(SpiGenerator::esp_spi_member(esp), m);
            }
        }
    }

    #[test]
    fn members_never_collide() {
        // Same random stream on both members: the SPIs still differ in the member bits.
        let (a, b) = (SpiGenerator::new(1).unwrap(), SpiGenerator::new(2).unwrap());
        let (mut ra, mut rb) = (Rng::from_seed([9; 32]), Rng::from_seed([9; 32]));
        let mut ike = HashSet::new();
        let mut esp = HashSet::new();
        for _ in 0..2000 {
            ike.insert(a.ike_spi(&mut ra));
            esp.insert(a.esp_spi(&mut ra));
        }
        for _ in 0..2000 {
            assert!(!ike.contains(&b.ike_spi(&mut rb)));
            assert!(!esp.contains(&b.esp_spi(&mut rb)));
        }
    }

    #[test]
    fn member_zero_skips_reserved() {
        // Member 0 draws from the low range, where reserved values are possible: they are skipped.
        let g = SpiGenerator::new(0).unwrap();
        let mut rng = Rng::from_seed([3; 32]);
        assert!((0..10_000).all(|_| g.esp_spi(&mut rng) >= 256));
    }
}
