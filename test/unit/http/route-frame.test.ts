import { describe, expect, it } from 'vitest';
import { InvalidSessionError } from '../../../functions/broker/errors.ts';
import type { HttpRequest } from '../../../functions/http/request.ts';
import { json } from '../../../functions/http/responses.ts';
import { defineRoute, type RouteDefinition } from '../../../functions/http/route.ts';
import { handler as notFound } from '../../../functions/not-found.ts';
import { CaptureLog, CaptureMetrics } from '../../support/capture-log.ts';
import { httpEvent } from '../../support/http-event.ts';

const ORIGIN = 'https://app.example.com';

/** A route on the frame that records what it was handed and answers `200 {}`. */
function frame(definition: Partial<RouteDefinition> = {}) {
  const log = new CaptureLog();
  const metrics = new CountingMetrics();
  const handled: HttpRequest[] = [];
  const handler = defineRoute(
    { log, metrics },
    {
      name: 'probe',
      methods: ['POST'],
      handle: async (request) => {
        handled.push(request);
        return json(200, {});
      },
      ...definition,
    },
  );
  return { handler, handled, log, metrics };
}

class CountingMetrics extends CaptureMetrics {
  flushes = 0;
  override flush(): void {
    this.flushes++;
  }
}

describe('The route frame (defineRoute)', () => {
  it('hands the route the parsed request: lower-case headers, cookies, decoded body', async () => {
    const { handler, handled } = frame();

    await handler(
      httpEvent({
        method: 'post',
        path: '/probe',
        headers: { 'X-CSRF': '1' },
        cookies: ['a=1'],
        body: Buffer.from('{"version":1}').toString('base64'),
        isBase64Encoded: true,
      }),
    );

    expect(handled).toEqual([
      {
        method: 'POST',
        path: '/probe',
        headers: { 'x-csrf': '1' },
        cookies: ['a=1'],
        rawQueryString: '',
        body: '{"version":1}',
        requestId: 'unit-request',
        routeKey: '$default',
        pathParameters: {},
        iamCaller: undefined,
      },
    ]);
  });

  it('answers another method 405 with Allow before reading the body, and never calls the route', async () => {
    const { handler, handled } = frame();

    const response = await handler(
      httpEvent({ method: 'GET', path: '/probe', body: 'x'.repeat(17 * 1024) }),
    );

    expect(response.statusCode).toBe(405);
    expect(response.headers?.allow).toBe('POST');
    expect(JSON.parse(response.body ?? '').error).toBe('method_not_allowed');
    expect(handled).toEqual([]);
  });

  it('answers a body over 16 KB 413 without calling the route', async () => {
    const { handler, handled } = frame();

    const response = await handler(
      httpEvent({ method: 'POST', path: '/probe', body: 'x'.repeat(17 * 1024) }),
    );

    expect(response.statusCode).toBe(413);
    expect(handled).toEqual([]);
  });

  it('maps what the route throws through the error map and adds the error cookies', async () => {
    const { handler, log } = frame({
      errorCookies: ['__Host-x=; Max-Age=0'],
      handle: async () => {
        throw new InvalidSessionError('No session credential was sent.');
      },
    });

    const response = await handler(httpEvent({ method: 'POST', path: '/probe' }));

    expect(response.statusCode).toBe(401);
    expect(JSON.parse(response.body ?? '')).toEqual({
      error: 'invalid_session',
      error_description: 'No session credential was sent.',
    });
    expect(response.cookies).toEqual(['__Host-x=; Max-Age=0']);
    expect(log.entries).toContainEqual(
      expect.objectContaining({
        message: 'request rejected',
        attributes: expect.objectContaining({ route: 'probe', status: 401 }),
      }),
    );
  });

  it('refuses a foreign preflight 403 csrf_check_failed through the error map, with Vary: Origin', async () => {
    const { handler, handled } = frame({ cors: { allowedOrigins: [ORIGIN] } });

    const response = await handler(
      httpEvent({
        method: 'OPTIONS',
        path: '/probe',
        headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' },
      }),
    );

    expect(response.statusCode).toBe(403);
    expect(JSON.parse(response.body ?? '')).toEqual({
      error: 'csrf_check_failed',
      error_description: 'This origin may not call the broker.',
    });
    expect(response.headers).toMatchObject({ vary: 'Origin', 'cache-control': 'no-store' });
    expect(response.headers?.['access-control-allow-origin']).toBeUndefined();
    expect(handled).toEqual([]);
  });

  it('answers no preflight and adds no CORS header on a route without cors', async () => {
    const { handler } = frame();

    const response = await handler(
      httpEvent({
        method: 'OPTIONS',
        path: '/probe',
        headers: { origin: ORIGIN, 'access-control-request-method': 'POST' },
      }),
    );

    expect(response.statusCode).toBe(405);
    expect(response.headers?.vary).toBeUndefined();
    expect(response.headers?.['access-control-allow-origin']).toBeUndefined();
  });

  it('flushes the metrics after every invocation, preflights and errors included', async () => {
    const { handler, metrics } = frame({ cors: { allowedOrigins: [ORIGIN] } });

    await handler(httpEvent({ method: 'POST', path: '/probe' }));
    await handler(httpEvent({ method: 'GET', path: '/probe' }));
    await handler(
      httpEvent({
        method: 'OPTIONS',
        path: '/probe',
        headers: { origin: ORIGIN, 'access-control-request-method': 'POST' },
      }),
    );

    expect(metrics.flushes).toBe(3);
  });
});

describe('The 404 function (functions/not-found.ts)', () => {
  it('answers any path 404 not_found through the error map, with the headers of every answer', async () => {
    const response = await notFound(httpEvent({ method: 'DELETE', path: '/nowhere' }));

    expect(response).toEqual({
      statusCode: 404,
      headers: {
        'content-type': 'application/json; charset=utf-8',
        'cache-control': 'no-store',
        pragma: 'no-cache',
        'x-content-type-options': 'nosniff',
        'referrer-policy': 'no-referrer',
      },
      body: JSON.stringify({ error: 'not_found', error_description: 'No such route.' }),
    });
  });
});
