import { describe, expect, it } from 'vitest';
import { limitCredentialRefresh, limitSecretsRefresh } from '../../../lib/credentials/credential-refresh';
import type { Credential } from '../../../lib/delivery/endpoint';

const bearer = (token: string): Credential => ({ kind: 'bearer', token });

describe('limitCredentialRefresh (review finding 2)', () => {
  it('reads each endpoint at most once per interval and shares the value', async () => {
    let clock = 0;
    const reads: string[] = [];
    const limited = limitCredentialRefresh(
      async (endpoint) => {
        reads.push(endpoint);
        return bearer(`new-${reads.length}`);
      },
      30_000,
      () => clock,
    );
    expect(await limited('a', bearer('old'))).toEqual(bearer('new-1'));
    // A caller still holding the old value gets the one read in this interval, without another read.
    expect(await limited('a', bearer('old'))).toEqual(bearer('new-1'));
    expect(await limited('b', bearer('old'))).toEqual(bearer('new-2'));
    clock = 29_999;
    expect(await limited('a', bearer('new-1'))).toBeUndefined();
    expect(reads).toEqual(['a', 'b']);
    clock = 30_000;
    expect(await limited('a', bearer('new-1'))).toEqual(bearer('new-3'));
    expect(reads).toEqual(['a', 'b', 'a']);
  });

  it('resolves undefined when the value read equals the refused one', async () => {
    const limited = limitCredentialRefresh(async () => ({ kind: 'hmac', secret: 's' }));
    expect(await limited('a', { kind: 'hmac', secret: 's' })).toBeUndefined();
  });

  it('a failed read rejects its caller; others in the interval get undefined, not another read', async () => {
    let reads = 0;
    const limited = limitCredentialRefresh(async () => {
      reads++;
      throw new Error('ThrottlingException');
    });
    await expect(limited('a', bearer('old'))).rejects.toThrow('ThrottlingException');
    expect(await limited('a', bearer('old'))).toBeUndefined();
    expect(reads).toBe(1);
  });
});

describe('limitSecretsRefresh', () => {
  it("reads an endpoint's secrets once per interval; undefined when every value equals the refused one", async () => {
    let clock = 0;
    let reads = 0;
    let stored = 'v1';
    const limited = limitSecretsRefresh(
      async () => {
        reads++;
        return new Map([['ssm:/k', stored]]);
      },
      30_000,
      () => clock,
    );
    expect(await limited('a', new Map([['ssm:/k', 'v1']]))).toBeUndefined();
    stored = 'v2';
    // Within the interval: the one read, which held the refused value.
    expect(await limited('a', new Map([['ssm:/k', 'v1']]))).toBeUndefined();
    expect(reads).toBe(1);
    clock = 30_000;
    expect(await limited('a', new Map([['ssm:/k', 'v1']]))).toEqual(new Map([['ssm:/k', 'v2']]));
    expect(reads).toBe(2);
  });
});
