import { describe, expect, it } from 'vitest';
import type { SessionRecord } from '../../../functions/broker/ports.ts';
import {
  type CallerView,
  decideRefreshStep,
  LEASE_SKEW_MS,
} from '../../../functions/broker/refresh-decision.ts';
import { sessionRecord } from '../../support/fixtures.ts';

const NOW = 1_700_000_000_000;

/** A live session at version 3, committed a minute ago, with no lease. */
function record(overrides: Partial<SessionRecord> = {}): SessionRecord {
  return sessionRecord(NOW, { version: 3, ...overrides });
}

/** A caller that started 100 ms ago, sent no hint, and has time to hold the lease. */
function view(overrides: Partial<CallerView> = {}): CallerView {
  return {
    now: NOW,
    startedAt: NOW - 100,
    waitDeadline: NOW + 9_900,
    versionHint: undefined,
    firstSeenVersion: 3,
    lastAttempt: undefined,
    canHold: true,
    reuseWindowMs: 5_000,
    ...overrides,
  };
}

const heldBy = (owner: string, msLeft: number) => ({ leaseOwner: owner, leaseUntil: NOW + msLeft });

describe('Function: decideRefreshStep', () => {
  it.each<[string, SessionRecord | undefined, Partial<CallerView>, string]>([
    ['no session', undefined, {}, 'ended'],
    ['past its absolute expiry', record({ absoluteExpiresAt: NOW }), {}, 'ended'],
    ['past its idle expiry', record({ idleExpiresAt: NOW - 1 }), {}, 'ended'],
    ['a hint newer than the stored version', record(), { versionHint: 4 }, 'hint_too_new'],
    ['a hint lower than the stored version', record(), { versionHint: 2 }, 'return_stored'],
    ['a version newer than first seen (coalesced)', record({ version: 4 }), {}, 'return_stored'],
    [
      'no hint and a token inside the reuse window',
      record({ committedAt: NOW - 4_999 }),
      {},
      'return_stored',
    ],
    ['no hint, a stale token and a free lease', record(), {}, 'acquire'],
    [
      'no hint, inside the reuse window, a token expiring within the margin',
      record({ committedAt: NOW - 1_000, accessTokenExpiresAt: NOW + 300_000 }),
      { refreshMarginMs: 300_000 },
      'acquire',
    ],
    [
      'no hint, inside the reuse window, a token expiring after the margin',
      record({ committedAt: NOW - 1_000, accessTokenExpiresAt: NOW + 300_001 }),
      { refreshMarginMs: 300_000 },
      'return_stored',
    ],
    [
      'no hint, inside the reuse window, an expiring token but no margin set',
      record({ committedAt: NOW - 1_000, accessTokenExpiresAt: NOW + 1_000 }),
      {},
      'return_stored',
    ],
    [
      'no hint, a version committed while waiting that expires within the margin',
      record({ version: 4, committedAt: NOW - 10, accessTokenExpiresAt: NOW + 60_000 }),
      { refreshMarginMs: 300_000 },
      'return_stored',
    ],
    [
      'a hint lower than the stored version and a token expiring within the margin',
      record({ accessTokenExpiresAt: NOW + 60_000 }),
      { versionHint: 2, refreshMarginMs: 300_000 },
      'return_stored',
    ],
    [
      'the hint equal to the stored version and a free lease',
      record(),
      { versionHint: 3 },
      'acquire',
    ],
    ['a free lease but no time left to hold it', record(), { canHold: false }, 'wait'],
    ['a held lease', record(heldBy('other', 4_000)), {}, 'wait'],
    [
      'a lease ended within the skew margin',
      record(heldBy('other', -LEASE_SKEW_MS + 1)),
      {},
      'wait',
    ],
    ['a lease ended past the skew margin', record(heldBy('other', -LEASE_SKEW_MS)), {}, 'acquire'],
    [
      'a held lease and the waiting budget spent',
      record(heldBy('other', 4_000)),
      { waitDeadline: NOW },
      'give_up',
    ],
  ])('%s: %s', (_why, stored, caller, kind) => {
    expect(decideRefreshStep(stored, view(caller)).kind).toBe(kind);
  });

  it('takes the lease whose acquire landed with its answer lost, when it can still hold it', () => {
    const mine = { owner: 'me', leaseUntil: NOW + 11_900 };
    const stored = record({ leaseOwner: 'me', leaseUntil: NOW + 11_900 });

    expect(decideRefreshStep(stored, view({ lastAttempt: mine }))).toMatchObject({
      kind: 'hold',
      owner: 'me',
      leaseUntil: NOW + 11_900,
    });
    expect(decideRefreshStep(stored, view({ lastAttempt: mine, canHold: false })).kind).toBe(
      'wait',
    );
    expect(
      decideRefreshStep(stored, view({ lastAttempt: { owner: 'me', leaseUntil: NOW + 1 } })).kind,
    ).toBe('wait');
  });

  it('shares the failure of the holder it waited for, with a Retry-After past its lease', () => {
    const failed = record({
      ...heldBy('holder', 3_200),
      lastFailureAt: NOW - 50,
      lastFailureKind: 'unavailable',
      lastFailureOwner: 'holder',
    });

    expect(decideRefreshStep(failed, view())).toEqual({
      kind: 'share_failure',
      failure: 'unavailable',
      retryAfterSeconds: 4,
    });
  });

  it('shares the failure of a holder fencing its lease even when it failed before this call', () => {
    // The holder timed out upstream and keeps its lease: a newcomer must not wait for it.
    const fenced = record({
      ...heldBy('holder', 2_000),
      lastFailureAt: NOW - 5_000,
      lastFailureKind: 'unavailable',
      lastFailureOwner: 'holder',
    });
    const released = record({
      lastFailureAt: NOW - 5_000,
      lastFailureKind: 'unavailable',
      lastFailureOwner: 'holder',
    });

    expect(decideRefreshStep(fenced, view()).kind).toBe('share_failure');
    expect(decideRefreshStep(released, view()).kind).toBe('acquire');
  });

  it('never sleeps past the lease end (and its skew margin) or the waiting budget', () => {
    const soonFree = decideRefreshStep(record(heldBy('other', 200)), view());
    const budgetEnds = decideRefreshStep(
      record(heldBy('other', 8_000)),
      view({ waitDeadline: NOW + 300 }),
    );

    expect(soonFree).toEqual({ kind: 'wait', maxSleepMs: 200 + LEASE_SKEW_MS + 5 });
    expect(budgetEnds).toEqual({ kind: 'wait', maxSleepMs: 300 });
  });

  it('gives up with a Retry-After that covers the held lease', () => {
    const step = decideRefreshStep(record(heldBy('other', 7_600)), view({ waitDeadline: NOW }));

    expect(step).toEqual({ kind: 'give_up', retryAfterSeconds: 9 });
  });
});
