//! The lib test binary's allocator: the system allocator, counting per thread the heap it hands
//! out as glibc sizes its blocks, so that a test can measure what a structure really holds.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    static HEAP: Cell<i64> = const { Cell::new(0) };
}

/// A block of `size` bytes as glibc's malloc takes it on 64-bit Linux: the request plus a size
/// word, rounded up to 16 bytes, 32 at the least.
fn block_size(size: usize) -> i64 {
    (size + 8).next_multiple_of(16).max(32) as i64
}

fn add(bytes: i64) {
    // `try_with`: no count during thread teardown, when the slot is gone.
    let _ = HEAP.try_with(|heap| heap.set(heap.get() + bytes));
}

/// Net heap bytes this thread allocated (and did not free) since it started.
pub(crate) fn thread_heap() -> i64 {
    HEAP.with(Cell::get)
}

struct Counting;

// SAFETY: every call is forwarded unchanged to `System`; the counter is a thread-local `Cell`
// with a const initialiser and no destructor, so updating it neither allocates nor reenters.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        add(block_size(layout.size()));
        // SAFETY: the caller's contract for `alloc` is `System.alloc`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        add(block_size(layout.size()));
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        add(-block_size(layout.size()));
        // SAFETY: `ptr` came from `System` with this layout, as the caller guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        add(block_size(new_size) - block_size(layout.size()));
        // SAFETY: as for `dealloc`, and `new_size` meets `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;
