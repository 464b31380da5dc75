//! The process's global allocator: mimalloc, called the way its C API is
//! fastest for what Rust asks of it.
//!
//! Rust hands every allocation an alignment. The `mimalloc` crate passes
//! each one to `mi_malloc_aligned`, whose fast path only covers small
//! blocks: an allocation above 1 KiB (a request's header buffer, a session
//! cookie's bytes) takes mimalloc's generic aligned path, which
//! over-allocates and then aligns, about 300 instructions more each time
//! (see purpleprotocol/mimalloc_rust#170). Every mimalloc block is a
//! multiple of 8 bytes from a page start aligned to 16 bytes, so an
//! alignment of at most 8 is met by plain `mi_malloc`; larger alignments
//! keep the aligned calls.
//!
//! mimalloc's purge delay stays at its default (free pages go back to the
//! OS after 1 s): with 0, every page freed under load was returned at once
//! and faulted in again moments later, each return a TLB shoot-down across
//! the workers. `benches/load.sh`, two runs of each, side by side: CPU per
//! request with 0 vs 1 s, cookie session 1.10-1.29x vs 1.04-1.08x bare
//! Pingora's, Redis session 1.57-2.04x vs 1.36-1.38x, gRPC check
//! 32.7-35.5 vs 27.1-27.7 us; RSS after the load 24.3-25.4 vs
//! 26.2-27.5 MiB.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// The alignment every mimalloc block has without asking (its word size:
/// block sizes are multiples of it, pages start at least 16-aligned).
const NATURAL_ALIGN: usize = std::mem::size_of::<usize>();

/// Whether every mimalloc block already meets `layout`'s alignment, so the
/// plain (unaligned) calls serve it.
fn natural(layout: Layout) -> bool {
    layout.align() <= NATURAL_ALIGN
}

/// mimalloc as the `#[global_allocator]` (see the module doc).
pub struct MiMalloc;

// SAFETY: every method forwards to mimalloc, which returns null on failure
// and memory of at least `layout.size()` bytes aligned to `layout.align()`:
// plain calls only when the alignment is one every block already has.
unsafe impl GlobalAlloc for MiMalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if natural(layout) {
            mi::mi_malloc(layout.size()).cast()
        } else {
            mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if natural(layout) {
            mi::mi_zalloc(layout.size()).cast()
        } else {
            mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        mi::mi_free(ptr.cast::<c_void>());
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if natural(layout) {
            mi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
        } else {
            mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every size class boundary up to the huge path, at every alignment
    /// from 1 to a page: the block is aligned, writable, zeroed when asked,
    /// and survives growing and shrinking with its bytes.
    #[test]
    fn blocks_are_aligned_usable_and_keep_their_bytes_across_realloc() {
        let sizes = [
            1,
            7,
            8,
            9,
            15,
            16,
            24,
            100,
            1023,
            1024,
            1025,
            4096,
            70_000,
            5 << 20,
        ];
        for align in [1usize, 2, 4, 8, 16, 32, 64, 4096] {
            for size in sizes {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: non-zero sizes, valid layouts; each block is freed
                // once with the layout it was (re)allocated with.
                unsafe {
                    let p = MiMalloc.alloc_zeroed(layout);
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "size {size} align {align}");
                    let block = std::slice::from_raw_parts_mut(p, size);
                    assert!(block.iter().all(|&b| b == 0), "zeroed {size}/{align}");
                    block.fill(0xa5);
                    let grown = MiMalloc.realloc(p, layout, size * 3);
                    assert!(!grown.is_null());
                    assert_eq!(grown as usize % align, 0);
                    let kept = std::slice::from_raw_parts(grown, size);
                    assert!(kept.iter().all(|&b| b == 0xa5), "realloc {size}/{align}");
                    let grown_layout = Layout::from_size_align(size * 3, align).unwrap();
                    let shrunk = MiMalloc.realloc(grown, grown_layout, size.div_ceil(2));
                    assert_eq!(shrunk as usize % align, 0);
                    assert_eq!(*shrunk, 0xa5);
                    let shrunk_layout = Layout::from_size_align(size.div_ceil(2), align).unwrap();
                    MiMalloc.dealloc(shrunk, shrunk_layout);
                    let q = MiMalloc.alloc(layout);
                    assert_eq!(q as usize % align, 0);
                    MiMalloc.dealloc(q, layout);
                }
            }
        }
    }
}
