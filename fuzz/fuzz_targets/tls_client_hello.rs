//! The Visitor Mode ClientHello peek (`rampart_io::stream::hello::parse`) on arbitrary bytes:
//! it never panics, a prefix of the input either waits for more bytes or decides as the whole
//! input does, and what it finds is within the input.
#![no_main]

use libfuzzer_sys::fuzz_target;

// The parser alone (it needs only `thiserror`), without the I/O shell's dependencies.
#[path = "../../crates/rampart-io/src/stream/hello.rs"]
mod hello;

use hello::parse;

fuzz_target!(|data: &[u8]| {
    let whole = parse(data);
    if let Ok(Some(hello)) = &whole {
        if let Some(name) = &hello.server_name {
            assert!(name.len() <= data.len());
            assert!(name.bytes().all(|b| b.is_ascii_graphic()));
        }
        let alpn_bytes: usize = hello.alpn.iter().map(|p| p.len()).sum();
        assert!(alpn_bytes <= data.len());
        assert!(hello.alpn.iter().all(|p| !p.is_empty()));
    }
    // A prefix either waits for more bytes or decides exactly as the whole input does: a
    // decision never depends on bytes that were not needed for it.
    for cut in [data.len() / 2, data.len().saturating_sub(1)] {
        match parse(&data[..cut]) {
            Ok(None) => {}
            decided => assert_eq!(decided, whole),
        }
    }
});
