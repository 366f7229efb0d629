/**
 * Soak run (`node --import tsx bench/soak.ts`): for SOAK_SECONDS (default 60) hundreds of
 * sessions refresh (alone and in parallel bursts), call the fake org's REST API with
 * their access tokens, log out, and send malformed requests, while the scheduled sweep
 * runs every second (keep-alive after SOAK_KEEP_ALIVE_SECONDS, default 3, so it races
 * the apps' refreshes; some sessions are set to pass their idle expiry during the run,
 * some are never used by an app at all), against the local stack
 * (dynalite behind the DynamoDB fault proxy, the KMS and Secrets Manager emulators, the
 * fake Salesforce with rotation and reuse detection), while faults are injected at
 * random everywhere. Then it fuzzes every entry point (SOAK_FUZZ_RUNS generated events
 * each, default 10,000), checks the invariants, prints the figures and exits non-zero
 * when an invariant breaks. Every request goes to 127.0.0.1.
 *
 * Settings: SOAK_SECONDS, SOAK_SESSIONS (300), SOAK_WORKERS (48), SOAK_FUZZ_RUNS,
 * SOAK_SEED (fault and action choices).
 */
import { performance } from 'node:perf_hooks';
import fc from 'fast-check';
import { sweepShardOf } from '../functions/aws/dynamodb-session-store.ts';
import type { Log, MetricSink, SessionStore } from '../functions/broker/ports.ts';
import { logSafeId, sessionKeyOf } from '../functions/broker/session-handle.ts';
import { runSweep, type SweepDependencies } from '../functions/broker/sweep.ts';
import { createLogoutHandler } from '../functions/routes/logout.ts';
import { createRefreshHandler } from '../functions/routes/refresh.ts';
import { SalesforceOAuthClient, verifySignature } from '../functions/salesforce/oauth-client.ts';
import { SWEEP_INDEX } from '../functions/shared/constants.ts';
import type { DynamoDbFault } from '../local/dynamodb-fault-proxy.ts';
import type { FakeFault } from '../local/fake-salesforce.ts';
import { startLocalServer } from '../local/lambda-http.ts';
import { type BrokerHarness, startBrokerHarness } from '../test/support/broker-harness.ts';
import { ENTRY_POINTS, type FuzzStats, fuzzProperty } from '../test/support/fuzz-http.ts';

const SECONDS = Number(process.env.SOAK_SECONDS ?? 60);
const SESSIONS = Number(process.env.SOAK_SESSIONS ?? 300);
const WORKERS = Number(process.env.SOAK_WORKERS ?? 48);
const FUZZ_RUNS = Number(process.env.SOAK_FUZZ_RUNS ?? process.env.FUZZ_RUNS ?? 10_000);
const KEEP_ALIVE_SECONDS = Number(process.env.SOAK_KEEP_ALIVE_SECONDS ?? 3);
/** Sessions no app uses: only the sweep keeps them alive, and ends some of them. */
const DORMANT = 40;
/** Of the app-used pool, the share set to pass their idle expiry during the run. */
const EXPIRING_SHARE = 0.1;
const CLIENT_SECRET = 'soak-client-secret';

// ---------------------------------------------------------------------------------------
// A seeded random source, so a run's choices can be replayed with SOAK_SEED.

let seed = Number(process.env.SOAK_SEED ?? Date.now() % 2 ** 31);
const initialSeed = seed;
function random(): number {
  seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
  return seed / 2 ** 31;
}
const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;
const between = (min: number, max: number) => min + Math.floor(random() * (max - min + 1));
function weighted<T>(choices: ReadonlyArray<readonly [number, T]>): T {
  const total = choices.reduce((sum, [weight]) => sum + weight, 0);
  let roll = random() * total;
  for (const [weight, value] of choices) {
    roll -= weight;
    if (roll < 0) return value;
  }
  return choices[choices.length - 1]?.[1] as T;
}
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------------------
// Counting log and metrics (keeping every entry would distort the memory figures).

class SoakLog implements Log {
  readonly messages = new Map<string, number>();
  readonly events = new Map<string, number>();
  /** Log-safe session ids per event that matters for the accounting. */
  readonly sessionsByEvent = new Map<string, string[]>();
  leaks = 0;
  entries = 0;
  constructor(private readonly forbidden: RegExp) {}
  #write(message: string, attributes: Record<string, unknown> = {}): void {
    this.entries++;
    this.messages.set(message, (this.messages.get(message) ?? 0) + 1);
    const event = typeof attributes.event === 'string' ? attributes.event : undefined;
    if (event) this.events.set(event, (this.events.get(event) ?? 0) + 1);
    const key = event ?? message;
    if (typeof attributes.session === 'string') {
      const list = this.sessionsByEvent.get(key) ?? [];
      list.push(attributes.session);
      this.sessionsByEvent.set(key, list);
    }
    const line = JSON.stringify({ message, ...attributes });
    if (this.forbidden.test(line) || /[\r\n]/.test(line)) this.leaks++;
  }
  debug = (message: string, attributes?: Record<string, unknown>) =>
    this.#write(message, attributes);
  info = (message: string, attributes?: Record<string, unknown>) =>
    this.#write(message, attributes);
  warn = (message: string, attributes?: Record<string, unknown>) =>
    this.#write(message, attributes);
  error = (message: string, attributes?: Record<string, unknown>) =>
    this.#write(message, attributes);
  count(name: string): number {
    return this.events.get(name) ?? this.messages.get(name) ?? 0;
  }
}

