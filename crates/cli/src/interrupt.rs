//! Ctrl+C for long commands: the first press asks the work to stop the way the app's Stop
//! button does (training checkpoints and exits, a knowledge-base add is undone, a download
//! keeps its bytes for the next pull); a second press quits at once.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

/// The flag the first Ctrl+C sets; installs the handler on first use. Commands that never ask
/// for it keep the default behaviour (Ctrl+C ends them at once).
pub fn flag() -> Arc<AtomicBool> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        let set = flag.clone();
        let presses = AtomicUsize::new(0);
        let action = move || {
            if presses.fetch_add(1, Ordering::SeqCst) == 0 {
                set.store(true, Ordering::SeqCst);
                say(b"\nstopping cleanly (Ctrl+C again to quit now)\n");
            } else {
                say(b"\nquit\n");
                // SAFETY: _exit is async-signal-safe; nothing is flushed, as a kill would.
                unsafe { libc::_exit(130) };
            }
        };
        // SAFETY: the action only touches atomics and calls async-signal-safe functions
        // (write, _exit); it allocates nothing and takes no lock.
        if let Err(e) = unsafe { signal_hook_registry::register(libc::SIGINT, action) } {
            eprintln!("warning: Ctrl+C cannot be caught ({e}); it will end the command at once");
        }
        flag
    })
    .clone()
}

/// Writes `message` to stderr from a signal handler (no allocation, no lock).
fn say(message: &[u8]) {
    // SAFETY: write(2) is async-signal-safe and the buffer outlives the call.
    unsafe {
        libc::write(2, message.as_ptr().cast(), message.len() as _);
    }
}
