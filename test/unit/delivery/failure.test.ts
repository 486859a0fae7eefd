import { describe, expect, it } from 'vitest';
import { toFailure } from '../../../lib/delivery/failure';
import { DeliveryAttemptError } from '../../../lib/errors';

describe('toFailure', () => {
  it('keeps the kind, status, code and Retry-After (rounded up to seconds) of an attempt error', () => {
    const error = new DeliveryAttemptError('transient', 'sink', 'HTTP 429', 429, 'TOO_MANY', 1500);
    expect(toFailure('sink', error, 2)).toEqual({
      endpoint: 'sink',
      kind: 'transient',
      status: 429,
      error: 'TOO_MANY',
      retryAfterS: 2,
      attempts: 2,
    });
    // Absent fields stay absent: the failure is logged and compared as it is.
    expect(toFailure('sink', new DeliveryAttemptError('rejected', 'sink', 'HTTP 422', 422), 1)).toEqual({
      endpoint: 'sink',
      kind: 'rejected',
      status: 422,
      attempts: 1,
    });
  });

  it('reads any other error as transient, with its message', () => {
    expect(toFailure('sink', new Error('cannot sign'), 1)).toEqual({
      endpoint: 'sink',
      kind: 'transient',
      error: 'cannot sign',
      attempts: 1,
    });
    expect(toFailure('sink', 'odd', 3)).toMatchObject({ kind: 'transient', error: 'odd' });
  });
});
