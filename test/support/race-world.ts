import type { Scheduler } from 'fast-check';
import { TokenVault } from '../../functions/broker/envelope.ts';
import type {
  AcquireLeaseInput,
  CommitInput,
  ReleaseLeaseInput,
  SealedTokenSet,
  SessionRecord,
  SessionStore,
  TokenSet,
} from '../../functions/broker/ports.ts';
import {
  type RefreshDependencies,
  type RefreshGrantClient,
  refreshSession,
} from '../../functions/broker/refresh.ts';
import { newSessionHandle, sessionKeyOf } from '../../functions/broker/session-handle.ts';
import type { TokenResponse } from '../../functions/broker/upstream.ts';
import {
  InvalidGrantError,
  SalesforceUnavailableError,
  TokenRequestInProgressError,
} from '../../functions/salesforce/errors.ts';
import { CaptureLog } from './capture-log.ts';
import { DAY } from './fixtures.ts';
import { MemoryDataKeys } from './memory-data-keys.ts';
import { MemorySessionStore } from './memory-session-store.ts';

/**
 * A world for exploring interleavings of the single-flight refresh with fast-check's
 * scheduler: an in-memory store whose every operation is applied, and answered, when the
 * scheduler says so; a manual clock that moves when a sleep ends or a tick is released;
 * and a model of Salesforce's token endpoint with rotation, reuse detection and a
 * timeout rule (a request released after its caller's deadline was aborted and is never
 * processed, like the fake's `delay` fault).
 */

export const CONFIG = {
  reuseWindowMs: 5000,
  leaseMs: 12_000,
  waitBudgetMs: 10_000,
  sessionIdleTtlMs: 7 * 86_400_000,
} as const;

const IDENTITY = 'https://login.salesforce.com/id/00Dxx0000001gPLEAY/005xx000001Sv6AAAS';

/** What the model of Salesforce does with the next upstream request. */
export type UpstreamScript = 'ok' | 'unavailable' | 'concurrency' | 'invalid_grant' | 'drop';

export interface UpstreamRequest {
  caller: number;
  refreshToken: string;
  sentAt: number;
  deadline: number;
  outcome?: 'processed' | 'aborted' | 'failed' | 'reuse' | 'revoked' | 'dropped';
}

/** Salesforce's token endpoint, reduced to what single flight is about. */
export class SalesforceModel {
  readonly status = new Map<string, 'current' | 'rotated' | 'revoked'>();
  /** refresh token -> what its (single) successful refresh issued. */
  readonly successor = new Map<string, { refreshToken: string; accessToken: string }>();
  readonly requests: UpstreamRequest[] = [];
  reuseDetections = 0;
  /** Requests sent while another live (not yet timed-out) request used the same token. */
  overlaps = 0;
  drops = 0;
  #counter = 0;

  constructor(readonly initialRefreshToken: string) {
    this.status.set(initialRefreshToken, 'current');
  }

  /** RFC 7009 as the fake does it: revoking a rotated-out token is a no-op. */
  revoke(refreshToken: string): void {
    if (this.status.get(refreshToken) === 'current') this.revokeFamily();
  }

  revokeFamily(): void {
    for (const [token, state] of this.status)
      if (state === 'current') this.status.set(token, 'revoked');
  }

  familyAlive(): boolean {
    return [...this.status.values()].includes('current');
  }

  next(): { refreshToken: string; accessToken: string } {
    this.#counter++;
    return { refreshToken: `refresh-${this.#counter}`, accessToken: `access-${this.#counter}` };
  }
}

export interface CallerRecord {
  caller: number;
  hint: number | undefined;
  startedAt: number;
  /** The stored version when the call started (undefined: no session). */
  versionAtStart: number | undefined;
  startedAfterLogout: boolean;
  sleeps: number[];
  result?: { accessToken: string; version: number; outcome: string };
  error?: unknown;
  settled: boolean;
}

