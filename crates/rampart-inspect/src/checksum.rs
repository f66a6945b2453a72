//! Internet checksums (RFC 1071) and their incremental update (RFC 1624).

/// One's-complement sum of `data` folded to 16 bits (not inverted), starting from `initial`.
pub fn sum(initial: u32, data: &[u8]) -> u32 {
    let mut acc = u64::from(initial);
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u64::from(*last) << 8;
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u32
}

/// The checksum field value for data whose one's-complement sum is `s`.
pub fn finish(s: u32) -> u16 {
    !(sum(s, &[]) as u16)
}

/// RFC 1624 eqn. 3: the checksum after 16-bit words `old` became `new` (same length, even).
pub fn update(check: u16, old: &[u8], new: &[u8]) -> u16 {
    let mut acc = u32::from(!check);
    for (o, n) in old.chunks_exact(2).zip(new.chunks_exact(2)) {
        acc += u32::from(!u16::from_be_bytes([o[0], o[1]]));
        acc += u32::from(u16::from_be_bytes([n[0], n[1]]));
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// Sum of the IPv4/IPv6 pseudo-header for an upper-layer packet of `len` bytes.
pub fn pseudo(src: &[u8], dst: &[u8], proto: u8, len: usize) -> u32 {
    let s = sum(0, src);
    let s = sum(s, dst);
    let len = len as u32;
    sum(
        s,
        &[
            (len >> 24) as u8,
            (len >> 16) as u8,
            (len >> 8) as u8,
            len as u8,
            0,
            0,
            0,
            proto,
        ],
    )
}

pub fn get16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

pub fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}
