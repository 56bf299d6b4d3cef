//! What the IPC commands share around the api's jobs: the blocking pool they run on, a job
//! registered with its own cancel token while it streams, and cancelling one by name.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tauri::ipc::{Channel, IpcResponse};
use tunelab_api::eval::Caches;
use tunelab_api::jobs::JobKind;
use tunelab_api::{ApiError, ErrorCode};

use crate::AppState;

/// Cancels this app's job `name` of `kind`, or says that it is not running here (`not_running`).
pub(crate) fn cancel_job(
    state: &AppState,
    kind: JobKind,
    name: &str,
    not_running: String,
) -> Result<(), ApiError> {
    if state.api.jobs.cancel(kind, name) {
        Ok(())
    } else {
        Err(ApiError::not_found(not_running))
    }
}

/// Runs `f` on the blocking pool, off the async runtime the window's calls arrive on.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tauri::async_runtime::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("background task failed: {e}")))?
}

/// Runs `work` off the async runtime with the app's caches and a cancel token of its own, listed
/// as the job `kind` on the target `target` names (worked out on that thread, as it may read a
/// file). A closed window drops the channel; the token is then set, and the job stops at its
/// next step or token.
pub(crate) async fn cached_job<E: IpcResponse + Send + Sync + 'static, T: Send + 'static>(
    state: &AppState,
    kind: JobKind,
    target: impl FnOnce() -> Result<String, ApiError> + Send + 'static,
    on_event: Channel<E>,
    work: impl FnOnce(&Caches, &AtomicBool, &mut (dyn FnMut(E) + Send)) -> Result<T, ApiError>
        + Send
        + 'static,
) -> Result<T, ApiError> {
    let api = state.api.clone();
    let cancel = Arc::new(AtomicBool::new(false));
    blocking(move || {
        let _entry = api.jobs.register(kind, &target()?, cancel.clone());
        work(&api.caches(), &cancel, &mut |event| {
            if on_event.send(event).is_err() {
                cancel.store(true, Ordering::Relaxed);
            }
        })
    })
    .await
}
