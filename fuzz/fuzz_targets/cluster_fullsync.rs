//! Fuzzes the full-sync stream decoder: arbitrary bytes in arbitrary splits must decode to
//! frames or a clean error, never panic or buffer past the frame limit; frames that decode
//! re-encode to the same bytes.
//!
//! Input: byte 0 chooses the split size, the rest is the stream.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart_cluster::{FullSyncDecoder, FullSyncEncoder, MAX_FRAME};

fuzz_target!(|input: &[u8]| {
    let [split, data @ ..] = input else {
        return;
    };
    let split = usize::from(*split).max(1);
    let mut dec = FullSyncDecoder::default();
    let mut frames = Vec::new();
    let mut consumed_ok = true;
    for chunk in data.chunks(split) {
        dec.push(chunk);
        loop {
            match dec.next_frame() {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(_) => {
                    consumed_ok = false;
                    break;
                }
            }
        }
        if !consumed_ok {
            break;
        }
        assert!(dec.buffered() <= MAX_FRAME + 3 + split);
    }
    // Whatever decoded re-encodes to a prefix of the input.
    let mut enc = FullSyncEncoder::default();
    let mut out = Vec::new();
    for f in &frames {
        enc.encode(f, &mut out);
    }
    if consumed_ok {
        assert_eq!(&data[..out.len()], &out[..]);
    }
});