export interface AppliedCommit {
  owner: string;
  fromVersion: number;
  previous: SealedTokenSet;
  next: SealedTokenSet;
  /** Clock when it was applied, and the committing holder's lease end. */
  at: number;
  leaseUntil: number;
  /** The owner of the latest successful acquire when this commit was applied. */
  latestAcquirer: string | undefined;
}

/** A commit that was fenced, with when and how late it was. */
export interface FencedCommit {
  owner: string;
  at: number;
  leaseUntil: number;
}

export interface WorldPlan {
  callers: Array<number | undefined>;
  upstream: UpstreamScript[];
  /** A lease left by a crashed invocation, ending this long after the start. */
  crashedLeaseMs: number | undefined;
  ticks: number[];
  logout: boolean;
  committedAgoMs: number;
  random: number;
}

export class RaceWorld {
  readonly clock = { t: 1_800_000_000_000, now: () => this.clock.t };
  readonly inner = new MemorySessionStore();
  readonly dataKeys = new MemoryDataKeys();
  readonly vault = new TokenVault(this.dataKeys);
  readonly log = new CaptureLog();
  readonly handle = newSessionHandle();
  readonly sessionKey = sessionKeyOf(this.handle);
  readonly salesforce = new SalesforceModel('refresh-0');
  readonly callers: CallerRecord[] = [];
  readonly commits: AppliedCommit[] = [];
  readonly fenced: FencedCommit[] = [];
  /** Lease end of every successful acquire, by owner. */
  readonly leases = new Map<string, number>();
  latestAcquirer: string | undefined;
  /** Set when the logout's delete was applied. */
  deletedAt: number | undefined;
  resurrections = 0;
  #owners = 0;
  #opsAtThisTime = 0;
  #lastOpAt = Number.NaN;
  #script: UpstreamScript[] = [];
  #random = 0.5;

  constructor(readonly s: Scheduler) {}

  async seed(plan: WorldPlan): Promise<void> {
    this.#script = [...plan.upstream];
    this.#random = plan.random;
    const tokens: TokenSet = {
      accessToken: 'access-0',
      refreshToken: 'refresh-0',
      instanceUrl: 'https://acme.my.salesforce.com',
      issuedAt: '1800000000000',
      scope: 'api refresh_token',
      identityUrl: IDENTITY,
    };
    const now = this.clock.t;
    const dataKey = await this.vault.generateDataKey(this.sessionKey);
    const record: SessionRecord = {
      sessionKey: this.sessionKey,
      version: 1,
      sealed: this.vault.seal(dataKey, this.sessionKey, 1, tokens),
      committedAt: now - plan.committedAgoMs,
      createdAt: now - 60_000,
      absoluteExpiresAt: now + 30 * DAY,
      idleExpiresAt: now + 7 * DAY,
      orgId: '00Dxx0000001gPLEAY',
      userId: '005xx000001Sv6AAAS',
      ...(plan.crashedLeaseMs === undefined
        ? {}
        : { leaseOwner: 'crashed-invocation', leaseUntil: now + plan.crashedLeaseMs }),
    };
    await this.inner.create(record);
  }

