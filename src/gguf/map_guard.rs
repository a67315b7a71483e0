//! A model file truncated while it is mapped: the next read of a page past its new end raises
//! SIGBUS, which kills the process without a word (exit status 135). While a file's map is
//! registered here, a SIGBUS at an address inside it ends the program with one error line naming
//! the file and exit status 1 instead; what was already printed stays (streamed text is flushed
//! piece by piece). A SIGBUS anywhere else goes to the handler that was installed before
//! (Rust's runtime has one), or takes the default action.

/// Keeps a map registered; dropping it unregisters the map.
pub struct MapGuard {
    #[cfg(unix)]
    slot: usize,
    /// The message the handler writes; it must outlive the registration.
    #[cfg(unix)]
    _message: Box<[u8]>,
}

/// Registers `map` (the whole mapped file at `path`); `None` when no slot is free (then a
/// truncation crashes as before) or on a platform without signals.
pub fn register(map: &[u8], path: &str) -> Option<MapGuard> {
    #[cfg(unix)]
    {
        imp::register(map, path)
    }
    #[cfg(not(unix))]
    {
        let _ = (map, path);
        None
    }
}

/// The line written when the file changed (with a newline before it, as text may be streaming).
fn message(path: &str) -> String {
    format!(
        "\nerror: the model file '{path}' changed while in use (it was truncated or replaced in \
         place by another program): the run cannot go on; do not modify a model file while qwen \
         runs\n"
    )
}

#[cfg(unix)]
mod imp {
    use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
    use std::sync::{Once, OnceLock};

    use super::MapGuard;

    /// Files mapped at once that can be guarded (a run maps one).
    const SLOTS: usize = 16;

    /// A slot's `start` while it is being filled or emptied.
    const BUSY: usize = usize::MAX;

    /// One registered map: `start == 0` is a free slot. Only atomics: the handler reads them.
    struct Slot {
        start: AtomicUsize,
        end: AtomicUsize,
        message: AtomicPtr<u8>,
        message_len: AtomicUsize,
    }

    #[allow(clippy::declare_interior_mutable_const)] // a template for the array below
    const FREE: Slot = Slot {
        start: AtomicUsize::new(0),
        end: AtomicUsize::new(0),
        message: AtomicPtr::new(std::ptr::null_mut()),
        message_len: AtomicUsize::new(0),
    };

    static SLOT_TABLE: [Slot; SLOTS] = [FREE; SLOTS];

    /// The SIGBUS action before ours, to hand other faults to.
    static PREVIOUS: OnceLock<libc::sigaction> = OnceLock::new();

    pub fn register(map: &[u8], path: &str) -> Option<MapGuard> {
        if map.is_empty() {
            return None;
        }
        install();
        let message = super::message(path).into_bytes().into_boxed_slice();
        for (i, slot) in SLOT_TABLE.iter().enumerate() {
            let claimed = slot
                .start
                .compare_exchange(0, BUSY, Ordering::AcqRel, Ordering::Relaxed);
            if claimed.is_err() {
                continue;
            }
            let start = map.as_ptr() as usize;
            slot.message
                .store(message.as_ptr() as *mut u8, Ordering::Relaxed);
            slot.message_len.store(message.len(), Ordering::Relaxed);
            slot.end.store(start + map.len(), Ordering::Relaxed);
            slot.start.store(start, Ordering::Release);
            return Some(MapGuard {
                slot: i,
                _message: message,
            });
        }
        None
    }

    impl Drop for MapGuard {
        fn drop(&mut self) {
            let slot = &SLOT_TABLE[self.slot];
            slot.start.store(BUSY, Ordering::Release);
            slot.end.store(0, Ordering::Relaxed);
            slot.message_len.store(0, Ordering::Relaxed);
            slot.message.store(std::ptr::null_mut(), Ordering::Relaxed);
            slot.start.store(0, Ordering::Release);
        }
    }

    fn install() {
        static ONCE: Once = Once::new();
        ONCE.call_once(|| {
            // SAFETY: plain sigaction calls with initialised structs; the handler only reads
            // atomics and calls async-signal-safe functions (write, _exit, sigaction).
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_sigbus as *const () as usize;
                action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
                libc::sigemptyset(&mut action.sa_mask);
                let mut previous: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(libc::SIGBUS, &action, &mut previous) == 0 {
                    let _ = PREVIOUS.set(previous);
                }
            }
        });
    }

    /// The message of the registered map holding `addr`, if any.
    pub(super) fn message_for(addr: usize) -> Option<(*const u8, usize)> {
        SLOT_TABLE.iter().find_map(|slot| {
            let start = slot.start.load(Ordering::Acquire);
            if start == 0 || start == BUSY {
                return None;
            }
            let end = slot.end.load(Ordering::Relaxed);
            let message = slot.message.load(Ordering::Relaxed);
            let len = slot.message_len.load(Ordering::Relaxed);
            (addr >= start && addr < end && !message.is_null()).then_some((message as _, len))
        })
    }

    extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
        // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
        let addr = unsafe { (*info).si_addr() } as usize;
        if let Some((message, len)) = message_for(addr) {
            // SAFETY: the message lives as long as its slot is registered.
            unsafe {
                libc::write(libc::STDERR_FILENO, message as *const libc::c_void, len);
                libc::_exit(1);
            }
        }
        // Not a guarded map: the previous handler, or the default action once we return and
        // the faulting instruction runs again.
        // SAFETY: calling the handler that was installed for this signal, as the kernel would.
        unsafe {
            match PREVIOUS.get() {
                Some(prev) if prev.sa_sigaction > libc::SIG_IGN => {
                    if prev.sa_flags & libc::SA_SIGINFO != 0 {
                        let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                            std::mem::transmute(prev.sa_sigaction);
                        f(sig, info, ctx);
                    } else {
                        let f: extern "C" fn(libc::c_int) = std::mem::transmute(prev.sa_sigaction);
                        f(sig);
                    }
                }
                _ => {
                    let mut default: libc::sigaction = std::mem::zeroed();
                    default.sa_sigaction = libc::SIG_DFL;
                    libc::sigaction(sig, &default, std::ptr::null_mut());
                }
            }
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn a_registered_map_is_found_until_its_guard_drops() {
        let bytes = vec![7u8; 4096];
        let at = bytes.as_ptr() as usize;
        let guard = register(&bytes, "some/model.gguf").expect("a free slot");
        let (message, len) = imp::message_for(at + 100).expect("inside the map");
        // SAFETY: the message lives while the guard does.
        let text = unsafe { std::slice::from_raw_parts(message, len) };
        let text = String::from_utf8_lossy(text);
        assert!(
            text.contains("'some/model.gguf' changed while in use"),
            "{text}"
        );
        assert_eq!(text.trim().lines().count(), 1, "{text}");
        assert!(imp::message_for(at + 4096).is_none(), "past the end");
        assert!(
            imp::message_for(at.wrapping_sub(1)).is_none(),
            "before the start"
        );
        drop(guard);
        assert!(imp::message_for(at + 100).is_none(), "unregistered");
    }
}
