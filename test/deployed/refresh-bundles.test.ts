import { setTimeout as sleep } from 'node:timers/promises';
import { UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sweepShardOf } from '../../functions/aws/dynamodb-session-store.ts';
import { sessionKeyOf } from '../../functions/broker/session-handle.ts';
import { SWEEP_INDEX } from '../../functions/shared/constants.ts';
import {
  BundleFunction,
  LAMBDA_RUNTIME_VARIABLES,
  LOCAL_OVERRIDES,
  type LocalOverride,
  resolveEnvironment,
} from '../../local/bundle-runtime.ts';
import type { FakeSalesforceOptions } from '../../local/fake-salesforce.ts';
import { type Json, readJson } from '../support/broker-harness.ts';
import {
  type DeployedBroker,
  startDeployedBroker,
  synthesizeBroker,
} from '../support/deployed-broker.ts';
import { signedFetch } from '../support/sigv4-client.ts';

/**
 * The synthesized bundles from the CDK assembly, run as Lambda runs them: the template's
 * environment resolved to the local stack, one worker thread per concurrent invocation
 * (no shared module state), the function timeout enforced by killing the worker, HTTP API
 * payload format 2.0 events over real HTTP. See `local/bundle-runtime.ts`.
 *
 * Two assemblies: the deployed shape (`cdk.json`), and one re-synthesized with a short
 * function timeout (`functionTimeoutSeconds: 5`, `upstreamTimeoutMs: 3000`), so the lease,
 * the wait budget and the upstream timeout are the ones the template derives from it,
 * never edited into the environment.
 */
const SHORT_TIMEOUT = { functionTimeoutSeconds: 5, upstreamTimeoutMs: 3000 };
/** cdk-nag validates and never changes the template; the infra tests run it. */
const SHORT_CONTEXT = { ...SHORT_TIMEOUT, nag: false };
/** The fenced commit, told apart from the other `UpdateItem`s by its condition. */
const COMMIT = 'leaseOwner = :owner AND version = :version';
const CONCURRENT_CALLERS = 20;

let deployed: Awaited<ReturnType<typeof synthesizeBroker>>;
let short: Awaited<ReturnType<typeof synthesizeBroker>>;

beforeAll(async () => {
  // Side by side: each synthesis bundles every function with esbuild, in its own process.
  [deployed, short] = await Promise.all([synthesizeBroker(), synthesizeBroker(SHORT_CONTEXT)]);
}, 240_000);

afterAll(() => {
  deployed?.remove();
  short?.remove();
});

const REFRESH = 'ANY /refresh';

