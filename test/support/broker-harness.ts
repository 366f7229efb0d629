import { GetItemCommand, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import { newConnectionId } from '../../functions/broker/connection.ts';
import type { Log, SessionRecord, TokenSet } from '../../functions/broker/ports.ts';
import { newSessionHandle, sessionKeyOf } from '../../functions/broker/session-handle.ts';
import type { HttpHandler } from '../../functions/http/route.ts';
import { createRefreshHandler } from '../../functions/routes/refresh.ts';
import { createServiceHandler } from '../../functions/routes/service.ts';
import { createSessionHandler } from '../../functions/routes/session.ts';
import { buildRuntime, type Runtime } from '../../functions/runtime.ts';
import { SERVICE_ROUTE_KEYS } from '../../functions/shared/constants.ts';
import { newSalesforceId } from '../../local/fake-salesforce/ids.ts';
import type { FakeSalesforce, FakeSalesforceOptions } from '../../local/fake-salesforce.ts';
import { type LocalServer, startLocalServer } from '../../local/lambda-http.ts';
import {
  generateLocalCredentials,
  type ServiceCredentials,
  SigV4Verifier,
} from '../../local/sigv4-verifier.ts';
import { type LocalStack, startLocalStack } from '../../local/stack.ts';
import { CaptureLog, CaptureMetrics } from './capture-log.ts';
import { DAY } from './fixtures.ts';
import { type SignedFetchOptions, signedFetch } from './sigv4-client.ts';

/** A response body as loosely typed JSON, for assertions. */
// biome-ignore lint/suspicious/noExplicitAny: assertions read arbitrary members
export type Json = Record<string, any>;

export async function readJson(response: Response): Promise<Json> {
  return (await response.json()) as Json;
}

export const APP_ORIGIN = 'https://app.example.com';

export interface BrokerHarness {
  stack: LocalStack;
  runtime: Runtime;
  server: LocalServer;
  log: CaptureLog;
  metrics: CaptureMetrics;
  /**
   * The service API (`/connections`, SigV4 verified as API Gateway's `AWS_IAM` does):
   * the one credential pair it accepts, and how often its function ran.
   */
  service: {
    credentials: ServiceCredentials;
    region: string;
    readonly invocations: number;
    /** A call signed with `credentials` (`options` may override any signing input). */
    fetch(path: string, options?: Partial<SignedFetchOptions>): Promise<Response>;
  };
  /** Creates a session for a fresh grant at the fake, as `/callback` would. */
  seedSession(options?: { committedAgoMs?: number; userId?: string }): Promise<SeededSession>;
  /** `POST /refresh` with the bearer handle. */
  refresh(handle: string, body?: unknown, headers?: Record<string, string>): Promise<Response>;
  /** The token set stored for a handle, decrypted, or undefined when the item is gone. */
  stored(handle: string): Promise<{ version: number; tokens: TokenSet } | undefined>;
  /** Overwrites attributes of the raw session item (simulate crashes, tampering). */
  patchItem(
    handle: string,
    attributes: Record<string, { N: string } | { S: string } | { B: Uint8Array }>,
  ): Promise<void>;
  rawItem(handle: string): Promise<Record<string, unknown> | undefined>;
  close(): Promise<void>;
}

export interface SeededSession {
  handle: string;
  refreshToken: string;
  accessToken: string;
  /** The connection the session is the credential for. */
  connectionId: string;
}

/**
 * Creates a session for a fresh grant at the fake, as `/callback` would: the grant's
 * tokens sealed with the runtime's vault and stored with its store.
 */
export async function seedSession(
  runtime: Pick<Runtime, 'vault' | 'store'>,
  salesforce: FakeSalesforce,
  {
    committedAgoMs = 60_000,
    userId = newSalesforceId('005'),
  }: { committedAgoMs?: number; userId?: string } = {},
): Promise<SeededSession> {
  // One user per session by default: Salesforce's approvals limit (5 per user and app)
  // would otherwise revoke the oldest seeded grants.
  const grant = salesforce.seedGrant({ userId });
  const handle = newSessionHandle();
  const sessionKey = sessionKeyOf(handle);
  const now = Date.now();
  const dataKey = await runtime.vault.generateDataKey(sessionKey);
  const tokens: TokenSet = {
    accessToken: grant.accessToken,
    refreshToken: grant.refreshToken,
    instanceUrl: salesforce.url,
    issuedAt: String(now - committedAgoMs),
    scope: 'api refresh_token',
    identityUrl: grant.id,
  };
  const record: SessionRecord = {
    sessionKey,
    version: 1,
    sealed: runtime.vault.seal(dataKey, sessionKey, 1, tokens),
    committedAt: now - committedAgoMs,
    createdAt: now - committedAgoMs,
    absoluteExpiresAt: now + 30 * DAY,
    idleExpiresAt: now + 7 * DAY,
    orgId: salesforce.orgId,
    userId: grant.userId,
    connectionId: newConnectionId(),
    instanceUrl: tokens.instanceUrl,
    scope: tokens.scope,
  };
  if (!(await runtime.store.create(record))) throw new Error('session key collision');
  return {
    handle,
    refreshToken: grant.refreshToken,
    accessToken: grant.accessToken,
    connectionId: record.connectionId ?? '',
  };
}

/**
 * The refresh route served over real HTTP on loopback, backed by dynalite, the KMS and
 * Secrets Manager emulators and the fake Salesforce.
 */
export async function startBrokerHarness(
  options: {
    salesforce?: FakeSalesforceOptions;
    env?: Record<string, string>;
    log?: Log;
    /** Route the broker's DynamoDB requests through a fault proxy (`stack.dynamodbFaults`). */
    dynamodbFaultProxy?: boolean;
    /** Parts of the runtime to replace (e.g. a Salesforce client with a recording fetch). */
    overrides?: Partial<Runtime>;
  } = {},
): Promise<BrokerHarness> {
  const stack = await startLocalStack({
    salesforce: options.salesforce ?? {},
    dynamodbFaultProxy: options.dynamodbFaultProxy ?? false,
  });
  // The SDK clients read AWS_ENDPOINT_URL_<SERVICE> and credentials from process.env.
  Object.assign(process.env, stack.env);
  const log = new CaptureLog();
  const metrics = new CaptureMetrics();
  const runtime = buildRuntime(
    {
      ...stack.env,
      ALLOWED_ORIGINS: APP_ORIGIN,
      LEASE_MS: '3000',
      UPSTREAM_TIMEOUT_MS: '1500',
      WAIT_BUDGET_MS: '2500',
      ...options.env,
    },
    { log: options.log ?? log, metrics, ...options.overrides },
  );
  const service = {
    credentials: generateLocalCredentials(),
    region: 'us-east-1',
    invocations: 0,
  };
  const serviceHandler = createServiceHandler(runtime);
  const countedService: HttpHandler = (event, context) => {
    service.invocations++;
    return serviceHandler(event, context);
  };
  const verifier = new SigV4Verifier(service);
  const server = await startLocalServer({
    routes: {
      '/refresh': createRefreshHandler(runtime),
      '/session': createSessionHandler(runtime),
    },
    keyedRoutes: SERVICE_ROUTE_KEYS.map((routeKey) => ({
      routeKey,
      handler: countedService,
      iam: true,
    })),
    iamAuthorizer: (request) => verifier.verify(request),
  });
  const salesforce = stack.salesforce;
  if (!salesforce) throw new Error('the harness needs the fake Salesforce');

  const itemKey = (handle: string) => ({ pk: { S: `session#${sessionKeyOf(handle)}` } });

  return {
    stack,
    runtime,
    server,
    log,
    metrics,
    service: Object.assign(service, {
      fetch: (path: string, options: Partial<SignedFetchOptions> = {}) =>
        signedFetch(`${server.url}${path}`, {
          credentials: service.credentials,
          region: service.region,
          ...options,
        }),
    }),
    seedSession(options) {
      return seedSession(runtime, salesforce, options);
    },
    refresh(handle, body, headers = {}) {
      return fetch(`${server.url}/refresh`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${handle}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
          ...headers,
        },
        ...(body === undefined
          ? {}
          : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
      });
    },
    async stored(handle) {
      const record = await runtime.store.get(sessionKeyOf(handle));
      if (!record) return undefined;
      return {
        version: record.version,
        tokens: await runtime.vault.open(record.sealed, record.sessionKey, record.version),
      };
    },
    async patchItem(handle, attributes) {
      const names: Record<string, string> = {};
      const values: Record<string, { N: string } | { S: string } | { B: Uint8Array }> = {};
      const sets = Object.entries(attributes).map(([name, value], index) => {
        names[`#a${index}`] = name;
        values[`:v${index}`] = value;
        return `#a${index} = :v${index}`;
      });
      await stack.dynamodb.send(
        new UpdateItemCommand({
          TableName: stack.tableName,
          Key: itemKey(handle),
          UpdateExpression: `SET ${sets.join(', ')}`,
          ExpressionAttributeNames: names,
          ExpressionAttributeValues: values,
        }),
      );
    },
    async rawItem(handle) {
      const result = await stack.dynamodb.send(
        new GetItemCommand({
          TableName: stack.tableName,
          Key: itemKey(handle),
          ConsistentRead: true,
        }),
      );
      return result.Item;
    },
    async close() {
      await server.close();
      await stack.close();
    },
  };
}
