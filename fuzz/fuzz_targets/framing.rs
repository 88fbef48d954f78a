//! Feeding arbitrary bytes to a `FrameCodec` in arbitrary chunks must not panic, and the
//! read buffer must never grow much beyond one maximum frame.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use replenish::wire::framing::{FrameCodec, LengthHeader};
use tokio_util::codec::Decoder;

/// Largest chunk fed at once; also the slack allowed over one frame in the buffer:
/// before each `decode` call it holds at most one incomplete frame plus one chunk.
const MAX_CHUNK: usize = 64;

fuzz_target!(|data: &[u8]| {
    // The first byte sets the chunk size (1..=64) and the maximum frame (small or default).
    let Some((&control, stream)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(control % MAX_CHUNK as u8) + 1;
    for length_header in LengthHeader::ALL {
        for header_len in [0, 5] {
            let mut codec = FrameCodec::new(length_header).with_header_len(header_len);
            if control & 0x80 != 0 {
                codec = codec.with_max_frame(256);
            }
            let max = length_header.prefix_len() + codec.max_frame() + MAX_CHUNK;
            let mut buf = BytesMut::new();
            'feed: for piece in stream.chunks(chunk) {
                buf.extend_from_slice(piece);
                loop {
                    assert!(buf.len() <= max, "buffered {} > {max}", buf.len());
                    // Growth may double the allocation, but never past twice the bound.
                    assert!(
                        buf.capacity() <= 2 * max,
                        "capacity {} > 2 * {max}",
                        buf.capacity()
                    );
                    match codec.decode(&mut buf) {
                        Ok(Some(frame)) => {
                            assert!(frame.header.len() + frame.body.len() <= codec.max_frame());
                            assert!(frame.is_keep_alive() || frame.header.len() == header_len);
                        }
                        Ok(None) => break,
                        Err(_) => break 'feed,
                    }
                }
            }
            let _ = codec.decode_eof(&mut buf);
        }
    }
});
