//! The global allocator: mimalloc, tuned for a small idle footprint.
//!
//! glibc's allocator took a sixth of a cached GET's CPU and kept freed Argon2
//! buffers (19 MiB each) in per-thread arenas (588 MB after the bench's
//! logins, against 210 MB with mimalloc). mimalloc's defaults commit whole
//! arenas up front and give freed memory back to the OS only on later
//! allocations, which left an idle `orderly all` at 47 MB; with the two
//! options below it idles at ~21 MB at no measurable cost in throughput.

use libmimalloc_sys::mi_option_set;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_arena_eager_commit` and `mi_option_purge_delay` in the
/// `mi_option_e` of mimalloc v3 (the version libmimalloc-sys builds); the
/// Rust bindings name only the v2 numbering. A test checks their defaults.
const ARENA_EAGER_COMMIT: i32 = 4;
const PURGE_DELAY_MS: i32 = 15;

/// Commit arena memory as it is used, and return freed memory at once.
/// Call first thing in `main`: arenas created before it keep the defaults.
// The workspace denies unsafe code; these two FFI calls are its one exception.
#[allow(unsafe_code)]
pub fn tune() {
    // SAFETY: mi_option_set only stores a value for a valid option index.
    unsafe {
        mi_option_set(ARENA_EAGER_COMMIT, 0);
        mi_option_set(PURGE_DELAY_MS, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The indices name the options meant: their defaults in mimalloc v3's
    /// options.c are 2 (eager commit on overcommitting systems) and 1,000 ms.
    #[test]
    #[allow(unsafe_code)]
    fn the_option_indices_are_the_intended_options() {
        // SAFETY: reading an option is always allowed.
        let (eager, purge) = unsafe {
            (
                libmimalloc_sys::mi_option_get(ARENA_EAGER_COMMIT),
                libmimalloc_sys::mi_option_get(PURGE_DELAY_MS),
            )
        };
        assert_eq!((eager, purge), (2, 1000));
    }
}