  /** The store the broker sees: each operation applied, then answered, by the scheduler. */
  readonly store: SessionStore = {
    get: (key) => this.#op('get', () => this.inner.get(key)),
    create: (record) => this.#op('create', () => this.inner.create(record)),
    findConnection: (id) => this.#op('get', () => this.inner.findConnection(id)),
    listConnections: (input) => this.inner.listConnections(input),
    findEnded: (key) => this.#op('get', () => this.inner.findEnded(key)),
    noteAccessTokenExpiry: (input) => this.inner.noteAccessTokenExpiry(input),
    findEndedConnection: (id) => this.inner.findEndedConnection(id),
    tryAcquireLease: (input: AcquireLeaseInput) =>
      this.#op('acquire', async () => {
        const result = await this.inner.tryAcquireLease(input);
        if (result.acquired) {
          this.leases.set(input.owner, input.leaseUntil);
          this.latestAcquirer = input.owner;
        }
        return result;
      }),
    commit: (input: CommitInput) =>
      this.#op('commit', async () => {
        const previous = this.inner.items.get(input.sessionKey)?.sealed;
        const latestAcquirer = this.latestAcquirer;
        const result = await this.inner.commit(input);
        const leaseUntil = this.leases.get(input.owner) ?? Number.NEGATIVE_INFINITY;
        if (result === 'committed' && previous) {
          this.commits.push({
            owner: input.owner,
            fromVersion: input.version,
            previous,
            next: input.sealed,
            at: this.clock.t,
            leaseUntil,
            latestAcquirer,
          });
        } else {
          this.fenced.push({ owner: input.owner, at: this.clock.t, leaseUntil });
        }
        return result;
      }),
    releaseLease: (input: ReleaseLeaseInput) =>
      this.#op('release', () => this.inner.releaseLease(input)),
    deleteAsLeaseHolder: (key, owner, ended) =>
      this.#op('deleteAsHolder', () => this.inner.deleteAsLeaseHolder(key, owner, ended)),
    deleteVersion: (key, version, options, ended) =>
      this.#op('delete', async () => {
        const outcome = await this.inner.deleteVersion(key, version, options, ended);
        if (outcome === 'deleted') this.deletedAt ??= this.clock.t;
        return outcome;
      }),
  };

  async #op<T>(label: string, apply: () => Promise<T>): Promise<T> {
    // A call that keeps hitting the store while no time passes is spinning: fail it
    // instead of hanging the run (fast-check's scheduler runs on microtasks only).
    this.#opsAtThisTime = this.clock.t === this.#lastOpAt ? this.#opsAtThisTime + 1 : 0;
    this.#lastOpAt = this.clock.t;
    if (this.#opsAtThisTime > 500) throw new Error(`livelock: 500 store calls at one instant`);
    await this.s.schedule(Promise.resolve(), `${label}: apply`);
    const result = await apply();
    if (this.deletedAt !== undefined && this.inner.items.has(this.sessionKey)) this.resurrections++;
    await this.s.schedule(Promise.resolve(), `${label}: answer`);
    return result;
  }

  /** A scheduled tick that moves the clock forward (lease expiry, slow networks). */
  tick(ms: number): Promise<void> {
    return this.s.schedule(Promise.resolve(), `tick ${ms} ms`).then(() => {
      this.clock.t += ms;
    });
  }

  /** Logout as `/logout` does it: read, delete that version, then revoke what it held. */
  logout(): Promise<void> {
    return this.s.schedule(Promise.resolve(), 'logout').then(async () => {
      for (;;) {
        const current = await this.store.get(this.sessionKey);
        if (!current) return;
        if ((await this.store.deleteVersion(this.sessionKey, current.version)) !== 'deleted') {
          continue;
        }
        const tokens = await this.vault.open(current.sealed, current.sessionKey, current.version);
        this.salesforce.revoke(tokens.refreshToken);
        return;
      }
    });
  }

  /** One `/refresh` invocation, started when the scheduler says so. */
  call(hint: number | undefined): Promise<void> {
    const record: CallerRecord = {
      caller: this.callers.length,
      hint,
      startedAt: 0,
      versionAtStart: undefined,
      startedAfterLogout: false,
      sleeps: [],
      settled: false,
    };
    this.callers.push(record);
    return this.s.schedule(Promise.resolve(), `start caller ${record.caller}`).then(async () => {
      record.startedAt = this.clock.t;
      record.versionAtStart = this.inner.items.get(this.sessionKey)?.version;
      record.startedAfterLogout = this.deletedAt !== undefined;
      try {
        record.result = await this.#refresh(record);
      } catch (error) {
        record.error = error;
      } finally {
        record.settled = true;
      }
    });
  }

  async #refresh(record: CallerRecord) {
    const deps: RefreshDependencies = {
      store: this.store,
      vault: this.vault,
      clock: this.clock,
      log: this.log,
      metrics: { count: () => {}, timing: () => {} },
      credentials: {
        get: async () => ({ clientId: 'id', clientSecret: 'secret' }),
        reload: async () => ({ clientId: 'id', clientSecret: 'secret' }),
      },
      salesforce: this.#upstreamFor(record),
      config: CONFIG,
      sleep: async (ms) => {
        const wakeAt = this.clock.t + ms;
        record.sleeps.push(wakeAt);
        await this.s.schedule(Promise.resolve(), `sleep caller ${record.caller}`);
        this.clock.t = Math.max(this.clock.t, wakeAt);
      },
      random: () => this.#random,
      newLeaseOwner: () => `caller-${record.caller}-lease-${++this.#owners}`,
    };
    return refreshSession(deps, this.handle, record.hint);
  }

  #upstreamFor(record: CallerRecord): RefreshGrantClient {
    const model = this.salesforce;
    return {
      refreshTokenGrant: async (_credentials, refreshToken, options) => {
        const sentAt = this.clock.t;
        const request: UpstreamRequest = {
          caller: record.caller,
          refreshToken,
          sentAt,
          deadline: sentAt + (options?.timeoutMs ?? Number.POSITIVE_INFINITY),
        };
        const live = model.requests.some(
          (other) =>
            other.outcome === undefined &&
            other.refreshToken === refreshToken &&
            other.deadline > sentAt,
        );
        if (live) model.overlaps++;
        model.requests.push(request);
        const script = this.#script.shift() ?? 'ok';
        await this.s.schedule(Promise.resolve(), `upstream caller ${record.caller} (${script})`);
        if (this.clock.t > request.deadline) {
          request.outcome = 'aborted';
          throw new SalesforceUnavailableError('Salesforce did not answer in time');
        }
        if (script === 'unavailable' || script === 'concurrency') {
          request.outcome = 'failed';
          if (script === 'unavailable') throw new SalesforceUnavailableError('HTTP 503');
          throw new TokenRequestInProgressError('busy', {
            error: 'invalid_grant',
            description: 'token request is already being processed',
          });
        }
        if (script === 'invalid_grant') {
          request.outcome = 'revoked';
          model.revokeFamily();
          throw new InvalidGrantError('rejected', { error: 'invalid_grant' });
        }
        const state = model.status.get(refreshToken);
        if (state === 'rotated') {
          request.outcome = 'reuse';
          model.reuseDetections++;
          model.revokeFamily();
          throw new InvalidGrantError('reuse', { error: 'invalid_grant' });
        }
        if (state !== 'current') {
          request.outcome = 'revoked';
          throw new InvalidGrantError('revoked', { error: 'invalid_grant' });
        }
        const issued = model.next();
        model.status.set(refreshToken, 'rotated');
        model.status.set(issued.refreshToken, 'current');
        model.successor.set(refreshToken, issued);
        if (script === 'drop') {
          request.outcome = 'dropped';
          model.drops++;
          throw new SalesforceUnavailableError('Salesforce is unreachable');
        }
        request.outcome = 'processed';
        return tokenResponse(issued);
      },
    };
  }
}

function tokenResponse(issued: { refreshToken: string; accessToken: string }): TokenResponse {
  return {
    accessToken: issued.accessToken,
    refreshToken: issued.refreshToken,
    instanceUrl: 'https://acme.my.salesforce.com',
    id: IDENTITY,
    orgId: '00Dxx0000001gPLEAY',
    userId: '005xx000001Sv6AAAS',
    issuedAt: '1800000000001',
    scope: 'api refresh_token',
    tokenType: 'Bearer',
  };
}
