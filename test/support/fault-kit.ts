import { createServer, request as httpRequest, type Server } from 'node:http';
import { type AddressInfo, createServer as createTcpServer, type Socket } from 'node:net';
import { sessionKeyOf } from '../../functions/broker/session-handle.ts';
import { createRefreshHandler } from '../../functions/routes/refresh.ts';
import { buildRuntime, type Runtime } from '../../functions/runtime.ts';
import type { DynamoDbFaultProxy } from '../../local/dynamodb-fault-proxy.ts';
import type { FakeSalesforce } from '../../local/fake-salesforce.ts';
import { type LocalServer, startLocalServer } from '../../local/lambda-http.ts';
import { APP_ORIGIN, type BrokerHarness, type SeededSession } from './broker-harness.ts';
import { CaptureLog, CaptureMetrics } from './capture-log.ts';

/** A second broker on the same local stack, with its own settings and a cold runtime. */
export interface ExtraBroker {
  runtime: Runtime;
  log: CaptureLog;
  metrics: CaptureMetrics;
  refresh(handle: string, body?: unknown): Promise<Response>;
  close(): Promise<void>;
}

/**
 * Serves `/refresh` from a fresh runtime on `broker`'s stack with `env` laid over the
 * harness settings: a Salesforce URL on a closed port, a shorter upstream timeout, or
 * simply a cold secret cache.
 */
export async function extraBroker(
  broker: BrokerHarness,
  env: Record<string, string> = {},
): Promise<ExtraBroker> {
  const log = new CaptureLog();
  const metrics = new CaptureMetrics();
  const runtime = buildRuntime(
    {
      ...broker.stack.env,
      ALLOWED_ORIGINS: APP_ORIGIN,
      LEASE_MS: '3000',
      UPSTREAM_TIMEOUT_MS: '1500',
      WAIT_BUDGET_MS: '2500',
      ...env,
    },
    { log, metrics },
  );
  const server: LocalServer = await startLocalServer({
    routes: { '/refresh': createRefreshHandler(runtime) },
  });
  return {
    runtime,
    log,
    metrics,
    refresh: (handle, body) =>
      fetch(`${server.url}/refresh`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${handle}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      }),
    close: () => server.close(),
  };
}

/** A loopback URL where nothing listens (connection refused). */
export async function closedPortUrl(): Promise<string> {
  const server = createTcpServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `http://127.0.0.1:${port}`;
}

/** A TCP server that accepts connections and never answers (a read timeout). */
export async function startSilentServer(): Promise<{ url: string; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = createTcpServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
    socket.resume();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

/**
 * An HTTP proxy that holds every request for `delayMs` and then forwards it to `target`
 * whether or not the client is still there: Salesforce processing a request the broker
 * already gave up on. `forwarded` counts requests that reached the target.
 */
export async function startSlowProxy(
  target: string,
  delayMs: number,
): Promise<{ url: string; forwarded: number; settled(): Promise<void>; close(): Promise<void> }> {
  const upstream = new URL(target);
  const inFlight = new Set<Promise<void>>();
  let forwarded = 0;
  const server: Server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const done = (async () => {
        await new Promise((resolve) => setTimeout(resolve, delayMs));
        const body = Buffer.concat(chunks);
        const answer = await new Promise<{ status: number; type: string; body: Buffer }>(
          (resolve, reject) => {
            const outgoing = httpRequest(
              {
                host: upstream.hostname,
                port: upstream.port,
                method: request.method,
                path: request.url,
                headers: { ...request.headers, host: upstream.host },
              },
              (reply) => {
                const parts: Buffer[] = [];
                reply.on('data', (part: Buffer) => parts.push(part));
                reply.on('end', () =>
                  resolve({
                    status: reply.statusCode ?? 502,
                    type: String(reply.headers['content-type'] ?? ''),
                    body: Buffer.concat(parts),
                  }),
                );
              },
            );
            outgoing.on('error', reject);
            outgoing.end(body);
          },
        );
        forwarded++;
        if (!response.destroyed) {
          response.writeHead(answer.status, { 'content-type': answer.type });
          response.end(answer.body);
        }
      })().catch(() => {});
      inFlight.add(done);
      void done.finally(() => inFlight.delete(done));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    get forwarded() {
      return forwarded;
    },
    settled: async () => {
      await Promise.all([...inFlight]);
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** Polls `predicate` every 5 ms until it holds or `timeoutMs` passes. */
export async function waitUntil(predicate: () => boolean, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > end) throw new Error('waitUntil: condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** What the store and the fake say about a seeded session after a fault. */
export async function sessionState(
  broker: BrokerHarness,
  fake: FakeSalesforce,
  session: SeededSession,
): Promise<{
  exists: boolean;
  version?: number;
  keepsSeededToken?: boolean;
  storedTokenActive?: boolean;
  leaseHeld?: boolean;
}> {
  const record = await broker.runtime.store.get(sessionKeyOf(session.handle));
  if (!record) return { exists: false };
  const tokens = await broker.runtime.vault.open(record.sealed, record.sessionKey, record.version);
  return {
    exists: true,
    version: record.version,
    keepsSeededToken: tokens.refreshToken === session.refreshToken,
    storedTokenActive: fake.isRefreshTokenActive(tokens.refreshToken),
    leaseHeld: record.leaseUntil !== undefined && record.leaseUntil > Date.now(),
  };
}

/** The harness's fake Salesforce (the fault suites always start one). */
export function fakeOf(broker: BrokerHarness): FakeSalesforce {
  const salesforce = broker.stack.salesforce;
  if (!salesforce) throw new Error('no fake Salesforce');
  return salesforce;
}

/** The harness's DynamoDB fault proxy (started with `dynamodbFaultProxy: true`). */
export function proxyOf(broker: BrokerHarness): DynamoDbFaultProxy {
  const proxy = broker.stack.dynamodbFaults;
  if (!proxy) throw new Error('no DynamoDB fault proxy');
  return proxy;
}

/**
 * Between two fault tests: no fault left queued anywhere (Salesforce, DynamoDB, KMS,
 * Secrets Manager), fresh call counters, and empty captured logs and metrics.
 */
export function resetFaultsAndCaptures(broker: BrokerHarness): void {
  broker.stack.dynamodbFaults?.clearFaults();
  fakeOf(broker).clearFaults();
  fakeOf(broker).resetCalls();
  broker.stack.kms.clearFaults();
  broker.stack.secretsManager.clearFaults();
  broker.log.entries.length = 0;
  broker.metrics.counts.clear();
}
