import { describe, expect, it } from 'vitest';
import { newSessionHandle, sessionKeyOf } from '../../../functions/broker/session-handle.ts';
import { createSessionHandler } from '../../../functions/routes/session.ts';
import { CaptureLog } from '../../support/capture-log.ts';
import { ORG_ID, sessionRecord, USER_ID } from '../../support/fixtures.ts';
import { httpEvent } from '../../support/http-event.ts';
import { MemorySessionStore } from '../../support/memory-session-store.ts';

const NOW = 1_800_000_000_000;
const ORIGIN = 'https://app.example.com';

function setup() {
  const store = new MemorySessionStore();
  const log = new CaptureLog();
  const handler = createSessionHandler({
    config: { allowedOrigins: [ORIGIN], invocationDeadlineMs: 5_000 },
    store,
    clock: { now: () => NOW },
    log,
    metrics: { count() {}, timing() {}, flush() {} },
  });
  return { store, handler, log };
}

async function stored(store: MemorySessionStore, overrides = {}) {
  const handle = newSessionHandle();
  await store.create(
    sessionRecord(NOW, {
      sessionKey: sessionKeyOf(handle),
      connectionId: 'con_AAAAAAAAAAAAAAAAAAAAAA',
      instanceUrl: 'https://acme.my.salesforce.com',
      scope: 'api refresh_token',
      version: 3,
      ...overrides,
    }),
  );
  return handle;
}

describe('Route: GET /session', () => {
  it('answers the connection metadata for a bearer handle, and no token', async () => {
    const { store, handler } = setup();
    const handle = await stored(store);

    const response = await handler(
      httpEvent({
        method: 'GET',
        path: '/session',
        headers: { authorization: `Bearer ${handle}` },
      }),
    );

    expect(response.statusCode).toBe(200);
    const body = JSON.parse(String(response.body));
    expect(body).toEqual({
      connection_id: 'con_AAAAAAAAAAAAAAAAAAAAAA',
      organization_id: ORG_ID,
      user_id: USER_ID,
      instance_url: 'https://acme.my.salesforce.com',
      scope: 'api refresh_token',
      status: 'active',
      created_at: new Date(NOW - 60_000).toISOString(),
      last_refreshed_at: new Date(NOW - 60_000).toISOString(),
      version: 3,
      expires_at: new Date(NOW + 7 * 86_400_000).toISOString(),
    });
    expect(response.headers?.['cache-control']).toBe('no-store');
  });

  it('answers the cookie with X-CSRF: 1 from an allowed origin', async () => {
    const { store, handler } = setup();
    const handle = await stored(store);

    const response = await handler(
      httpEvent({
        method: 'GET',
        path: '/session',
        cookies: [`__Host-tb-session=${handle}`],
        headers: { 'x-csrf': '1', origin: ORIGIN },
      }),
    );

    expect(response.statusCode).toBe(200);
    expect(response.headers?.['access-control-allow-origin']).toBe(ORIGIN);
  });

  it('refuses the cookie without X-CSRF (403) and from a foreign origin (403)', async () => {
    const { store, handler } = setup();
    const handle = await stored(store);

    const noCsrf = await handler(
      httpEvent({ method: 'GET', path: '/session', cookies: [`__Host-tb-session=${handle}`] }),
    );
    const foreign = await handler(
      httpEvent({
        method: 'GET',
        path: '/session',
        cookies: [`__Host-tb-session=${handle}`],
        headers: { 'x-csrf': '1', origin: 'https://evil.example.net' },
      }),
    );

    expect(noCsrf.statusCode).toBe(403);
    expect(foreign.statusCode).toBe(403);
  });

  it.each([
    ['unknown', async () => newSessionHandle()],
    ['expired', async (store: MemorySessionStore) => stored(store, { idleExpiresAt: NOW - 1 })],
  ])('answers 401 invalid_session for an %s handle', async (_, make) => {
    const { store, handler } = setup();
    const handle = await make(store);

    const response = await handler(
      httpEvent({
        method: 'GET',
        path: '/session',
        headers: { authorization: `Bearer ${handle}` },
      }),
    );

    expect(response.statusCode).toBe(401);
    expect(JSON.parse(String(response.body)).error).toBe('invalid_session');
  });

  it('answers a session from before connections with a null connection id', async () => {
    const { store, handler } = setup();
    const handle = await stored(store, {
      connectionId: undefined,
      instanceUrl: undefined,
      scope: undefined,
    });

    const response = await handler(
      httpEvent({
        method: 'GET',
        path: '/session',
        headers: { authorization: `Bearer ${handle}` },
      }),
    );

    expect(response.statusCode).toBe(200);
    expect(JSON.parse(String(response.body))).toMatchObject({
      connection_id: null,
      organization_id: ORG_ID,
      status: 'active',
    });
  });

  it('never logs the handle', async () => {
    const { store, handler, log } = setup();
    const handle = await stored(store);

    await handler(
      httpEvent({
        method: 'GET',
        path: '/session',
        headers: { authorization: `Bearer ${handle}` },
      }),
    );

    expect(log.text()).not.toContain(handle);
    expect(log.entries.length).toBeGreaterThan(0);
  });
});
