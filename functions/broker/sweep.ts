import { describeError } from '../shared/describe-error.ts';
import type { BrokerConfig } from './config.ts';
import { endedMark, isLiveSession } from './connection.ts';
import { InvalidSessionError, ReauthenticationRequiredError } from './errors.ts';
import { endSession, type RevocationClient } from './logout.ts';
import type { DueSession, SweepIndex } from './ports.ts';
import {
  type RefreshDependencies,
  type RefreshGrantClient,
  refreshStoredSession,
} from './refresh.ts';
import { logSafeId } from './session-handle.ts';

/**
 * The scheduled sweep (README "Keep-alive and expiry"): one pass over the sessions its index
 * says are due, oldest first, shard by shard, doing for each the one job it is due for:
 *
 * - keep-alive: a live session whose last commit is `keepAliveAfterMs` old is refreshed
 *   through the same lease and the same code as `/refresh` (`refreshStoredSession` with the
 *   version the index named as the hint: if an app's refresh holds the lease or has
 *   committed since, the sweep gets that result and makes no upstream call). The commit
 *   keeps `idleExpiresAt`: keep-alive is not use.
 * - expiry: a session past its idle or absolute expiry is deleted with an `expired`
 *   tombstone and its refresh token revoked at Salesforce, by the logout's `endSession`,
 *   fenced: each version read is judged again, and one a refresh made live is kept.
 *
 * Salesforce calls start at most `keepAliveRatePerSecond` per second (a few in flight at
 * once). The pass stops starting work at `stopAt` (the entry sets it a lease before the
 * function timeout); what it did not reach is still due in the index, so the next run
 * takes it up first: the index is the cursor, and nothing is lost or done twice.
 */
export interface SweepDependencies extends RefreshDependencies {
  index: SweepIndex;
  salesforce: RefreshGrantClient & RevocationClient;
  config: RefreshDependencies['config'] &
    Pick<
      BrokerConfig,
      'keepAliveAfterMs' | 'keepAliveRatePerSecond' | 'endedConnectionRetentionMs'
    >;
  sleep?: (milliseconds: number) => Promise<void>;
}

export interface SweepRun {
  /** Epoch ms past which no new work starts. */
  stopAt: number;
  /** Index entries per query (default 100). */
  pageSize?: number;
  /** Salesforce calls in flight at once (default 8). */
  maxInFlight?: number;
}

/** What one pass did. */
export interface SweepReport {
  /** Index entries read. */
  seen: number;
  /** Refreshed by the sweep (`KeptAlive`). */
  keptAlive: number;
  /** Refreshed meanwhile by someone else (an app, a job): no upstream call of ours. */
  alreadyFresh: number;
  /** Keep-alive failed (Salesforce or the store unavailable): still due, tried next run. */
  keepAliveFailed: number;
  /** Salesforce answered `invalid_grant` to the keep-alive: ended, tombstoned as such. */
  grantEnded: number;
  /** Expired, deleted and revoked at Salesforce (`ExpiredRevoked`). */
  expiredRevoked: number;
  /** Expired and deleted, but the revocation failed (`RevokeFailed`). */
  expiredRevokeFailed: number;
  /** Expiry found the session live again (refreshed meanwhile): kept. */
  kept: number;
  /** Entries not due after all (index lag) or already gone. */
  skipped: number;
  /** The pass stopped at `stopAt` with entries left: the next run continues. */
  cutOff: boolean;
}

const DEFAULT_PAGE_SIZE = 100;
const DEFAULT_MAX_IN_FLIGHT = 8;
/** What an expiry's store calls and revocation may take. */
const EXPIRY_BUDGET_MS = 10_000;

/**
 * One pass (see {@link SweepDependencies}). One function on purpose: the page loop, the
 * in-flight limit, the pace and the two cut-off checks (before a query, after a slot) are
 * one control flow, and each job is its own small function below.
 */
