//! Capture-time stamp for latency measurement (`camera.source = "test:stamp"`): each
//! frame of the test pattern gets its wall-clock capture time, in milliseconds, drawn as
//! a row of black and white blocks along its bottom edge. A page reads the blocks back
//! from the decoded video (canvas) and subtracts: capture-to-decoded latency on one clock.
//!
//! Layout (the page's reader in `benches/` follows it): [`BLOCKS`] square blocks from
//! the bottom-left corner, each [`block_size`] pixels; block i is white when bit i is set,
//! most significant first: 32 bits of the Unix time in ms (mod 2^32), then an 8-bit check
//! (the four bytes XORed with 0xA5) so a misread frame is dropped rather than counted.

use gstreamer as gst;
use gstreamer_video as gst_video;
use gstreamer_video::prelude::*;

/// Blocks in the row: 32 time bits and 8 check bits.
pub const BLOCKS: u32 = 40;
/// Luma of a set and a clear bit (video range), far apart so compression keeps them.
const WHITE: u8 = 235;
const BLACK: u8 = 16;

/// Block edge in pixels for a frame `width` wide: 16, or less on small frames (even,
/// so the 4:2:0 chroma blocks line up).
pub fn block_size(width: u32) -> u32 {
    (width / BLOCKS).clamp(2, 16) & !1
}

/// The 40 bits for a time in ms.
pub fn bits(ms: u64) -> u64 {
    let t = (ms & 0xFFFF_FFFF) as u32;
    let b = t.to_be_bytes();
    let check = b[0] ^ b[1] ^ b[2] ^ b[3] ^ 0xA5;
    (u64::from(t) << 8) | u64::from(check)
}

/// The time a row of 40 bits carries, if its check holds.
pub fn decode(bits: u64) -> Option<u32> {
    let t = (bits >> 8) as u32;
    let b = t.to_be_bytes();
    ((b[0] ^ b[1] ^ b[2] ^ b[3] ^ 0xA5) == (bits & 0xFF) as u8).then_some(t)
}

/// Draws the stamp into an I420 frame's planes. Chroma under the blocks is set neutral
/// so the blocks read as grey levels whatever the picture's colours.
pub fn draw_i420(planes: [(&mut [u8], usize); 3], width: u32, height: u32, ms: u64) {
    let bs = block_size(width) as usize;
    if (BLOCKS as usize) * bs > width as usize || bs > height as usize {
        return;
    }
    let value = bits(ms);
    let [(y, y_stride), (u, u_stride), (v, v_stride)] = planes;
    let top = height as usize - bs;
    for i in 0..BLOCKS as usize {
        let set = value >> (BLOCKS as usize - 1 - i) & 1 == 1;
        let luma = if set { WHITE } else { BLACK };
        for row in top..top + bs {
            let start = row * y_stride + i * bs;
            if let Some(px) = y.get_mut(start..start + bs) {
                px.fill(luma);
            }
        }
        for row in top / 2..(top + bs) / 2 {
            for (plane, stride) in [(&mut *u, u_stride), (&mut *v, v_stride)] {
                let start = row * stride + i * bs / 2;
                if let Some(px) = plane.get_mut(start..start + bs / 2) {
                    px.fill(128);
                }
            }
        }
    }
}

/// Stamps every buffer leaving `element` (an `identity` after an I420 test source).
pub fn install(element: &gst::Element) {
    let Some(pad) = element.static_pad("src") else {
        return;
    };
    pad.add_probe(gst::PadProbeType::BUFFER, |pad, info| {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let Some(video_info) = pad
            .current_caps()
            .and_then(|caps| gst_video::VideoInfo::from_caps(&caps).ok())
        else {
            return gst::PadProbeReturn::Ok;
        };
        if video_info.format() != gst_video::VideoFormat::I420 {
            return gst::PadProbeReturn::Ok;
        }
        if let Some(gst::PadProbeData::Buffer(buffer)) = info.data.as_mut() {
            let buffer = buffer.make_mut();
            if let Ok(mut frame) =
                gst_video::VideoFrameRef::from_buffer_ref_writable(buffer, &video_info)
            {
                let (w, h) = (video_info.width(), video_info.height());
                let stride = |i: usize| {
                    frame
                        .plane_stride()
                        .get(i)
                        .map_or(0, |s| (*s).max(0) as usize)
                };
                let strides = [stride(0), stride(1), stride(2)];
                // I420 has three disjoint planes (the fourth slot is empty).
                let [y, u, v, _] = frame.planes_data_mut();
                draw_i420(
                    [(y, strides[0]), (u, strides[1]), (v, strides[2])],
                    w,
                    h,
                    ms,
                );
            }
        }
        gst::PadProbeReturn::Ok
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_round_trip_and_reject_misreads() {
        for ms in [0u64, 1, 1_795_000_123_456, u64::MAX] {
            let b = bits(ms);
            assert_eq!(decode(b), Some((ms & 0xFFFF_FFFF) as u32));
            assert_eq!(decode(b ^ (1 << 20)), None, "one flipped bit is caught");
        }
    }

    #[test]
    fn draws_blocks_along_the_bottom() {
        let (w, h) = (640usize, 360usize);
        let mut y = vec![100u8; w * h];
        let mut u = vec![50u8; w * h / 4];
        let mut v = vec![50u8; w * h / 4];
        let ms = 1_795_000_123_456;
        draw_i420(
            [(&mut y, w), (&mut u, w / 2), (&mut v, w / 2)],
            w as u32,
            h as u32,
            ms,
        );
        let bs = block_size(w as u32) as usize;
        assert_eq!(bs, 16);
        let mut read = 0u64;
        for i in 0..BLOCKS as usize {
            let px = y[(h - bs / 2) * w + i * bs + bs / 2];
            assert!(px == WHITE || px == BLACK);
            read = read << 1 | u64::from(px == WHITE);
        }
        assert_eq!(decode(read), Some((ms & 0xFFFF_FFFF) as u32));
        assert_eq!(y[(h - bs - 1) * w], 100, "rows above untouched");
        assert_eq!(
            u[(h / 2 - 1) * w / 2],
            128,
            "chroma neutral under the blocks"
        );
        assert_eq!(block_size(320), 8);
        // Too small a frame: left alone, no panic.
        let mut tiny = vec![0u8; 16];
        let (mut a, mut b) = (vec![0u8; 4], vec![0u8; 4]);
        draw_i420([(&mut tiny, 4), (&mut a, 2), (&mut b, 2)], 4, 4, ms);
    }
}
