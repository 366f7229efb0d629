import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { APP_ORIGIN, type BrokerHarness, startBrokerHarness } from '../support/broker-harness.ts';
import { openApiProblems } from '../support/openapi.ts';

/** Real responses of the routes, checked against docs/openapi.yaml. */
describe('docs/openapi.yaml', () => {
  let broker: BrokerHarness;

  beforeAll(async () => {
    broker = await startBrokerHarness({ salesforce: { rotation: true } });
  });

  afterAll(async () => {
    await broker?.close();
  });

  const post = (path: string, headers: Record<string, string>, body?: string) =>
    fetch(`${broker.server.url}${path}`, { method: 'POST', headers, ...(body ? { body } : {}) });

  it('describes every /refresh answer', async () => {
    const fake = broker.stack.salesforce;
    if (!fake) throw new Error('no fake');
    const session = await broker.seedSession();
    const bearer = { authorization: `Bearer ${session.handle}` };
    const responses: Response[] = [
      await post('/refresh', bearer),
      await post('/refresh', { ...bearer, 'content-type': 'application/json' }, '{"version":"x"}'),
      await post('/refresh', {}),
      await post('/refresh', { cookie: `__Host-tb-session=${session.handle}` }),
      await fetch(`${broker.server.url}/refresh`),
      await post('/refresh', bearer, 'x'.repeat(20_000)),
    ];
    fake.inject({ endpoint: 'token', kind: 'maintenance' });
    responses.push(
      await post('/refresh', { ...bearer, 'content-type': 'application/json' }, '{"version":2}'),
    );
    fake.inject({
      endpoint: 'token',
      kind: 'error',
      error: 'invalid_client',
      description: 'x',
      times: 2,
    });
    responses.push(
      await post('/refresh', { ...bearer, 'content-type': 'application/json' }, '{"version":2}'),
    );

    const statuses = responses.map((response) => response.status);
    const problems = await Promise.all(
      responses.map((r) =>
        openApiProblems(r.url.endsWith('/refresh') ? 'POST' : 'GET', '/refresh', r),
      ),
    );

    expect(statuses).toEqual([200, 400, 401, 403, 405, 413, 503, 502]);
    expect(problems.slice(0, 4).concat(problems.slice(5))).toEqual(Array(7).fill([]));
  });

  it('describes every /session answer', async () => {
    const session = await broker.seedSession();
    const get = (headers: Record<string, string>) =>
      fetch(`${broker.server.url}/session`, { headers });
    const responses = [
      await get({ authorization: `Bearer ${session.handle}` }),
      await get({ cookie: `__Host-tb-session=${session.handle}`, 'x-csrf': '1' }),
      await get({}),
      await get({ cookie: `__Host-tb-session=${session.handle}` }),
      await post('/session', { authorization: `Bearer ${session.handle}` }),
    ];

    const statuses = responses.map((response) => response.status);
    // The 405 is documented on the route's one operation.
    const problems = await Promise.all(responses.map((r) => openApiProblems('GET', '/session', r)));

    expect(statuses).toEqual([200, 200, 401, 403, 405]);
    expect(problems).toEqual(Array(5).fill([]));
  });

  it('describes the CORS preflight of /refresh and /logout', async () => {
    const preflight = (path: string, origin: string) =>
      fetch(`${broker.server.url}${path}`, {
        method: 'OPTIONS',
        headers: { origin, 'access-control-request-method': 'POST' },
      });

    const answers = [
      await preflight('/refresh', APP_ORIGIN),
      await preflight('/refresh', 'https://evil.example'),
    ];
    const problems = await Promise.all(
      answers.map((r) => openApiProblems('OPTIONS', '/refresh', r)),
    );

    expect(answers.map((r) => r.status)).toEqual([204, 403]);
    expect(problems).toEqual([[], []]);
  });

  it('catches a response that breaks the document', async () => {
    const broken = new Response(JSON.stringify({ access_token: 'x' }), {
      status: 200,
      headers: { 'content-type': 'application/json', 'cache-control': 'no-store' },
    });

    const problems = await openApiProblems('POST', '/refresh', broken);

    expect(problems.join()).toContain("must have required property 'instance_url'");
  });

  it('describes every service API answer', async () => {
    // Prepare
    const session = await broker.seedSession({ committedAgoMs: 60_000 });
    const orgId = broker.stack.salesforce?.orgId ?? '';
    const id = session.connectionId;
    const service = broker.service;
    const cases: [string, string, Response][] = [
      [
        'POST',
        '/connections/{connection_id}/token',
        await service.fetch(`/connections/${id}/token`, { method: 'POST' }),
      ],
      [
        'POST',
        '/connections/{connection_id}/token',
        await service.fetch(`/connections/${id}/token`, { method: 'POST', body: '[]' }),
      ],
      [
        'POST',
        '/connections/{connection_id}/token',
        await service.fetch('/connections/con_unknown/token', { method: 'POST' }),
      ],
      [
        'POST',
        '/connections/{connection_id}/token',
        await fetch(`${broker.server.url}/connections/${id}/token`, { method: 'POST' }),
      ],
      ['GET', '/connections/{connection_id}', await service.fetch(`/connections/${id}`)],
      ['GET', '/connections/{connection_id}', await service.fetch('/connections/nope')],
      ['GET', '/connections', await service.fetch(`/connections?organization_id=${orgId}&limit=1`)],
      ['GET', '/connections', await service.fetch('/connections?limit=1')],
      [
        'DELETE',
        '/connections',
        await service.fetch(`/connections?organization_id=${orgId}&user_id=005xx000001Sv6AAAS`, {
          method: 'DELETE',
        }),
      ],
      ['DELETE', '/connections', await service.fetch('/connections', { method: 'DELETE' })],
      [
        'DELETE',
        '/connections/{connection_id}',
        await service.fetch(`/connections/${id}`, { method: 'DELETE' }),
      ],
      // Ended by the DELETE just above: its tombstone.
      ['GET', '/connections/{connection_id}', await service.fetch(`/connections/${id}`)],
    ];

    // Act
    const problems = await Promise.all(
      cases.map(([method, path, response]) => openApiProblems(method, path, response)),
    );

    // Assert
    expect(cases.map(([, , response]) => response.status)).toEqual([
      200, 400, 404, 403, 200, 404, 200, 400, 200, 400, 204, 200,
    ]);
    expect(problems).toEqual(Array(cases.length).fill([]));
  });
});
