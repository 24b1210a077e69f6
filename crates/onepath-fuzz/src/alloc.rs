//! A counting global allocator: while a fuzz input runs on a thread ("armed"), any single
//! allocation over [`MAX_ONE_ALLOC`] bytes, or more than [`MAX_LIVE_GROWTH`] bytes live at
//! once beyond what the thread held when the input started, is a finding: the input is saved
//! and the process aborts (an allocation cannot fail politely, and a parser that asks for
//! gigabytes from a few kilobytes of input is the bug being looked for).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Largest single allocation an input may cause.
pub const MAX_ONE_ALLOC: usize = 256 << 20;
/// Most bytes an input may hold live at once (beyond the thread's live bytes at its start).
pub const MAX_LIVE_GROWTH: usize = 1 << 30;

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static BASE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
    /// Called with a description before the abort (saves the input).
    static ON_LIMIT: Cell<Option<fn(&str)>> = const { Cell::new(None) };
}

/// The allocator; `lib.rs` installs it as the global one.
pub struct Counting;

/// Starts counting an input on this thread; `on_limit` saves it if it breaks a limit.
pub fn arm(on_limit: fn(&str)) {
    let live = LIVE.with(Cell::get);
    BASE.with(|b| b.set(live));
    PEAK.with(|p| p.set(0));
    LARGEST.with(|l| l.set(0));
    ON_LIMIT.with(|o| o.set(Some(on_limit)));
    ARMED.with(|a| a.set(true));
}

/// Stops counting; returns (largest single allocation, peak live growth) of the input.
pub fn disarm() -> (usize, usize) {
    ARMED.with(|a| a.set(false));
    (LARGEST.with(Cell::get), PEAK.with(Cell::get))
}

#[cold]
fn limit(what: &str, size: usize) -> ! {
    ARMED.with(|a| a.set(false));
    let msg = format!(
        "{what}: {size} bytes (limits: one allocation {MAX_ONE_ALLOC}, live {MAX_LIVE_GROWTH})"
    );
    if let Some(f) = ON_LIMIT.with(Cell::get) {
        f(&msg);
    }
    eprintln!("onepath-fuzz: HUGE ALLOCATION from a small input: {msg}");
    std::process::abort();
}

fn grew(size: usize) {
    // `try_with`: no counting while a thread's locals are being torn down.
    let _ = LIVE.try_with(|l| {
        let live = l.get() + size;
        l.set(live);
        if ARMED.with(Cell::get) {
            let growth = live.saturating_sub(BASE.with(Cell::get));
            PEAK.with(|p| p.set(p.get().max(growth)));
            LARGEST.with(|m| m.set(m.get().max(size)));
            if size > MAX_ONE_ALLOC {
                limit("one allocation", size);
            }
            if growth > MAX_LIVE_GROWTH {
                limit("live bytes", growth);
            }
        }
    });
}

fn shrank(size: usize) {
    let _ = LIVE.try_with(|l| l.set(l.get().saturating_sub(size)));
}

// SAFETY: every call is forwarded to `System` unchanged; the bookkeeping only touches
// const-initialised thread-locals without destructors, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ARMED.try_with(Cell::get).unwrap_or(false) && layout.size() > MAX_ONE_ALLOC {
            limit("one allocation", layout.size());
        }
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if ARMED.try_with(Cell::get).unwrap_or(false) && layout.size() > MAX_ONE_ALLOC {
            limit("one allocation", layout.size());
        }
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with this layout.
        unsafe { System.dealloc(ptr, layout) };
        shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if ARMED.try_with(Cell::get).unwrap_or(false) && new_size > MAX_ONE_ALLOC {
            limit("one allocation (realloc)", new_size);
        }
        // SAFETY: forwarded; `ptr` was allocated by `System` with `layout`.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            shrank(layout.size());
            grew(new_size);
        }
        p
    }
}
