import type { ApiError } from '../bindings/ApiError';

/** Code used when a failure did not come with a backend error code of its own. */
export const INTERNAL_ERROR_CODE = 'internal';

export function isApiError(value: unknown): value is ApiError {
  if (typeof value !== 'object' || value === null) return false;
  const candidate = value as Record<string, unknown>;
  return typeof candidate.code === 'string' && typeof candidate.message === 'string';
}

/**
 * Turns anything a rejected command (or other failure) can produce into an ApiError.
 * The backend rejects with {code, message}; Tauri itself may reject with a plain string.
 */
export function toApiError(reason: unknown): ApiError {
  if (isApiError(reason)) return { code: reason.code, message: reason.message };
  if (typeof reason === 'string') return { code: INTERNAL_ERROR_CODE, message: reason };
  if (reason instanceof Error) return { code: INTERNAL_ERROR_CODE, message: reason.message || reason.name };
  if (reason === undefined || reason === null) {
    return { code: INTERNAL_ERROR_CODE, message: 'Unknown error' };
  }
  let message: string;
  try {
    message = JSON.stringify(reason) ?? String(reason);
  } catch {
    message = String(reason);
  }
  return { code: INTERNAL_ERROR_CODE, message };
}