export async function runSweep(deps: SweepDependencies, run: SweepRun): Promise<SweepReport> {
  const report: SweepReport = {
    seen: 0,
    keptAlive: 0,
    alreadyFresh: 0,
    keepAliveFailed: 0,
    grantEnded: 0,
    expiredRevoked: 0,
    expiredRevokeFailed: 0,
    kept: 0,
    skipped: 0,
    cutOff: false,
  };
  const { clock } = deps;
  const sleep = deps.sleep ?? defaultSleep;
  const pacer = new Pacer(clock, sleep, 1000 / deps.config.keepAliveRatePerSecond);
  const maxInFlight = run.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT;
  const inFlight = new Set<Promise<void>>();
  const dueBy = clock.now();

  sweep: for (let shard = 0; shard < deps.index.shards; shard++) {
    let cursor: string | undefined;
    do {
      if (clock.now() >= run.stopAt) {
        report.cutOff = true;
        break sweep;
      }
      const page = await deps.index.dueSessions({
        shard,
        dueBy,
        limit: run.pageSize ?? DEFAULT_PAGE_SIZE,
        cursor,
      });
      for (const due of page.sessions) {
        report.seen++;
        const job = jobFor(deps, due, clock.now());
        if (job === 'none') {
          report.skipped++;
          continue;
        }
        // Room first, then the slot: a call starts at its slot, not one slot later.
        while (inFlight.size >= maxInFlight) await Promise.race(inFlight);
        await pacer.slot();
        if (clock.now() >= run.stopAt) {
          report.cutOff = true;
          break sweep;
        }
        const task = (job === 'expire' ? expire(deps, due, report) : keepAlive(deps, due, report))
          .catch((error: unknown) => {
            deps.log.error('sweep task failed', { error: describeError(error) });
          })
          .finally(() => inFlight.delete(task));
        inFlight.add(task);
      }
      cursor = page.cursor;
    } while (cursor !== undefined);
  }
  await Promise.all(inFlight);

  // Totals once per run (zeros included), so the alarm's ratio has data for every run.
  deps.metrics.count('KeptAlive', report.keptAlive);
  deps.metrics.count('KeepAliveFailed', report.keepAliveFailed);
  deps.metrics.count('ExpiredRevoked', report.expiredRevoked);
  deps.log.info('sweep finished', { event: 'sweep_finished', ...report });
  return report;
}

/** What an index entry is due for, judged on the entry (the item decides in the end). */
export function jobFor(
  deps: Pick<SweepDependencies, 'config'>,
  due: DueSession,
  now: number,
): 'expire' | 'keep_alive' | 'none' {
  if (!isLiveSession(due, now)) return 'expire';
  if (due.committedAt + deps.config.keepAliveAfterMs <= now) return 'keep_alive';
  return 'none';
}

async function keepAlive(
  deps: SweepDependencies,
  due: DueSession,
  report: SweepReport,
): Promise<void> {
  const session = logSafeId(due.sessionKey);
  try {
    const result = await refreshStoredSession(deps, due.sessionKey, due.version, {
      keepAlive: true,
    });
    if (result.outcome === 'refreshed') {
      report.keptAlive++;
      deps.log.info('connection kept alive', { event: 'kept_alive', session });
    } else {
      report.alreadyFresh++;
    }
  } catch (error) {
    if (error instanceof ReauthenticationRequiredError) {
      // The refresh path tombstoned it (`reauthentication_required`): the grant was dead.
      report.grantEnded++;
    } else if (error instanceof InvalidSessionError) {
      report.skipped++;
    } else {
      report.keepAliveFailed++;
      deps.log.warn('keep-alive failed; the connection stays due', {
        event: 'keep_alive_failed',
        session,
        error: describeError(error),
      });
    }
  }
}

async function expire(deps: SweepDependencies, due: DueSession, report: SweepReport) {
  const { clock } = deps;
  const now = clock.now();
  const outcome = await endSession(
    deps,
    due.sessionKey,
    'expired',
    { at: now + EXPIRY_BUDGET_MS, now: () => clock.now() },
    endedMark(deps.config, 'expired', now),
    (record) => isLiveSession(record, clock.now()),
  );
  switch (outcome) {
    case 'revoked':
      report.expiredRevoked++;
      break;
    case 'revoke_failed':
      report.expiredRevokeFailed++;
      break;
    case 'kept':
      report.kept++;
      break;
    case 'absent':
      report.skipped++;
  }
}

/**
 * Spaces the starts of Salesforce calls `intervalMs` apart: each slot is the later of now
 * and the previous slot plus the interval. Time comes from the injected clock and sleeper,
 * so a test checks the pacing without waiting for it.
 */
export class Pacer {
  readonly #clock: { now(): number };
  readonly #sleep: (milliseconds: number) => Promise<void>;
  readonly #intervalMs: number;
  #next = Number.NEGATIVE_INFINITY;

  constructor(
    clock: { now(): number },
    sleep: (milliseconds: number) => Promise<void>,
    intervalMs: number,
  ) {
    this.#clock = clock;
    this.#sleep = sleep;
    this.#intervalMs = intervalMs;
  }

  async slot(): Promise<void> {
    const now = this.#clock.now();
    const at = Math.max(now, this.#next);
    this.#next = at + this.#intervalMs;
    if (at > now) await this.#sleep(at - now);
  }
}

function defaultSleep(milliseconds: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, milliseconds));
}
