import { describeError } from '../shared/describe-error.ts';
import { TemporarilyUnavailableError } from './errors.ts';
import type {
  Clock,
  CommittedFields,
  EndedMark,
  Log,
  RefreshFailureKind,
  SessionRecord,
  SessionStore,
} from './ports.ts';

/**
 * Time kept back from the lease after the last commit attempt: a consistent read that
 * tells whether an attempt whose answer was lost landed, and the answer to the client.
 */
export const READ_BACK_RESERVE_MS = 300;
/** The least a commit attempt needs (one DynamoDB round trip with headroom). */
export const MIN_COMMIT_MS = 250;

/** How the fenced commit ended. `latest` is the read-back, `'unknown'` when it failed. */
export type CommitResult =
  | { outcome: 'committed' }
  | { outcome: 'fenced'; latest: SessionRecord | undefined | 'unknown' }
  | { outcome: 'failed'; error: Error; latest: SessionRecord | undefined | 'unknown' };

export interface LeaseHoldDependencies {
  store: SessionStore;
  clock: Clock;
  log: Log;
  sleep: (milliseconds: number) => Promise<void>;
  /**
   * After this long of transient failures (`failingAfterSeconds`), a release marks the
   * run reported, once (`Connection Refresh Failing`). Absent: the default, 900 s.
   */
  failingAfterMs?: number | undefined;
}

/** `failingAfterSeconds`' default (functions/shared/settings-table.ts), in ms. */
export const DEFAULT_FAILING_AFTER_MS = 900_000;

/**
 * The lease one caller holds on one session, and the writes only its holder may make: the
 * fenced commit (retried until shortly before the lease ends, then read back), the fenced
 * delete, and the release that records a failure for the waiters.
 *
 *   acquire                                             leaseUntil
 *   |------ holder's work ------|--commit attempts--|-read-|
 *                               commitDeadline -----^
 */
export class LeaseHold {
  readonly record: SessionRecord;
  readonly owner: string;
  /** The earlier of the lease end and the holder's invocation end. */
  readonly leaseUntil: number;
  readonly #deps: LeaseHoldDependencies;
  readonly #session: string;

  constructor(
    deps: LeaseHoldDependencies,
    lease: { record: SessionRecord; owner: string; leaseUntil: number; session: string },
  ) {
    this.#deps = deps;
    this.record = lease.record;
    this.owner = lease.owner;
    this.leaseUntil = lease.leaseUntil;
    this.#session = lease.session;
  }

  get sessionKey(): string {
    return this.record.sessionKey;
  }

  /** Past this, no commit attempt starts: the rest of the lease is for the read-back. */
  get commitDeadline(): number {
    return this.leaseUntil - READ_BACK_RESERVE_MS;
  }

  /** Milliseconds left before `commitDeadline`, less one commit attempt. */
  timeBeforeCommit(): number {
    return this.commitDeadline - MIN_COMMIT_MS - this.#deps.clock.now();
  }

  /**
   * Gives the lease up recording why, or (`keepLease`) records why and keeps it as a fence
   * until it runs out. Best effort: a failed release ends by itself with the lease.
   */
  async release(failureKind: RefreshFailureKind, keepLease = false): Promise<void> {
    const { store, clock, log } = this.#deps;
    const failedAt = clock.now();
    await store
      .releaseLease({
        sessionKey: this.sessionKey,
        owner: this.owner,
        failedAt,
        failureKind,
        keepLease,
        ...(failureKind === 'unavailable' && this.#failingLongEnough(failedAt)
          ? { reportFailing: true }
          : {}),
      })
      .catch((error: unknown) =>
        log.warn('lease release failed; it ends by itself', {
          session: this.#session,
          error: describeError(error),
        }),
      );
  }

  /**
   * Whether this failure is past `failingAfterMs` of an unreported run of transient
   * failures, as the record acquired under this lease shows it (the holder is the only
   * writer meanwhile): no extra read, and the mark goes into the release's own write.
   */
  #failingLongEnough(failedAt: number): boolean {
    const { failingSince, failingReportedAt } = this.record;
    if (failingSince === undefined || failingReportedAt !== undefined) return false;
    return failedAt - failingSince >= (this.#deps.failingAfterMs ?? DEFAULT_FAILING_AFTER_MS);
  }

  /**
   * Deletes the session only while this lease is held (a lapsed holder deletes nothing),
   * keeping a tombstone when `ended` says why.
   */
  deleteSession(ended?: EndedMark): Promise<boolean> {
    return this.#deps.store.deleteAsLeaseHolder(this.sessionKey, this.owner, ended);
  }

  /**
   * Stores `version + 1`, fenced on this lease and the version it was acquired on. Store
   * failures are retried until `commitDeadline`, each attempt aborted at it. When no
   * attempt answered `committed`, a consistent read tells whether one landed with its
   * answer lost: our own ciphertext (random IV) at our version means the write is stored.
   */
  async commit(next: CommittedFields): Promise<CommitResult> {
    const version = this.record.version + 1;
    const attempt = await this.#commitWithRetry(next);
    if (attempt === 'committed') return { outcome: 'committed' };
    const latest = await this.#readBack();
    if (
      latest !== 'unknown' &&
      latest?.version === version &&
      Buffer.from(latest.sealed.ciphertext).equals(Buffer.from(next.sealed.ciphertext))
    ) {
      this.#deps.log.info('the commit landed but its answer was lost', {
        event: 'commit_answer_lost',
        session: this.#session,
        version,
      });
      return { outcome: 'committed' };
    }
    return attempt === 'fenced'
      ? { outcome: 'fenced', latest }
      : { outcome: 'failed', error: attempt, latest };
  }

  async #commitWithRetry(next: CommittedFields): Promise<'committed' | 'fenced' | Error> {
    const { store, clock, log, sleep } = this.#deps;
    const deadline = this.commitDeadline;
    const input = {
      sessionKey: this.sessionKey,
      owner: this.owner,
      version: this.record.version,
      ...next,
    };
    let delay = 50;
    let lastError: Error = new TemporarilyUnavailableError('No time left to commit.', 1);
    while (deadline - clock.now() >= MIN_COMMIT_MS) {
      try {
        return await store.commit(input, { timeoutMs: deadline - clock.now() });
      } catch (error) {
        if (!(error instanceof TemporarilyUnavailableError)) {
          return error instanceof Error ? error : new Error(String(error));
        }
        lastError = error;
        if (clock.now() + delay + MIN_COMMIT_MS > deadline) break;
        log.warn('commit failed; retrying within the lease', { detail: error.message });
        await sleep(delay);
        delay *= 2;
      }
    }
    return lastError;
  }

  /** A consistent read within what is left of the lease; `'unknown'` when it fails. */
  async #readBack(): Promise<SessionRecord | undefined | 'unknown'> {
    try {
      return await this.#deps.store.get(this.sessionKey, {
        timeoutMs: Math.max(this.leaseUntil - this.#deps.clock.now(), MIN_COMMIT_MS),
      });
    } catch {
      return 'unknown';
    }
  }
}
