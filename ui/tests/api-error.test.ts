import { describe, expect, it } from 'vitest';
import { toApiError } from '../src/lib/api-error';

describe('toApiError', () => {
  it('keeps backend errors as they are', () => {
    expect(toApiError({ code: 'not_found', message: 'No model named x', extra: 1 })).toEqual({
      code: 'not_found',
      message: 'No model named x',
    });
  });

  it('turns a string rejection into an internal error', () => {
    expect(toApiError('command chat not found')).toEqual({ code: 'internal', message: 'command chat not found' });
  });

  it('turns Error objects and odd values into internal errors', () => {
    expect(toApiError(new TypeError('boom'))).toEqual({ code: 'internal', message: 'boom' });
    expect(toApiError(undefined)).toEqual({ code: 'internal', message: 'Unknown error' });
    expect(toApiError({ status: 500 })).toEqual({ code: 'internal', message: '{"status":500}' });
  });
});
