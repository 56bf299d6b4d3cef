//! The caches of loaded models (chat's models, knowledge's embedder and store): a
//! panic while one is loading must cost that load only, not every later one.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Mutex, MutexGuard};

use crate::error::{ApiError, ErrorCode, Result};

/// Locks a cache slot. A slot left poisoned by a panic while it was held is emptied and used
/// again: what it held may be half made.
pub(crate) fn lock<T: Default>(slot: &Mutex<T>) -> MutexGuard<'_, T> {
    slot.lock().unwrap_or_else(|poisoned| {
        slot.clear_poison();
        let mut guard = poisoned.into_inner();
        *guard = T::default();
        guard
    })
}

/// Runs `load`, turning a panic inside it (a reader meeting a file it did not expect) into an
/// error naming `what`.
pub(crate) fn load<T>(what: &str, load: impl FnOnce() -> Result<T>) -> Result<T> {
    catch_unwind(AssertUnwindSafe(load)).unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".into());
        Err(ApiError::new(
            ErrorCode::BadModel,
            format!("{what}: loading it failed inside the reader ({why}); the file may be damaged"),
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_slot_poisoned_by_a_panic_is_emptied_and_works_again() {
        let slot = Arc::new(Mutex::new(Some(1u32)));
        let held = slot.clone();
        let _ = std::thread::spawn(move || {
            let mut guard = held.lock().unwrap();
            *guard = Some(2);
            panic!("a reader gave up");
        })
        .join();
        assert!(slot.is_poisoned());
        let mut guard = lock(&slot);
        assert_eq!(*guard, None, "a half-made entry is not served");
        *guard = Some(3);
        drop(guard);
        assert!(!slot.is_poisoned());
        assert_eq!(*lock(&slot), Some(3));
    }

    #[test]
    fn a_panic_while_loading_is_an_error_naming_the_model() {
        let err = load::<()>("broken.gguf", || panic!("index out of bounds")).unwrap_err();
        assert_eq!(err.code, ErrorCode::BadModel);
        assert!(
            err.message.contains("broken.gguf") && err.message.contains("index out of bounds"),
            "{}",
            err.message
        );
        assert_eq!(load("fine", || Ok(7)).unwrap(), 7);
    }
}
