/**
 * Drives each function's handler with its sample event from `events/` (the files that
 * `sam local invoke -e` uses), so the samples cannot rot: each must still parse, pass the
 * route's request checks and reach the point where the function calls AWS. Every AWS
 * endpoint points at a closed loopback port, so those calls fail at once and the contract
 * says `503 temporarily_unavailable`; nothing leaves the machine.
 */
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import type { APIGatewayProxyEventV2, Context } from 'aws-lambda';
import { beforeAll, describe, expect, it } from 'vitest';
import type { HttpHandler } from '../../functions/http/route.ts';
import { dummyFunctionEnv } from './function-env.ts';
import { repoRoot } from './synth.ts';

interface Case {
  event: string;
  entry: string;
  routeKey: string;
  /** Statuses the contract allows for this event when AWS cannot be reached. */
  statuses: Record<number, string | null>;
  /** The error comes as the HTML page (its JSON code is not in the body). */
  html?: boolean;
}

const CASES: Case[] = [
  {
    event: 'refresh',
    entry: 'functions/refresh.ts',
    routeKey: 'ANY /refresh',
    statuses: { 503: 'temporarily_unavailable' },
  },
  {
    event: 'refresh-cookie',
    entry: 'functions/refresh.ts',
    routeKey: 'ANY /refresh',
    statuses: { 503: 'temporarily_unavailable' },
  },
  {
    event: 'login',
    entry: 'functions/login.ts',
    routeKey: 'ANY /login',
    statuses: { 503: 'temporarily_unavailable' },
  },
  {
    event: 'callback',
    entry: 'functions/callback.ts',
    routeKey: 'ANY /callback',
    statuses: { 503: 'temporarily_unavailable' },
    // A browser's redirect (`Accept: text/html`) with an unknown transaction gets a page.
    html: true,
  },
  {
    event: 'logout',
    entry: 'functions/logout.ts',
    routeKey: 'ANY /logout',
    statuses: { 204: null, 503: 'temporarily_unavailable' },
  },
  {
    event: 'token',
    entry: 'functions/token.ts',
    routeKey: 'ANY /token',
    statuses: { 503: 'temporarily_unavailable' },
  },
  {
    event: 'service-token',
    entry: 'functions/service.ts',
    routeKey: 'POST /connections/{connection_id}/token',
    statuses: { 503: 'temporarily_unavailable' },
  },
  {
    event: 'service-list',
    entry: 'functions/service.ts',
    routeKey: 'GET /connections',
    statuses: { 503: 'temporarily_unavailable' },
  },
  {
    event: 'service-end-user',
    entry: 'functions/service.ts',
    routeKey: 'DELETE /connections',
    statuses: { 503: 'temporarily_unavailable' },
  },
  {
    event: 'not-found',
    entry: 'functions/not-found.ts',
    routeKey: '$default',
    statuses: { 404: 'not_found' },
  },
];

const context = {
  awsRequestId: '6bc28136-a1f3-4b5e-9c1d-0123456789ab',
  functionName: 'token-broker-events',
  getRemainingTimeInMillis: () => 12_000,
} as unknown as Context;

const readEvent = (name: string) =>
  JSON.parse(
    readFileSync(join(repoRoot, 'events', `${name}.json`), 'utf8'),
  ) as APIGatewayProxyEventV2;

describe('Sample events: events/*.json', () => {
  beforeAll(async () => {
    const port = await closedPort();
    for (const [name, value] of Object.entries(dummyFunctionEnv(port))) {
      if (name !== 'PATH') process.env[name] = value;
    }
  });

  it.each(CASES)(
    '$event.json is an HTTP API v2 event for route $routeKey',
    ({ event, routeKey }) => {
      const sample = readEvent(event);
      expect(sample).toMatchObject({
        version: '2.0',
        routeKey,
        requestContext: { routeKey, stage: '$default', http: { path: sample.rawPath } },
      });
      expect(typeof sample.requestContext.requestId).toBe('string');
    },
  );

  for (const { event, entry, statuses, html } of CASES) {
    it(`${entry} answers ${event}.json within the contract`, async () => {
      // Arrange
      const { handler } = (await import(join(repoRoot, entry))) as { handler: HttpHandler };

      // Act
      const response = await handler(readEvent(event), context);

      // Assess
      const status = response.statusCode ?? 0;
      expect(Object.keys(statuses).map(Number), `status ${status}: ${response.body}`).toContain(
        status,
      );
      expect(response.headers?.['cache-control']).toBe('no-store');
      const code = statuses[status];
      if (code && html) {
        expect(response.headers?.['content-type']).toMatch(/^text\/html/);
        expect(response.body).toContain('href="/login"');
      } else if (code) {
        const body = JSON.parse(response.body ?? '') as Record<string, unknown>;
        expect(body.error).toBe(code);
        expect(typeof body.error_description).toBe('string');
      }
    });
  }
});

/** A loopback port with nothing listening: connections are refused at once. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}