class SoakMetrics implements MetricSink {
  readonly counts = new Map<string, number>();
  count(name: string, value = 1, dimensions?: Record<string, string>): void {
    const key = dimensions?.class ? `${name}:${dimensions.class}` : name;
    this.counts.set(key, (this.counts.get(key) ?? 0) + value);
  }
  timing(): void {}
  flush(): void {}
  get(name: string): number {
    return this.counts.get(name) ?? 0;
  }
  sum(prefix: string): number {
    let total = 0;
    for (const [key, value] of this.counts) if (key.startsWith(prefix)) total += value;
    return total;
  }
}

// ---------------------------------------------------------------------------------------
// Sessions as the clients see them.

interface SoakSession {
  handle: string;
  safeId: string;
  version: number;
  accessToken: string;
  ended: false | 'logout' | 'reauthentication_required' | 'invalid_session' | 'expired';
  /** Its idle expiry was moved into the run: the sweep may end it (`expired`). */
  expiring: boolean;
  /** Why the session may legitimately die: a rotation Salesforce made that was not stored. */
  hazards: string[];
  injectedRevocation: boolean;
  /** The newest refresh token Salesforce issued for it (what a logout must revoke). */
  latestRefreshToken: string;
  /** A logout answered 503: its delete may have landed (the client would retry it). */
  logoutUncertain: boolean;
}

/**
 * Moves a session's idle expiry to a random point inside the run and puts it in the
 * sweep's index at that time: unless an app refreshes it first (which moves both), the
 * sweep ends it as `expired`.
 */
async function expireDuringRun(broker: BrokerHarness, session: SoakSession, seconds: number) {
  const idleExpiresAt = Date.now() + between(2, Math.max(3, Math.floor(seconds * 0.8))) * 1000;
  session.expiring = true;
  await broker.patchItem(session.handle, { idleExpiresAt: { N: String(idleExpiresAt) } });
  await makeDue(broker, session, idleExpiresAt);
}

/** Puts a session in the sweep's index, due at `sweepAt` (seeded sessions are not in it). */
async function makeDue(broker: BrokerHarness, session: SoakSession, sweepAt: number) {
  await broker.patchItem(session.handle, {
    [SWEEP_INDEX.partitionKey]: { S: sweepShardOf(sessionKeyOf(session.handle)) },
    [SWEEP_INDEX.sortKey]: { N: String(sweepAt) },
  });
}

