import type { RefreshFailureKind, SessionRecord } from './ports.ts';

/**
 * Clock-skew margin for comparing a lease end written by one instance with the clock of
 * another: a caller takes over a lapsed lease only this long after its end. Lambda hosts
 * keep time with the Amazon Time Sync Service (chrony, drift well under 1 ms), so 500 ms is
 * a wide margin for a misbehaving host, and small against the 12 s lease: it only delays
 * the takeover from a holder that crashed.
 */
export const LEASE_SKEW_MS = 500;

/** What one `/refresh` caller knows about itself when it looks at the stored session. */
export interface CallerView {
  now: number;
  /** When this invocation started (ms). */
  startedAt: number;
  /** `startedAt` + the waiting budget: past it, a waiter answers 503. */
  waitDeadline: number;
  /** The version the caller says is dead, if it sent one. */
  versionHint: number | undefined;
  /** The version this caller saw first (the stored one, when this is its first look). */
  firstSeenVersion: number | undefined;
  /** This caller's latest acquire attempt, whose answer may have been lost. */
  lastAttempt: { owner: string; leaseUntil: number } | undefined;
  /** Whether this invocation has time left for an upstream call and the commit. */
  canHold: boolean;
  reuseWindowMs: number;
  /**
   * Inside the reuse window, a stored token that expires within this long is refreshed
   * all the same (`refreshMarginSeconds`; README "Access token expiry").
   */
  refreshMarginMs?: number | undefined;
}

/** The next step of a caller that did not (or did not try to) acquire the lease. */
export type RefreshStep =
  /** No live session: `401 invalid_session`. */
  | { kind: 'ended' }
  /** Our own acquire landed but its answer was lost: the lease is ours, refresh. */
  | { kind: 'hold'; record: SessionRecord; owner: string; leaseUntil: number }
  /** The hint is newer than the stored version: `400 invalid_request`. */
  | { kind: 'hint_too_new' }
  /** The stored token is what the caller needs (newer than its hint, or fresh). */
  | { kind: 'return_stored'; record: SessionRecord }
  /** The holder we waited for (or one fencing the lease) failed: answer its failure. */
  | { kind: 'share_failure'; failure: RefreshFailureKind | undefined; retryAfterSeconds: number }
  /** The lease is free and there is time to hold it: try to acquire at once. */
  | { kind: 'acquire' }
  /** The waiting budget is spent: `503` with `Retry-After`. */
  | { kind: 'give_up'; retryAfterSeconds: number }
  /** Poll again after at most `maxSleepMs` (the loop adds jitter and backoff). */
  | { kind: 'wait'; maxSleepMs: number };

/**
 * The single-flight rules (README "The refresh path") as a pure function of the stored
 * session and what this caller knows; the loop in `refresh.ts` performs the step.
 *
 *   holder:   |--acquire--|--------- Salesforce ---------|--commit--|
 *   waiter:       get -> wait ... get -> wait ... get -> return_stored (version moved)
 *   late:                                                      leaseUntil + skew
 *                                                                |-> acquire
 */
export function decideRefreshStep(
  record: SessionRecord | undefined,
  view: CallerView,
): RefreshStep {
  const { now, versionHint, lastAttempt } = view;
  if (!record || now >= record.absoluteExpiresAt || now >= record.idleExpiresAt) {
    return { kind: 'ended' };
  }
  if (
    lastAttempt !== undefined &&
    record.leaseOwner === lastAttempt.owner &&
    record.leaseUntil === lastAttempt.leaseUntil &&
    view.canHold
  ) {
    // Applied, answer lost (a DynamoDB 500 or a dropped connection after the write); the
    // SDK's retry then failed its condition on our own lease.
    return { kind: 'hold', record, owner: lastAttempt.owner, leaseUntil: lastAttempt.leaseUntil };
  }
  if (versionHint !== undefined && versionHint > record.version) return { kind: 'hint_too_new' };

  const firstSeen = view.firstSeenVersion ?? record.version;
  const expiresSoon =
    view.refreshMarginMs !== undefined &&
    record.accessTokenExpiresAt !== undefined &&
    record.accessTokenExpiresAt <= now + view.refreshMarginMs;
  // Without a hint: a version committed while this caller looked is its answer (even one
  // expiring soon: refreshing again would not make it last longer); a token from before
  // is, inside the reuse window, unless it expires within the margin.
  const movedOn =
    versionHint !== undefined
      ? record.version > versionHint
      : record.version > firstSeen ||
        (record.committedAt > now - view.reuseWindowMs && !expiresSoon);
  if (movedOn) return { kind: 'return_stored', record };

  const leaseHeld = record.leaseUntil !== undefined && record.leaseUntil > now - LEASE_SKEW_MS;
  const retryAfterSeconds = leaseRetryAfter(record, now, leaseHeld);
  if (record.lastFailureAt !== undefined && record.lastFailureAt >= view.startedAt) {
    // The holder we waited for gave up: share its outcome instead of calling again.
    return { kind: 'share_failure', failure: record.lastFailureKind, retryAfterSeconds };
  }
  if (
    leaseHeld &&
    record.lastFailureOwner !== undefined &&
    record.lastFailureOwner === record.leaseOwner
  ) {
    // The holder failed but keeps its lease as a fence (its request may still be running
    // at Salesforce): waiting would only end in the same failure.
    return { kind: 'share_failure', failure: record.lastFailureKind, retryAfterSeconds };
  }
  if (!leaseHeld && now < view.waitDeadline && view.canHold) return { kind: 'acquire' };
  if (now >= view.waitDeadline) return { kind: 'give_up', retryAfterSeconds };
  // Never sleep past the lease end (and its skew margin), nor past the waiting budget.
  const untilLeaseEnds = leaseHeld
    ? (record.leaseUntil ?? now) + LEASE_SKEW_MS - now + 5
    : Number.POSITIVE_INFINITY;
  return { kind: 'wait', maxSleepMs: Math.min(view.waitDeadline - now, untilLeaseEnds) };
}

/** Seconds until a held lease (and its skew margin) ends, at least 1. */
function leaseRetryAfter(record: SessionRecord, now: number, leaseHeld: boolean): number {
  if (!leaseHeld || record.leaseUntil === undefined) return 1;
  return Math.max(1, Math.ceil((record.leaseUntil + LEASE_SKEW_MS - now) / 1000));
}