describe('the template environment of the shipped functions', () => {
  let broker: DeployedBroker;

  beforeAll(async () => {
    broker = await startDeployedBroker({ app: deployed });
  });
  afterAll(async () => {
    await broker?.close();
  });

  it('serves every route of the template by its own function', () => {
    expect(deployed.functions.map((fn) => [fn.routeKey, fn.name]).sort()).toEqual([
      ['$default', 'NotFoundFunction'],
      ['ANY /callback', 'CallbackFunction'],
      ['ANY /login', 'LoginFunction'],
      ['ANY /logout', 'LogoutFunction'],
      ['ANY /refresh', 'RefreshFunction'],
      ['ANY /session', 'SessionFunction'],
      ['ANY /token', 'TokenFunction'],
      ['DELETE /connections', 'ServiceFunction'],
      ['DELETE /connections/{connection_id}', 'ServiceFunction'],
      ['GET /connections', 'ServiceFunction'],
      ['GET /connections/{connection_id}', 'ServiceFunction'],
      ['POST /connections/{connection_id}/token', 'ServiceFunction'],
    ]);
  });

  it('ships the service API behind AWS_IAM: a signed call gets the token, an unsigned one 403', async () => {
    // Prepare
    const session = await broker.seedSession({ committedAgoMs: 60_000 });
    const url = `${broker.api.url}/connections/${session.connectionId}/token`;
    const invocations = broker.api.invocations.length;

    // Act
    const unsigned = await fetch(url, { method: 'POST' });
    const afterUnsigned = broker.api.invocations.length;
    const signed = await signedFetch(url, { ...broker.service, method: 'POST' });
    const listed = await signedFetch(
      `${broker.api.url}/connections?organization_id=${broker.fake.orgId}`,
      broker.service,
    );

    // Assert
    expect(unsigned.status).toBe(403);
    expect(await unsigned.json()).toEqual({ message: 'Forbidden' });
    expect(afterUnsigned).toBe(invocations);
    expect(signed.status).toBe(200);
    expect(await signed.json()).toMatchObject({ token_type: 'Bearer', version: 2 });
    expect(listed.status).toBe(200);
    expect(JSON.stringify(await listed.json())).toContain(session.connectionId);
    expect(broker.logText()).toContain('"event":"service_call"');
  });

  it('ships /token and registers no app unless clientApps says so', async () => {
    // Prepare
    const form = new URLSearchParams({
      grant_type: 'authorization_code',
      code: 'A'.repeat(43),
      redirect_uri: 'com.example.app:/oauth2redirect',
      client_id: 'ios',
      code_verifier: 'B'.repeat(43),
    }).toString();
    const login = new URLSearchParams({
      client_id: 'ios',
      redirect_uri: 'com.example.app:/oauth2redirect',
      state: 'app-state',
      code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM',
      code_challenge_method: 'S256',
    }).toString();

    // Act
    const token = await fetch(`${broker.api.url}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: form,
    });
    const started = await fetch(`${broker.api.url}/login?${login}`, { redirect: 'manual' });

    // Assert
    expect(deployed.route('ANY /token').environment.CLIENT_APPS).toBe('[]');
    expect(token.status).toBe(401);
    expect(await token.json()).toMatchObject({ error: 'invalid_client' });
    expect(started.status).toBe(400);
    expect(started.headers.get('location')).toBeNull();
  });

  it('resolves each intrinsic to the local stack, keeps every plain value and overrides only the listed endpoints and credentials', () => {
    const { stack, api } = broker;
    const localEquivalent: Record<string, string> = {
      TABLE_NAME: stack.tableName,
      KMS_KEY_ID: stack.keyId,
      CLIENT_SECRET_ID: stack.secretId,
      CALLBACK_URL: `${api.url}/callback`,
    };
    for (const fn of deployed.functions) {
      const env = api.functions.get(fn.routeKey)?.env ?? {};
      const intrinsics = Object.keys(fn.environment).filter(
        (name) => typeof fn.environment[name] === 'object',
      );
      const changedPlainValues = Object.entries(fn.environment)
        .filter(([name, value]) => typeof value !== 'object' && env[name] !== String(value))
        .map(([name]) => name);
      const added = Object.keys(env).filter((name) => !(name in fn.environment));

      for (const name of intrinsics) expect(env[name], name).toBe(localEquivalent[name]);
      // Only what points at AWS or Salesforce differs from the template.
      expect(
        changedPlainValues.every((name) => (LOCAL_OVERRIDES as readonly string[]).includes(name)),
        fn.name,
      ).toBe(true);
      expect(added.sort(), fn.name).toEqual(
        [...LOCAL_OVERRIDES, ...LAMBDA_RUNTIME_VARIABLES]
          .filter((name) => !(name in fn.environment))
          .sort(),
      );
      for (const name of LOCAL_OVERRIDES) expect(env[name], name).toBe(stack.env[name]);
    }
    expect(deployed.route(REFRESH).environment.SALESFORCE_LOGIN_URL).toBe(
      'https://login.salesforce.com',
    );
  });

  it('runs the refresh function with the deployed budget, unchanged', () => {
    const fn = deployed.route(REFRESH);
    const env = broker.api.functions.get(REFRESH)?.env ?? {};

    expect(fn.timeoutSeconds).toBe(12);
    expect(fn.memorySizeMb).toBe(512);
    expect(fn.handler).toBe('index.handler');
    expect(env).toMatchObject({
      LEASE_MS: '12000',
      UPSTREAM_TIMEOUT_MS: '8000',
      WAIT_BUDGET_MS: '10000',
      REUSE_WINDOW_SECONDS: '5',
      ALLOWED_ORIGINS: '',
      NODE_OPTIONS: '--enable-source-maps',
      SALESFORCE_LOGIN_URL: broker.fake.url,
    });
  });

  it('takes a shorter function timeout from a re-synthesis, with the budget the template derives from it', () => {
    const fn = short.route(REFRESH);

    expect(fn.timeoutSeconds).toBe(5);
    expect(fn.environment).toMatchObject({
      LEASE_MS: '5000',
      UPSTREAM_TIMEOUT_MS: '3000',
      WAIT_BUDGET_MS: '3000',
    });
  });
});

describe('single flight on the shipped refresh bundle (deployed shape)', () => {
  let broker: DeployedBroker;

  beforeAll(async () => {
    broker = await startDeployedBroker({
      app: deployed,
      // Salesforce's own rules: rotation, reuse detection, one request per token at a time.
      // Its latency keeps the holder's refresh open while the others arrive.
      salesforce: {
        rotation: true,
        reuseDetection: true,
        concurrencyBlock: true,
        tokenLatencyMs: 300,
      },
    });
  });
  afterAll(async () => {
    await broker?.close();
  });

  it(`${CONCURRENT_CALLERS} concurrent callers in ${CONCURRENT_CALLERS} workers cause one token call and all get version 2`, async () => {
    // Prepare: as many initialized execution environments as callers, so all are in flight
    // together instead of staggered by their cold starts.
    const session = await broker.seedSession();
    await broker.api.functions.get(REFRESH)?.prewarm(CONCURRENT_CALLERS);

    // Act
    const responses = await Promise.all(
      Array.from({ length: CONCURRENT_CALLERS }, () => broker.refresh(session.handle)),
    );
    const bodies: Json[] = await Promise.all(responses.map(readJson));

    // Assert
    expect(responses.map((response) => response.status)).toEqual(
      Array(CONCURRENT_CALLERS).fill(200),
    );
    expect(broker.fake.calls.tokenRefresh).toBe(1);
    expect(broker.fake.reuseRevocations).toBe(0);
    expect(new Set(bodies.map((body) => body.access_token)).size).toBe(1);
    expect(bodies.map((body) => body.version)).toEqual(Array(CONCURRENT_CALLERS).fill(2));
    const invocations = broker.api.invocations.filter(
      (call) => call.functionName === 'RefreshFunction',
    );
    expect(new Set(invocations.map((call) => call.workerId)).size).toBe(CONCURRENT_CALLERS);
    expect(invocations.filter((call) => call.timedOut || call.failed)).toEqual([]);

    // The functions' own logs: written, captured, and free of any credential.
    const logs = broker.logText();
    expect(logs.split('\n').filter((line) => line.includes('"refresh answered"'))).toHaveLength(
      CONCURRENT_CALLERS,
    );
    for (const secret of [
      session.handle,
      session.refreshToken,
      session.accessToken,
      String(bodies[0]?.access_token),
    ]) {
      expect(logs).not.toContain(secret);
    }
  });
});

describe("the broker's own origin on the shipped bundles (no allowedOrigins set)", () => {
  let broker: DeployedBroker;

  beforeAll(async () => {
    broker = await startDeployedBroker({ app: deployed, salesforce: { rotation: true } });
  });
  afterAll(async () => {
    await broker?.close();
  });

  it("accepts the cookie from a page on the broker's own origin, and refuses any other origin", async () => {
    // Prepare: the template sets ALLOWED_ORIGINS to '' (nothing configured)
    const session = await broker.seedSession();
    const own = new URL(broker.api.functions.get(REFRESH)?.env.CALLBACK_URL ?? broker.api.url)
      .origin;
    const fromPage = (origin: string) =>
      fetch(`${broker.api.url}/refresh`, {
        method: 'POST',
        headers: { cookie: `__Host-tb-session=${session.handle}`, 'x-csrf': '1', origin },
      });

    // Act
    const ownAnswer = await fromPage(own);
    const foreignAnswer = await fromPage('https://evil.example.net');

    // Assert
    expect(ownAnswer.status).toBe(200);
    expect(ownAnswer.headers.get('access-control-allow-origin')).toBe(own);
    expect(foreignAnswer.status).toBe(403);
  });
});

/**
 * Each case has a local stack of its own (fault proxy in front of dynalite), so the cases
 * wait out their timeouts side by side.
 */
describe.concurrent(`the function timeout (re-synthesized: functionTimeoutSeconds ${SHORT_TIMEOUT.functionTimeoutSeconds}, lease = function timeout)`, () => {
  const timeoutMs = SHORT_TIMEOUT.functionTimeoutSeconds * 1000;

  async function withBroker(
    test: (broker: DeployedBroker) => Promise<void>,
    salesforce: FakeSalesforceOptions = {},
  ): Promise<void> {
    const broker = await startDeployedBroker({
      app: short,
      dynamodbFaultProxy: true,
      salesforce: {
        rotation: true,
        reuseDetection: true,
        concurrencyBlock: true,
        // GET /authorize redirects to /callback at once, as if the user pressed Allow.
        autoApprove: true,
        ...salesforce,
      },
    });
    try {
      await test(broker);
    } finally {
      await broker.close();
    }
  }

  /** Just inside UPSTREAM_TIMEOUT_MS (3000), and two of them beyond the function timeout. */
  const CALLBACK_EXCHANGE_MS = Math.ceil(timeoutMs / 2) + 300;

  function lastRefreshInvocation(broker: DeployedBroker) {
    return broker.api.invocations.filter((call) => call.functionName === 'RefreshFunction').at(-1);
  }

  it('a Salesforce slower than the function timeout is cut off by the function itself: 503, no kill', ({
    expect,
  }) =>
    withBroker(async (broker) => {
      // Prepare
      const session = await broker.seedSession();
      broker.fake.inject({ endpoint: 'token', kind: 'delay', ms: timeoutMs + 2000 });

      // Act
      const response = await broker.refresh(session.handle);

      // Assert: UPSTREAM_TIMEOUT_MS < LEASE_MS = the function timeout
      expect(response.status).toBe(503);
      expect(await readJson(response)).toMatchObject({ error: 'temporarily_unavailable' });
      expect(lastRefreshInvocation(broker)).toMatchObject({ timedOut: false, failed: false });
    }));

  it.each([
    { route: 'ANY /login', operation: 'PutItem', functionName: 'LoginFunction' },
    { route: 'ANY /session', operation: 'GetItem', functionName: 'SessionFunction' },
  ] as const)(
    '$route: a DynamoDB answer that trickles in past the function timeout is cut off by the invocation deadline: 503, no kill',
    ({ route, operation, functionName }) =>
      withBroker(async (broker) => {
        // Prepare: the item is read or written, but the answer's body trickles in over longer
        // than the function timeout. The SDK's request timeout is an idle timeout and never
        // fires: only the deadline the route passes ends the call before Lambda's kill.
        const session = await broker.seedSession();
        broker.stack.dynamodbFaults?.inject({
          operation,
          kind: 'trickle',
          ms: short.route(route).timeoutSeconds * 1000 + 3000,
        });

        // Act
        const response =
          route === 'ANY /login'
            ? await fetch(`${broker.api.url}/login?return_to=/`, { redirect: 'manual' })
            : await fetch(`${broker.api.url}/session`, {
                headers: { authorization: `Bearer ${session.handle}` },
              });

        // Assert
        expect(response.status).toBe(503);
        expect(await readJson(response)).toMatchObject({ error: 'temporarily_unavailable' });
        const invocations = broker.api.invocations.filter(
          (call) => call.functionName === functionName,
        );
        expect(invocations).toMatchObject([{ timedOut: false }]);
      }),
  );

  it('a /callback whose two code exchanges would outlast the function timeout answers by its own deadline, before the kill', ({
    expect,
  }) =>
    withBroker(
      async (broker) => {
        // Prepare: Salesforce has a new consumer secret that the secret does not hold yet, and
        // answers each code exchange just inside UPSTREAM_TIMEOUT_MS. /callback re-reads the
        // secret once on invalid_client and would exchange again: two exchanges outlast the
        // function timeout, so only its INVOCATION_DEADLINE_MS keeps it from being killed.
        const authorize = await fetch(`${broker.api.url}/login?return_to=/`, {
          redirect: 'manual',
        });
        const loginCookie = authorize.headers.getSetCookie().map((raw) => raw.split(';')[0]);
        const approved = await fetch(authorize.headers.get('location') ?? '', {
          redirect: 'manual',
        });
        const callbackUrl = approved.headers.get('location') ?? '';
        broker.fake.setClientSecret('rotated-at-salesforce');

        // Act
        const response = await fetch(callbackUrl, {
          headers: { cookie: loginCookie.join('; ') },
          redirect: 'manual',
        });

        // Assert: the function's own answer (a redirect carrying the error), not a kill
        expect(authorize.status).toBe(302);
        expect(callbackUrl.startsWith(`${broker.api.url}/callback?`)).toBe(true);
        expect(response.status).toBe(302);
        const invocations = broker.api.invocations.filter(
          (call) => call.functionName === 'CallbackFunction',
        );
        expect(invocations).toMatchObject([{ timedOut: false, failed: false, statusCode: 302 }]);
        expect(broker.fake.calls.tokenCode).toBeGreaterThanOrEqual(1);
      },
      { tokenLatencyMs: CALLBACK_EXCHANGE_MS },
    ));

  // Without SDK request timeouts and commits capped by the lease, the holder is killed at
  // the function timeout still waiting on its commit, and the second caller takes the
  // lapsed lease and presents the rotated-out token (2 token calls, family revoked).
  it('a commit stalled past the lease end lets no second caller replay the rotated-out refresh token', ({
    expect,
  }) =>
    withBroker(async (broker) => {
      // Prepare: the holder's first commit attempt is answered only after its lease ended
      // (and after its function timeout).
      const leaseMs = Number(short.route(REFRESH).environment.LEASE_MS);
      const session = await broker.seedSession();
      broker.stack.dynamodbFaults?.inject({
        operation: 'UpdateItem',
        match: COMMIT,
        kind: 'delay',
        ms: leaseMs + 3000,
      });

      // Act: the holder takes the lease and rotates at Salesforce; a second client, whose
      // token of version 1 is dead, calls just after the lease ended.
      const first = broker.refresh(session.handle);
      const leaseUntil = await leaseEndOf(broker, session.handle);
      await sleep(Math.max(0, leaseUntil - Date.now()) + 250);
      const second = broker.refresh(session.handle, { version: 1 });
      const [firstResponse, secondResponse] = await Promise.all([first, second]);
      const secondBody = await readJson(secondResponse);
      const item = await broker.rawItem(session.handle);

      // Assert: Salesforce saw the seeded refresh token once, and no reuse
      expect({
        tokenCalls: broker.fake.calls.tokenRefresh,
        reuseRevocations: broker.fake.reuseRevocations,
      }).toEqual({ tokenCalls: 1, reuseRevocations: 0 });
      // ... and the session is live at version 2, or cleanly needs a new login, reported.
      const live =
        secondResponse.status === 200 && secondBody.version === 2 && item?.version?.N === '2';
      const reportedLoss =
        secondResponse.status === 401 &&
        secondBody.error === 'reauthentication_required' &&
        broker.logEvents().includes('rotation_lost');
      expect({ live, reportedLoss, firstStatus: firstResponse.status }).toSatisfy(
        (outcome: { live: boolean; reportedLoss: boolean }) => outcome.live || outcome.reportedLoss,
      );
    }));
});

/** Waits until a caller holds the session's lease and returns when that lease ends. */
async function leaseEndOf(broker: DeployedBroker, handle: string): Promise<number> {
  const giveUp = Date.now() + 20_000;
  while (Date.now() < giveUp) {
    const leaseUntil = (await broker.rawItem(handle))?.leaseUntil?.N;
    if (leaseUntil) return Number(leaseUntil);
    await sleep(10);
  }
  throw new Error('no caller took the lease');
}

describe('the shipped sweep bundle, as its schedule invokes it', () => {
  let broker: DeployedBroker;
  let sweep: BundleFunction;

  beforeAll(async () => {
    broker = await startDeployedBroker({ app: deployed });
    const [scheduled] = deployed.scheduled;
    if (!scheduled) throw new Error('the template schedules no function');
    const overrides = Object.fromEntries(
      LOCAL_OVERRIDES.map((name) => [name, broker.stack.env[name]]),
    ) as Record<LocalOverride, string>;
    const env = resolveEnvironment(
      scheduled,
      deployed.template,
      {
        tableName: broker.stack.tableName,
        keyId: broker.stack.keyId,
        secretId: broker.stack.secretId,
        apiUrl: broker.api.url,
      },
      overrides,
    );
    sweep = new BundleFunction(scheduled, env, { keepWarm: false });
  });
  afterAll(async () => {
    await sweep?.close();
    await broker?.close();
  });

  /** Puts a seeded session in the sweep's index, due a second ago (and expired, if told). */
  async function makeDue(handle: string, expired: boolean) {
    const now = Date.now();
    const sessionKey = sessionKeyOf(handle);
    await broker.stack.dynamodb.send(
      new UpdateItemCommand({
        TableName: broker.stack.tableName,
        Key: { pk: { S: `session#${sessionKey}` } },
        UpdateExpression: expired
          ? 'SET #shard = :shard, #at = :at, idleExpiresAt = :at'
          : 'SET #shard = :shard, #at = :at',
        ExpressionAttributeNames: {
          '#shard': SWEEP_INDEX.partitionKey,
          '#at': SWEEP_INDEX.sortKey,
        },
        ExpressionAttributeValues: {
          ':shard': { S: sweepShardOf(sessionKey) },
          ':at': { N: String(now - 1000) },
        },
      }),
    );
  }

  it('runs daily with the input of its schedule, keeps a due connection alive and ends an expired one at Salesforce', async () => {
    // Prepare: one connection last refreshed 21 days ago, one past its idle expiry.
    const [scheduled] = deployed.scheduled;
    const due = await broker.seedSession({ committedAgoMs: 21 * 86_400_000 });
    const expired = await broker.seedSession();
    await makeDue(due.handle, false);
    await makeDue(expired.handle, true);
    broker.fake.resetCalls();

    // Act
    const { result, invocation } = await sweep.invoke(scheduled?.input ?? {});

    // Assert: the template's settings reached it (20 days, 10 per second, 15 minutes).
    expect(scheduled?.name).toBe('SweepFunction');
    expect(scheduled?.scheduleExpression).toBe('cron(15 3 * * ? *)');
    expect(scheduled?.timeoutSeconds).toBe(900);
    expect(sweep.env.KEEP_ALIVE_AFTER_DAYS).toBe('20');
    expect(sweep.env.KEEP_ALIVE_AFTER_SECONDS).toBeUndefined();
    expect(invocation.failed).toBe(false);
    expect(JSON.parse(result.body ?? '{}')).toMatchObject({
      keptAlive: 1,
      expiredRevoked: 1,
      keepAliveFailed: 0,
      cutOff: false,
    });
    expect(broker.fake.calls.tokenRefresh).toBe(1);
    expect(broker.fake.calls.revoke).toBe(1);
    expect(broker.fake.isRefreshTokenActive(expired.refreshToken)).toBe(false);
    expect((await broker.rawItem(due.handle))?.version?.N).toBe('2');
    expect(await broker.rawItem(expired.handle)).toBeUndefined();
    const refreshed = await broker.refresh(expired.handle);
    expect(refreshed.status).toBe(401);
    expect(await readJson(refreshed)).toMatchObject({ error: 'reauthentication_required' });
  });
});