function percentile(samples: number[], p: number): number {
  if (samples.length === 0) return Number.NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

async function main(): Promise<number> {
  const forbidden = /5Aep861|!AQ[EIMQ]AQ|soak-client-secret/;
  const log = new SoakLog(forbidden);
  const metrics = new SoakMetrics();
  const broker = await startBrokerHarness({
    dynamodbFaultProxy: true,
    salesforce: {
      clientSecret: CLIENT_SECRET,
      rotation: true,
      reuseDetection: true,
      concurrencyBlock: true,
      tokenLatencyMs: 15,
      approvalsLimit: 5,
    },
    env: {
      // Production-like proportions, shorter: the upstream timeout leaves 4.5 s of the
      // lease for the commit, more than the SDK's three throttled attempts can take.
      LEASE_MS: '6000',
      UPSTREAM_TIMEOUT_MS: '1500',
      WAIT_BUDGET_MS: '4500',
      SECRET_CACHE_TTL_SECONDS: '1',
      // One process serves every caller and dynalite here, so under this load a DynamoDB
      // call can wait on the event loop for over a second: the deployed 1 s per-attempt
      // timeout would measure this machine, not the network. Stalls are still injected
      // well past 3 s (stalled commits of 1.5-8 s).
      AWS_SDK_REQUEST_TIMEOUT_MS: '3000',
      KEEP_ALIVE_AFTER_SECONDS: String(KEEP_ALIVE_SECONDS),
      KEEP_ALIVE_RATE_PER_SECOND: '50',
    },
    log,
    overrides: { metrics },
  });
  broker.stack.secretsManager.putSecret(
    broker.stack.secretId,
    JSON.stringify({ client_id: 'fake-client-id', client_secret: CLIENT_SECRET }),
  );
  const fake = broker.stack.salesforce;
  const dynamo = broker.stack.dynamodbFaults;
  if (!fake || !dynamo) throw new Error('soak: the harness lacks the fake or the proxy');
  const runtime = broker.runtime;

  // -- who is who: refresh token -> session, as the token endpoint's answers show it
  const sessions: SoakSession[] = [];
  const bySafeId = new Map<string, SoakSession>();
  const byRefreshToken = new Map<string, SoakSession>();
  const wire = { requests: 0, ok: 0, spoiled: 0, dropped: 0, timedOut: 0, errors: 0 };
  // A second token request with one refresh token is the broker's fault when the first is
  // still in flight, or when the broker was told of the rotation (a valid 200 reached it).
  const inFlightByToken = new Map<string, number>();
  const rotationDelivered = new Set<string>();
  const secondCalls: { session: SoakSession | undefined; why: string }[] = [];

  // The broker's Salesforce client, with a fetch that watches the token endpoint.
  runtime.salesforce = new SalesforceOAuthClient({
    loginUrl: runtime.config.salesforceLoginUrl,
    timeoutMs: runtime.config.upstreamTimeoutMs,
    fetch: async (input, init) => {
      const isToken = String(input).endsWith('/services/oauth2/token');
      const refreshToken = new URLSearchParams(String(init?.body ?? '')).get('refresh_token');
      const owner = refreshToken ? byRefreshToken.get(refreshToken) : undefined;
      if (isToken) wire.requests++;
      if (isToken && refreshToken) {
        if ((inFlightByToken.get(refreshToken) ?? 0) > 0) {
          secondCalls.push({ session: owner, why: 'while the first was in flight' });
        } else if (rotationDelivered.has(refreshToken)) {
          secondCalls.push({ session: owner, why: 'after its rotation was delivered' });
        }
        inFlightByToken.set(refreshToken, (inFlightByToken.get(refreshToken) ?? 0) + 1);
      }
      const settled = () => {
        if (isToken && refreshToken) {
          inFlightByToken.set(refreshToken, (inFlightByToken.get(refreshToken) ?? 1) - 1);
        }
      };
      let response: Response;
      try {
        response = await fetch(input, init).finally(settled);
      } catch (error) {
        if (isToken && init?.signal?.aborted) wire.timedOut++;
        else if (isToken) {
          // The fake rotated and then cut the connection (drop-after-rotate).
          wire.dropped++;
          owner?.hazards.push('answer dropped after rotation');
        }
        throw error;
      }
      if (!isToken) return response;
      const text = await response.clone().text();
      let body: Record<string, unknown> = {};
      try {
        body = JSON.parse(text) as Record<string, unknown>;
      } catch {}
      if (response.status === 200) {
        const valid =
          typeof body.access_token === 'string' &&
          typeof body.id === 'string' &&
          typeof body.issued_at === 'string' &&
          typeof body.signature === 'string' &&
          body.instance_url === fake.url &&
          verifySignature(CLIENT_SECRET, body.id, body.issued_at, body.signature);
        if (valid) {
          wire.ok++;
          if (owner && typeof body.refresh_token === 'string') {
            byRefreshToken.set(body.refresh_token, owner);
            owner.latestRefreshToken = body.refresh_token;
            if (refreshToken && body.refresh_token !== refreshToken) {
              rotationDelivered.add(refreshToken);
            }
          }
        } else {
          wire.spoiled++;
          owner?.hazards.push('spoiled 200 after rotation');
        }
      } else {
        wire.errors++;
        if (body.error === 'invalid_grant' && body.error_description === 'inactive user' && owner) {
          owner.injectedRevocation = true;
        }
      }
      return response;
    },
  });

  // Count commits per session at the store, to check versions against the store later.
  const commitsBySession = new Map<string, number>();
  const store: SessionStore = runtime.store;
  const countingStore: SessionStore = {
    get: (key) => store.get(key),
    create: (record) => store.create(record),
    findConnection: (id) => store.findConnection(id),
    listConnections: (input) => store.listConnections(input),
    tryAcquireLease: (input) => store.tryAcquireLease(input),
    commit: async (input) => {
      const outcome = await store.commit(input);
      if (outcome === 'committed') {
        commitsBySession.set(input.sessionKey, (commitsBySession.get(input.sessionKey) ?? 0) + 1);
      }
      return outcome;
    },
    releaseLease: (input) => store.releaseLease(input),
    deleteAsLeaseHolder: (key, owner, ended) => store.deleteAsLeaseHolder(key, owner, ended),
    deleteVersion: (key, version, options, ended) =>
      store.deleteVersion(key, version, options, ended),
    findEnded: (key) => store.findEnded(key),
    noteAccessTokenExpiry: (input) => store.noteAccessTokenExpiry(input),
    findEndedConnection: (id) => store.findEndedConnection(id),
  };
  const routes = {
    '/refresh': createRefreshHandler({ ...runtime, store: countingStore }),
    '/logout': createLogoutHandler({ ...runtime, store: countingStore }),
  };
  const server = await startLocalServer({ routes });
  // The sweep as deployed, through the same counting store, client, log and metrics.
  const sweepDeps: SweepDependencies = {
    ...runtime,
    store: countingStore,
    index: runtime.store as unknown as SweepDependencies['index'],
  };
  const sweepRuns = { runs: 0, failed: 0, keptAlive: 0, alreadyFresh: 0, expired: 0, kept: 0 };
  const sweepOnce = async (stopAt: number) => {
    sweepRuns.runs++;
    try {
      const report = await runSweep(sweepDeps, { stopAt });
      sweepRuns.keptAlive += report.keptAlive;
      sweepRuns.alreadyFresh += report.alreadyFresh;
      sweepRuns.expired += report.expiredRevoked + report.expiredRevokeFailed;
      sweepRuns.kept += report.kept;
    } catch {
      // A failed index query (injected faults): the next run takes up what is still due.
      sweepRuns.failed++;
    }
  };

  // -- the session pool
  const seedSession = async (): Promise<SoakSession> => {
    for (let attempt = 0; ; attempt++) {
      try {
        const seeded = await broker.seedSession();
        const session: SoakSession = {
          handle: seeded.handle,
          safeId: logSafeId(sessionKeyOf(seeded.handle)),
          version: 1,
          accessToken: seeded.accessToken,
          ended: false,
          expiring: false,
          hazards: [],
          injectedRevocation: false,
          latestRefreshToken: seeded.refreshToken,
          logoutUncertain: false,
        };
        sessions.push(session);
        bySafeId.set(session.safeId, session);
        byRefreshToken.set(seeded.refreshToken, session);
        return session;
      } catch (error) {
        if (attempt > 20) throw error;
        await sleep(50);
      }
    }
  };
  const live: SoakSession[] = [];
  for (let index = 0; index < SESSIONS; index += 25) {
    live.push(...(await Promise.all(Array.from({ length: 25 }, () => seedSession()))));
  }
  // Some of the pool pass their idle expiry during the run unless an app refreshes them
  // first; the dormant ones are never used: the sweep keeps them alive, or ends them.
  for (const session of live) {
    if (random() < EXPIRING_SHARE) await expireDuringRun(broker, session, SECONDS);
  }
  const dormant: SoakSession[] = [];
  for (let index = 0; index < DORMANT; index++) {
    const session = await seedSession();
    if (index % 2 === 0) await expireDuringRun(broker, session, SECONDS);
    else await makeDue(broker, session, Date.now());
    dormant.push(session);
  }
  fake.resetCalls();
  const tokenCallsAtStart = fake.calls.tokenRefresh;

  const figures = {
    refreshRequests: 0,
    refreshByStatus: new Map<number, number>(),
    apiCalls: 0,
    apiByStatus: new Map<number, number>(),
    apiRetried: 0,
    logouts: 0,
    logoutByStatus: new Map<number, number>(),
    badInput: 0,
    badInput5xx: 0,
    resurrections: 0,
    unexpected: [] as string[],
    faultsInjected: new Map<string, number>(),
  };
  const refreshLatency: number[] = [];
  const bump = (map: Map<number, number>, key: number) => map.set(key, (map.get(key) ?? 0) + 1);
  let peakRss = process.memoryUsage().rss;
  const rssSamples: number[] = [];
  let rssTicks = 0;
  const rssTimer = setInterval(() => {
    const rss = process.memoryUsage().rss;
    peakRss = Math.max(peakRss, rss);
    if (++rssTicks % 40 === 0) rssSamples.push(rss);
  }, 250);

  const post = async (path: string, handle: string, body?: unknown) => {
    const started = performance.now();
    const response = await fetch(`${server.url}${path}`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${handle}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await response.text();
    if (path === '/refresh') refreshLatency.push(performance.now() - started);
    let json: Record<string, unknown> = {};
    try {
      json = JSON.parse(text) as Record<string, unknown>;
    } catch {}
    return { status: response.status, json };
  };

  const refresh = async (session: SoakSession, hint: number | undefined) => {
    figures.refreshRequests++;
    // A session that answered 401, or was logged out, is gone for every later request.
    const endedBefore = session.ended !== false;
    const { status, json } = await post(
      '/refresh',
      session.handle,
      hint === undefined ? undefined : { version: hint },
    );
    bump(figures.refreshByStatus, status);
    if (status === 200) {
      if (endedBefore) figures.resurrections++;
      const version = Number(json.version);
      if (version >= session.version) {
        session.version = version;
        session.accessToken = String(json.access_token);
      }
      if (hint !== undefined && version <= hint) {
        figures.unexpected.push(`refresh with hint ${hint} answered version ${version}`);
      }
    } else if (status === 401) {
      const error = String(json.error);
      if (!session.ended)
        session.ended = error === 'reauthentication_required' ? error : 'invalid_session';
      else if (session.ended === 'invalid_session' && error === 'reauthentication_required') {
        session.ended = error;
      }
    } else if (status !== 503) {
      figures.unexpected.push(`refresh answered ${status} ${JSON.stringify(json)}`);
    }
    return status;
  };

  const apiCall = async (session: SoakSession) => {
    figures.apiCalls++;
    const call = () =>
      fetch(`${fake.url}/services/data/v65.0/query?q=SELECT+Id+FROM+Account`, {
        headers: { authorization: `Bearer ${session.accessToken}` },
      }).then(async (response) => {
        await response.arrayBuffer();
        return response.status;
      });
    let status = await call();
    if (status === 401 && !session.ended) {
      // As jsforce does: refresh, naming the version that failed, and retry once.
      figures.apiRetried++;
      if ((await refresh(session, session.version)) === 200) status = await call();
    }
    bump(figures.apiByStatus, status);
  };

  const logout = async (session: SoakSession) => {
    figures.logouts++;
    const { status } = await post('/logout', session.handle);
    bump(figures.logoutByStatus, status);
    if (status === 204) session.ended = 'logout';
    else if (status === 503) session.logoutUncertain = true;
    else figures.unexpected.push(`logout answered ${status}`);
  };

  // Malformed requests: only ones that fail before a session is touched carry a live
  // handle (a well-formed logout would end the session behind the soak's back).
  const someHandle = () => pick(live).handle;
  const badInputs: Array<() => { path: string; init: RequestInit }> = [
    () => ({
      path: '/refresh',
      init: { method: 'POST', headers: { authorization: 'Bearer garbage' } },
    }),
    () => ({
      path: '/refresh',
      init: { method: 'POST', headers: { cookie: `__Host-tb-session=${someHandle()}` } },
    }),
    () => ({
      path: pick(['/refresh', '/logout']),
      init: {
        method: 'POST',
        headers: {
          cookie: `__Host-tb-session=${someHandle()}`,
          'x-csrf': '1',
          origin: 'https://evil.example',
        },
      },
    }),
    () => ({
      path: '/refresh',
      init: {
        method: 'POST',
        headers: { authorization: `Bearer ${someHandle()}`, 'content-type': 'application/json' },
        body: pick(['{"version":"1"}', '{"version":-1}', '[1]', 'version=1', '{"version":999999}']),
      },
    }),
    () => ({
      path: pick(['/refresh', '/logout']),
      init: {
        method: 'POST',
        headers: { authorization: `Bearer ${someHandle()}` },
        body: 'x'.repeat(17_000),
      },
    }),
    () => ({
      path: pick(['/refresh', '/logout']),
      init: { method: 'GET', headers: { authorization: `Bearer ${someHandle()}` } },
    }),
    () => ({
      path: '/logout',
      init: { method: 'POST', headers: { cookie: `__Host-tb-session=${someHandle()}` } },
    }),
  ];
  const badInput = async () => {
    figures.badInput++;
    const { path, init } = pick(badInputs)();
    const response = await fetch(`${server.url}${path}`, init);
    await response.arrayBuffer();
    if (response.status >= 500) {
      figures.badInput5xx++;
      figures.unexpected.push(`bad input to ${path} answered ${response.status}`);
    } else if (response.status < 400) {
      figures.unexpected.push(`bad input to ${path} answered ${response.status}`);
    }
  };

  // -- faults, injected at random while the load runs
  const fakeFaults: Array<() => FakeFault> = [
    () => ({
      endpoint: 'token',
      kind: 'status',
      status: pick([500, 502, 503, 504]),
      times: between(1, 3),
    }),
    () => ({ endpoint: 'token', kind: 'status', status: 429, body: '{}' }),
    () => ({ endpoint: 'token', kind: 'maintenance', times: between(1, 4) }),
    () => ({ endpoint: 'token', kind: 'delay', ms: 2000 }),
    () => ({ endpoint: 'token', kind: 'delay', ms: between(100, 600) }),
    () => ({
      endpoint: 'token',
      kind: 'error',
      error: 'invalid_grant',
      description: 'token request is already being processed',
    }),
    () => ({ endpoint: 'revoke', kind: 'status', status: 503 }),
  ];
  const rareFakeFaults: Array<() => FakeFault> = [
    () => ({
      endpoint: 'token',
      kind: 'error',
      error: 'invalid_grant',
      description: 'inactive user',
    }),
    () => ({ endpoint: 'token', kind: 'drop-after-rotate' }),
    () => ({ endpoint: 'token', kind: 'bad-signature' }),
    () => ({ endpoint: 'token', kind: 'malformed-json' }),
  ];
  const dynamoFaults: Array<() => DynamoDbFault> = [
    () => ({
      operation: pick(['GetItem', 'UpdateItem']),
      kind: 'throughput',
      times: between(1, 4),
    }),
    () => ({ operation: pick(['GetItem', 'UpdateItem']), kind: 'throttle', times: between(1, 3) }),
    () => ({
      operation: pick(['GetItem', 'UpdateItem', 'DeleteItem']),
      kind: 'internal',
      times: between(1, 4),
    }),
    () => ({
      operation: 'UpdateItem',
      kind: 'apply-then-internal',
      // the lease acquire or the fenced commit: the write lands, its answer is a 500
      match: pick(['attribute_exists(pk)', 'leaseOwner = :owner AND version = :version']),
    }),
    () => ({ operation: pick(['GetItem', 'UpdateItem']), kind: 'drop' }),
    () => ({ operation: 'UpdateItem', kind: 'delay', ms: between(50, 400) }),
    // A stalled commit: held by the network past the SDK's 1 s request timeout, sometimes
    // past the whole 6 s lease; the SDK's retry must land it inside the lease.
    () => ({
      operation: 'UpdateItem',
      kind: 'delay',
      match: 'leaseOwner = :owner AND version = :version',
      ms: between(1500, 8000),
    }),
    // A lost delete: logout's (or a replaced session's) delete lands, its answer is a 500.
    () => ({ operation: 'DeleteItem', kind: 'apply-then-internal' }),
  ];
  const injectOne = () => {
    const where = weighted([
      [5, 'salesforce'],
      [1, 'salesforce-rare'],
      [4, 'dynamodb'],
      [2, 'kms'],
      [1, 'secrets'],
    ] as const);
    let name: string;
    if (where === 'salesforce' || where === 'salesforce-rare') {
      const fault = pick(where === 'salesforce' ? fakeFaults : rareFakeFaults)();
      fake.inject(fault);
      name = `salesforce ${fault.endpoint} ${fault.kind}${'status' in fault ? ` ${fault.status}` : ''}${fault.kind === 'error' ? ` ${fault.description}` : ''}`;
    } else if (where === 'dynamodb') {
      const fault = pick(dynamoFaults)();
      dynamo.inject(fault);
      name = `dynamodb ${fault.operation} ${fault.kind}`;
    } else if (where === 'kms') {
      const operation = pick(['Decrypt', 'GenerateDataKey']);
      const kind = pick(['throttle', 'internal'] as const);
      broker.stack.kms.inject({ operation, kind, times: between(1, 3) });
      name = `kms ${operation} ${kind}`;
    } else {
      broker.stack.secretsManager.inject({
        operation: 'GetSecretValue',
        kind: 'internal',
        times: between(1, 5),
      });
      name = 'secrets-manager GetSecretValue internal';
    }
    figures.faultsInjected.set(name, (figures.faultsInjected.get(name) ?? 0) + 1);
  };

  // -- the load
  const deadline = Date.now() + SECONDS * 1000;
  const replacements: Promise<unknown>[] = [];
  const replaceEnded = () => {
    for (let index = 0; index < live.length; index++) {
      const session = live[index];
      if (session?.ended) {
        live.splice(index, 1);
        index--;
        replacements.push(seedSession().then((fresh) => live.push(fresh)));
      }
    }
  };
  const worker = async () => {
    while (Date.now() < deadline) {
      replaceEnded();
      const session = pick(live);
      if (!session) {
        await sleep(5);
        continue;
      }
      const action = weighted([
        [35, 'refresh'],
        [12, 'burst'],
        [30, 'api'],
        [8, 'bad'],
        [2, 'logout'],
        [3, 'pause'],
      ] as const);
      try {
        if (action === 'refresh')
          await refresh(session, random() < 0.5 ? session.version : undefined);
        else if (action === 'burst') {
          const hint = random() < 0.5 ? session.version : undefined;
          await Promise.all(Array.from({ length: between(2, 10) }, () => refresh(session, hint)));
        } else if (action === 'api') await apiCall(session);
        else if (action === 'bad') await badInput();
        else if (action === 'logout') {
          await logout(session);
          // Afterwards the handle must be dead: no resurrection.
          if (session.ended === 'logout') await refresh(session, undefined);
        } else await sleep(between(5, 50));
      } catch (error) {
        figures.unexpected.push(`client error: ${String(error)}`);
      }
    }
  };
  const sweeper = async () => {
    while (Date.now() < deadline) {
      await sweepOnce(Math.min(deadline, Date.now() + 2_000));
      await sleep(1_000);
    }
  };
  const injector = async () => {
    while (Date.now() < deadline) {
      injectOne();
      await sleep(between(100, 400));
    }
  };
  const started = Date.now();
  process.stderr.write(
    `soak: ${SECONDS} s, ${SESSIONS} sessions, ${WORKERS} workers, seed ${initialSeed}\n`,
  );
  await Promise.all([...Array.from({ length: WORKERS }, () => worker()), injector(), sweeper()]);
  const loadSeconds = (Date.now() - started) / 1000;
  await Promise.all(replacements);

  // -- settle: stop the faults, let leases end, then look at every session
  fake.clearFaults();
  dynamo.clearFaults();
  broker.stack.kms.clearFaults();
  broker.stack.secretsManager.clearFaults();
  await sleep(Number(runtime.config.leaseMs) + 200);
  // One sweep without faults: every session past its idle expiry is ended now, and every
  // dormant one due for keep-alive is refreshed.
  const failedUnderFaults = sweepRuns.failed;
  await sweepOnce(Date.now() + 60_000);
  const failedAfterSettle = sweepRuns.failed - failedUnderFaults;

  const tokenCalls = fake.calls.tokenRefresh - tokenCallsAtStart;
  const committed = metrics.get('RefreshCommitted');
  const committedAtStore = [...commitsBySession.values()].reduce((sum, n) => sum + n, 0);
  const answerLost = log.count('commit_answer_lost');
  const rotationLost = metrics.get('RotationLost');
  const endedWhileRefreshing = log.count('session ended while refreshing; not resurrected');
  const noTimeLeft = log.count('No time left in the lease for the upstream call');
  const upstreamErrors = metrics.sum('UpstreamError:');
  const byClass = (name: string) => metrics.get(`UpstreamError:${name}`);
  const malformed = log.sessionsByEvent.size >= 0 ? wire.spoiled - byClass('invalid_response') : 0;

  // Sessions still stored: their version matches the commits seen, and their refresh
  // token still works at Salesforce unless a known hazard explains why not.
  let versionMismatches = 0;
  let doomedUnexplained = 0;
  let doomedExplained = 0;
  for (const session of sessions) {
    if (session.ended) continue;
    const key = sessionKeyOf(session.handle);
    const record = await runtime.store.get(key);
    if (!record) {
      // No app asked since: the sweep ended it (its expiry, or Salesforce's invalid_grant
      // to a keep-alive); the tombstone says which, and the accounting below judges it.
      const tombstone = await runtime.store.findEnded(key);
      if (tombstone?.reason === 'expired' || tombstone?.reason === 'reauthentication_required') {
        session.ended = tombstone.reason;
        continue;
      }
      figures.unexpected.push(`session ${session.safeId} vanished without a 401`);
      continue;
    }
    const lostAnswers = (log.sessionsByEvent.get('commit_answer_lost') ?? []).filter(
      (id) => id === session.safeId,
    ).length;
    if (record.version - 1 !== (commitsBySession.get(key) ?? 0) + lostAnswers) versionMismatches++;
    const tokens = await runtime.vault.open(record.sealed, record.sessionKey, record.version);
    if (!fake.isRefreshTokenActive(tokens.refreshToken)) {
      if (session.hazards.length > 0 || hadRotationLoss(session)) doomedExplained++;
      else doomedUnexplained++;
    }
  }
  function hadRotationLoss(session: SoakSession): boolean {
    for (const event of ['rotation_lost', 'session ended while refreshing; not resurrected']) {
      if ((log.sessionsByEvent.get(event) ?? []).includes(session.safeId)) return true;
    }
    return false;
  }
  // Which ended sessions the sweep ended as expired (whatever their client was told).
  const sweptExpired = new Set<string>();
  for (const session of sessions) {
    if (!session.ended || session.ended === 'logout') continue;
    const tombstone = await runtime.store.findEnded(sessionKeyOf(session.handle));
    if (tombstone?.reason === 'expired') sweptExpired.add(session.safeId);
  }
  const dormantVersions = await Promise.all(
    dormant
      .filter((session) => !session.expiring && !session.ended)
      .map(async (session) => (await runtime.store.get(sessionKeyOf(session.handle)))?.version),
  ).then((versions) => versions.map((version) => version ?? 0));
  const endedBy = new Map<string, number>();
  let lostWithoutReason = 0;
  const reasons = new Map<string, number>();
  for (const session of sessions) {
    if (!session.ended) continue;
    endedBy.set(session.ended, (endedBy.get(session.ended) ?? 0) + 1);
    if (session.ended === 'logout') continue;
    if (sweptExpired.has(session.safeId) || session.ended === 'expired') {
      if (session.expiring) {
        const reason = 'idle expiry passed: ended by the sweep (expired)';
        reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
      } else {
        lostWithoutReason++;
        figures.unexpected.push(`session ${session.safeId} expired by the sweep while live`);
      }
      continue;
    }
    const reason = session.injectedRevocation
      ? 'Salesforce said invalid_grant (injected "inactive user")'
      : (session.hazards[0] ??
        (hadRotationLoss(session)
          ? 'rotation not stored (store/KMS/lease)'
          : session.logoutUncertain && session.ended === 'invalid_session'
            ? 'a logout answered 503 after its delete landed'
            : undefined));
    if (reason === undefined) {
      lostWithoutReason++;
      figures.unexpected.push(`session ${session.safeId} lost without a reason (${session.ended})`);
    } else {
      reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
    }
  }
  clearInterval(rssTimer);
  peakRss = Math.max(peakRss, process.memoryUsage().rss);

  // -- fuzzing every entry point
  const fuzzStarted = Date.now();
  const fuzzStats: FuzzStats = {};
  const fuzzFailures: string[] = [];
  for (const entry of ENTRY_POINTS) {
    const result = await fc.check(fuzzProperty(entry, fuzzStats), { numRuns: FUZZ_RUNS });
    if (result.failed) {
      fuzzFailures.push(
        `${entry.name}: ${String(result.errorInstance).slice(0, 500)} (seed ${result.seed}, path ${result.counterexamplePath})`,
      );
    }
  }
  const fuzzSeconds = (Date.now() - fuzzStarted) / 1000;
  const fuzzEvents = Object.values(fuzzStats).reduce(
    (sum, statuses) => sum + Object.values(statuses).reduce((a, b) => a + b, 0),
    0,
  );

  await server.close();
  await broker.close();

  // Logged-out sessions: the newest refresh token must be dead at Salesforce, unless the
  // revocation was reported as failed (an injected revoke 503).
  let logoutsNotRevoked = 0;
  const revokeFailedSessions = new Set(log.sessionsByEvent.get('revoke_failed') ?? []);
  for (const session of sessions) {
    if (session.ended !== 'logout') continue;
    if (!fake.isRefreshTokenActive(session.latestRefreshToken)) continue;
    // Reported, or a rotation the broker never stored (it revoked the token it held).
    if (revokeFailedSessions.has(session.safeId) || hadRotationLoss(session)) continue;
    if (session.hazards.length > 0) continue;
    logoutsNotRevoked++;
    figures.unexpected.push(`session ${session.safeId} logged out but its grant is alive`);
  }
  // Expired by the sweep: the grant is dead at Salesforce, or its revocation was reported.
  let expiredNotRevoked = 0;
  for (const session of sessions) {
    if (!sweptExpired.has(session.safeId) && session.ended !== 'expired') continue;
    if (!fake.isRefreshTokenActive(session.latestRefreshToken)) continue;
    if (revokeFailedSessions.has(session.safeId) || hadRotationLoss(session)) continue;
    if (session.hazards.length > 0) continue;
    expiredNotRevoked++;
    figures.unexpected.push(`session ${session.safeId} expired but its grant is alive`);
  }
  // Dormant sessions due only for keep-alive: refreshed by the sweep alone, or ended by
  // Salesforce with a reason the accounting above found.
  const dormantKeptAlive = dormantVersions.filter((version) => version >= 2).length;
  const dormantEnded = dormant.filter((session) => !session.expiring && session.ended).length;
  const secondCallsUnexplained = secondCalls.filter(
    ({ session }) => !session || !hadRotationLoss(session),
  );
  for (const { session, why } of secondCallsUnexplained) {
    figures.unexpected.push(`second token call with one refresh token ${why} (${session?.safeId})`);
  }

  // -- invariants
  const accounted = committed + rotationLost + endedWhileRefreshing + upstreamErrors - noTimeLeft;
  const server5xx = figures.refreshByStatus.get(500) ?? 0;
  const invariants: Array<[string, boolean]> = [
    ['every token call the broker sent reached Salesforce', tokenCalls === wire.requests],
    [
      'every upstream token call is accounted for (committed, rotation lost, session ended, upstream error)',
      tokenCalls === accounted,
    ],
    [
      'every valid answer was stored or raised rotation_lost (or its session had ended)',
      wire.ok === committed + rotationLost + endedWhileRefreshing,
    ],
    [
      'version increments counted by the broker equal the commits the store applied',
      committed === committedAtStore + answerLost,
    ],
    ['stored versions match the commits seen, session by session', versionMismatches === 0],
    ['sessions lost without a reason', lostWithoutReason === 0 && doomedUnexplained === 0],
    [
      'reuse revocations at Salesforce are all explained by a lost rotation',
      fake.reuseRevocations <= wire.dropped + wire.spoiled + rotationLost + endedWhileRefreshing,
    ],
    [
      'second upstream calls with one refresh token (in flight, or after a delivered rotation not explained by rotation_lost)',
      secondCallsUnexplained.length === 0,
    ],
    ['logged-out sessions whose grant is still alive and unreported', logoutsNotRevoked === 0],
    ['expired sessions whose grant is still alive and unreported', expiredNotRevoked === 0],
    [
      'dormant sessions kept alive by the sweep alone (or ended with a reason)',
      dormantKeptAlive + dormantEnded === DORMANT / 2,
    ],
    ['sweep runs that failed after the faults stopped', failedAfterSettle === 0],
    ['5xx for client errors', figures.badInput5xx === 0],
    ['500 server_error answers', server5xx === 0],
    ['tokens answered after a logout (resurrection)', figures.resurrections === 0],
    ['log entries carrying a token, the secret or a line break', log.leaks === 0],
    ['unexpected answers', figures.unexpected.length === 0],
    ['fuzzing: contract kept for every generated event', fuzzFailures.length === 0],
  ];

  const format = (map: Map<number | string, number>) =>
    [...map.entries()]
      .sort(([a], [b]) => String(a).localeCompare(String(b)))
      .map(([key, value]) => `${key}: ${value}`)
      .join(', ');
  const out = [
    '',
    `Soak: ${loadSeconds.toFixed(1)} s of load, ${SESSIONS} sessions in the pool (${sessions.length} used), ${WORKERS} workers, seed ${initialSeed}`,
    '',
    'Requests',
    `  /refresh                 ${figures.refreshRequests}  (${format(figures.refreshByStatus)})`,
    `  /refresh latency         p50 ${percentile(refreshLatency, 50).toFixed(1)} ms, p99 ${percentile(refreshLatency, 99).toFixed(1)} ms, max ${Math.max(...refreshLatency).toFixed(0)} ms`,
    `  REST API calls           ${figures.apiCalls}  (${format(figures.apiByStatus)}; ${figures.apiRetried} after a 401 + refresh)`,
    `  /logout                  ${figures.logouts}  (${format(figures.logoutByStatus)})`,
    `  malformed requests       ${figures.badInput}  (5xx: ${figures.badInput5xx})`,
    `  throughput               ${((figures.refreshRequests + figures.apiCalls + figures.logouts + figures.badInput) / loadSeconds).toFixed(0)} requests/s`,
    '',
    'Upstream token calls vs version increments',
    `  token calls at Salesforce        ${tokenCalls}  (sent by the broker: ${wire.requests})`,
    `  version increments (commits)     ${committed}  (applied at the store: ${committedAtStore}, applied with the answer lost: ${answerLost}; acquires applied with the answer lost: ${log.count('acquire_answer_lost')})`,
    `  difference                       ${tokenCalls - committed}, of which:`,
    `    nothing rotated: error answers ${wire.errors} (unavailable/429/maintenance ${byClass('unavailable') - wire.dropped - wire.timedOut - malformed}, concurrency block ${byClass('concurrent')}, invalid_grant ${byClass('invalid_grant')}), timed out and never processed ${wire.timedOut}`,
    `    rotated, answer lost on the wire: dropped after rotation ${wire.dropped}, spoiled 200 (bad signature, malformed) ${wire.spoiled}`,
    `    rotated and answered, not stored: rotation_lost ${rotationLost}, session ended meanwhile ${endedWhileRefreshing}`,
    `  no call made (lease too short)   ${noTimeLeft}`,
    '',
    'Sessions',
    `  ended                    ${format(endedBy)}`,
    `  must log in again        ${[...reasons.values()].reduce((a, b) => a + b, 0)}: ${format(reasons) || 'none'}`,
    `  stored but dead at Salesforce: explained ${doomedExplained}, unexplained ${doomedUnexplained}`,
    `  lost without a reason    ${lostWithoutReason + doomedUnexplained}`,
    `  reuse revocations        ${fake.reuseRevocations}`,
    `  second token calls with one refresh token: ${secondCalls.length} (unexplained ${secondCallsUnexplained.length})`,
    `  logged out, grant still alive and unreported: ${logoutsNotRevoked}`,
    `  expired by the sweep     ${sweptExpired.size}  (of ${sessions.filter((session) => session.expiring).length} set to pass their idle expiry; expired, grant still alive and unreported: ${expiredNotRevoked})`,
    `  dormant, kept alive      ${dormantKeptAlive} of ${DORMANT / 2} (no app used them; ended by Salesforce: ${dormantEnded})`,
    '',
    `Sweep                     ${sweepRuns.runs} runs (${sweepRuns.failed} failed under faults), kept alive ${sweepRuns.keptAlive}, already fresh (an app was first) ${sweepRuns.alreadyFresh}, expired ${sweepRuns.expired}, kept (refreshed meanwhile) ${sweepRuns.kept}`,
    '',
    `Faults injected           ${[...figures.faultsInjected.values()].reduce((a, b) => a + b, 0)}  (${format(figures.faultsInjected)})`,
    `Log entries               ${log.entries}  (alarms: rotation_lost ${log.count('rotation_lost')}, upstream_invalid_response ${log.count('upstream_invalid_response')}, revoke_failed ${log.count('revoke_failed')})`,
    `Peak RSS                  ${(peakRss / 1024 / 1024).toFixed(0)} MB during the load (every 10 s: ${rssSamples.map((rss) => (rss / 1024 / 1024).toFixed(0)).join(', ')} MB; process maxRSS incl. fuzzing ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MB)`,
    '',
    `Fuzzing                   ${fuzzEvents} generated events in ${fuzzSeconds.toFixed(1)} s (${FUZZ_RUNS} per entry point): ${JSON.stringify(fuzzStats)}`,
    ...fuzzFailures.map((failure) => `  FAILED ${failure}`),
    '',
    'Invariants',
    ...invariants.map(([name, ok]) => `  ${ok ? 'ok  ' : 'FAIL'} ${name}`),
    ...figures.unexpected.slice(0, 20).map((line) => `  unexpected: ${line}`),
    '',
  ];
  process.stdout.write(out.join('\n'));
  return invariants.every(([, ok]) => ok) ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`soak failed to run: ${(error as Error).stack ?? String(error)}\n`);
    process.exit(2);
  },
);
