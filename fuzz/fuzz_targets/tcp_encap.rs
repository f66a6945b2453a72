//! RFC 9329 stream decoder on arbitrary bytes split at arbitrary points: it never panics, always
//! makes progress, and every frame it yields re-encodes to exactly the bytes it was decoded from.
//!
//! Input: one byte of settings (bit 0: responder role, which expects the `IKETCP` prefix; the
//! rest picks the frame limit), one byte of chunk length (1 to 256), then the stream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart_wire::tcp_encap::{encode_frame, Decoder, Frame, Role, MAX_FRAME_LEN, PREFIX};

fuzz_target!(|data: &[u8]| {
    let [settings, chunk, stream @ ..] = data else {
        return;
    };
    let role = if settings & 1 == 1 {
        Role::Responder
    } else {
        Role::Initiator
    };
    let max = usize::from(settings >> 1) * 520;
    let chunk = usize::from(*chunk) + 1;
    let mut d = Decoder::new(role, max);
    let max_frame = d.max_frame();
    // What the decoder consumed so far, rebuilt from its frames.
    let mut rebuilt = if role == Role::Responder {
        PREFIX.to_vec()
    } else {
        Vec::new()
    };
    let mut out = vec![0u8; MAX_FRAME_LEN];
    for c in stream.chunks(chunk) {
        let mut rest = c;
        while !rest.is_empty() {
            let n = d.push(rest);
            rest = &rest[n..];
            let mut progressed = n > 0;
            loop {
                match d.next_frame() {
                    Ok(Some(f)) => {
                        progressed = true;
                        let len = encode_frame(f, &mut out).expect("a decoded frame re-encodes");
                        assert!(len <= max_frame);
                        if let Frame::Ike(m) = f {
                            assert!(m.len() >= 28);
                        }
                        rebuilt.extend_from_slice(&out[..len]);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        assert_eq!(d.next_frame(), Err(e), "errors are sticky");
                        assert_eq!(d.push(b"more"), 0);
                        return;
                    }
                }
            }
            assert!(progressed, "decoder stalled");
        }
    }
    let consumed = stream.len() - d.pending();
    if role == Role::Responder && consumed < PREFIX.len() {
        return;
    }
    assert_eq!(
        &rebuilt[..],
        &stream[..consumed],
        "frames re-encode to the stream"
    );
});
