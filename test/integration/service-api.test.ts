/**
 * The service API over real HTTP on loopback (README "Backend jobs: the service API"):
 * SigV4 verified as API Gateway's `AWS_IAM` authorization does, then the service function
 * against dynalite, the KMS and Secrets Manager emulators and the fake Salesforce.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { newConnectionId } from '../../functions/broker/connection.ts';
import { newSalesforceId } from '../../local/fake-salesforce/ids.ts';
import { LOCAL_CALLER_ARN } from '../../local/sigv4-verifier.ts';
import { type BrokerHarness, readJson, startBrokerHarness } from '../support/broker-harness.ts';

describe('Service API', () => {
  let broker: BrokerHarness;

  beforeAll(async () => {
    broker = await startBrokerHarness({ salesforce: { rotation: true, tokenLatencyMs: 150 } });
  });

  afterAll(async () => {
    await broker?.close();
  });

  beforeEach(() => {
    broker.stack.salesforce?.resetCalls();
    broker.log.entries.length = 0;
  });

  const fake = () => {
    const salesforce = broker.stack.salesforce;
    if (!salesforce) throw new Error('no fake Salesforce');
    return salesforce;
  };

  describe('POST /connections/{connection_id}/token', () => {
    it('shares one lease with /refresh: 50 parallel calls, bearer, cookie and service, 1 upstream call', async () => {
      // Prepare: a connection whose token is past the reuse window
      const session = await broker.seedSession({ committedAgoMs: 60_000 });
      const calls = Array.from({ length: 50 }, (_, index) => {
        switch (index % 3) {
          case 0:
            return () => broker.refresh(session.handle);
          case 1:
            return () =>
              fetch(`${broker.server.url}/refresh`, {
                method: 'POST',
                headers: { cookie: `__Host-tb-session=${session.handle}`, 'x-csrf': '1' },
              });
          default:
            return () =>
              broker.service.fetch(`/connections/${session.connectionId}/token`, {
                method: 'POST',
              });
        }
      });

      // Act
      const responses = await Promise.all(calls.map((call) => call()));
      const bodies = await Promise.all(responses.map(readJson));

      // Assert
      expect(responses.map((response) => response.status)).toEqual(Array(50).fill(200));
      expect(fake().calls.tokenRefresh).toBe(1);
      expect(new Set(bodies.map((body) => body.access_token)).size).toBe(1);
      expect(new Set(bodies.map((body) => body.version))).toEqual(new Set([2]));
      expect(bodies[2]).toMatchObject({ token_type: 'Bearer', instance_url: fake().url });
      expect(responses[2]?.headers.get('cache-control')).toBe('no-store');
    });

    it('honours the version hint like /refresh: an older hint gets the stored token, no upstream call', async () => {
      // Prepare
      const session = await broker.seedSession({ committedAgoMs: 60_000 });
      const first = await readJson(
        await broker.service.fetch(`/connections/${session.connectionId}/token`, {
          method: 'POST',
          body: JSON.stringify({ version: 1 }),
        }),
      );
      fake().resetCalls();

      // Act
      const again = await broker.service.fetch(`/connections/${session.connectionId}/token`, {
        method: 'POST',
        body: JSON.stringify({ version: 1 }),
      });

      // Assert
      expect(first.version).toBe(2);
      expect(await readJson(again)).toMatchObject({
        access_token: first.access_token,
        version: 2,
      });
      expect(fake().calls.tokenRefresh).toBe(0);
    });

    it.each([
      ['an unknown connection', () => newConnectionId()],
      ['a malformed id (no hint at the id shape)', () => 'not-a-connection'],
    ])('answers 404 not_found for %s', async (_name, id) => {
      // Act
      const response = await broker.service.fetch(`/connections/${id()}/token`, {
        method: 'POST',
      });

      // Assert
      expect(response.status).toBe(404);
      expect((await readJson(response)).error).toBe('not_found');
      expect(fake().calls.tokenRefresh).toBe(0);
    });

    it('answers 400 invalid_request for a bad body', async () => {
      // Prepare
      const session = await broker.seedSession();

      // Act
      const response = await broker.service.fetch(`/connections/${session.connectionId}/token`, {
        method: 'POST',
        body: '{"version": -1}',
      });

      // Assert
      expect(response.status).toBe(400);
      expect((await readJson(response)).error).toBe('invalid_request');
    });
  });

  describe('GET /connections/{connection_id}', () => {
    it("answers the connection's metadata, the same JSON as /session, never a token", async () => {
      // Prepare
      const session = await broker.seedSession();
      const own = await readJson(
        await fetch(`${broker.server.url}/session`, {
          headers: { authorization: `Bearer ${session.handle}` },
        }),
      );

      // Act
      const response = await broker.service.fetch(`/connections/${session.connectionId}`);
      const text = await response.text();

      // Assert
      expect(response.status).toBe(200);
      expect(JSON.parse(text)).toEqual(own);
      expect(JSON.parse(text)).toMatchObject({
        connection_id: session.connectionId,
        organization_id: fake().orgId,
        status: 'active',
      });
      expect(text).not.toContain(session.accessToken);
      expect(text).not.toContain(session.refreshToken);
    });

    it('answers 404 not_found for an unknown id', async () => {
      // Act
      const response = await broker.service.fetch(`/connections/${newConnectionId()}`);

      // Assert
      expect(response.status).toBe(404);
      expect((await readJson(response)).error).toBe('not_found');
    });
  });

  describe('GET /connections', () => {
    it('pages through 120 connections of one organization with next_cursor', async () => {
      // Prepare: a fresh org of 120 connections (the fake's org id, another org's copies)
      const orgId = fake().orgId;
      const seeded = new Set<string>();
      for (let batch = 0; batch < 12; batch++) {
        const sessions = await Promise.all(Array.from({ length: 10 }, () => broker.seedSession()));
        for (const session of sessions) seeded.add(session.connectionId);
      }

      // Act
      const pages: { connections: { connection_id: string }[]; next_cursor: string | null }[] = [];
      let cursor: string | null = null;
      do {
        const query = new URLSearchParams({ organization_id: orgId, limit: '50' });
        if (cursor) query.set('cursor', cursor);
        const response = await broker.service.fetch(`/connections?${query}`);
        expect(response.status).toBe(200);
        const page = (await response.json()) as (typeof pages)[number];
        pages.push(page);
        cursor = page.next_cursor;
      } while (cursor !== null && pages.length < 10);

      // Assert: every seeded connection once (the org may hold earlier tests' too)
      const listed = pages.flatMap((page) => page.connections.map((c) => c.connection_id));
      expect(new Set(listed).size).toBe(listed.length);
      expect([...seeded].every((id) => listed.includes(id))).toBe(true);
      expect(pages.slice(0, -1).every((page) => page.connections.length === 50)).toBe(true);
      expect(pages.at(-1)?.next_cursor).toBeNull();
    }, 60_000);

    it('filters by user_id, and takes the 15-character form of the ids', async () => {
      // Prepare
      const userId = newSalesforceId('005');
      const mine = await broker.seedSession({ userId });
      await broker.seedSession();
      const query = new URLSearchParams({
        organization_id: fake().orgId.slice(0, 15),
        user_id: userId.slice(0, 15),
      });

      // Act
      const response = await broker.service.fetch(`/connections?${query}`);

      // Assert
      expect(response.status).toBe(200);
      expect(await readJson(response)).toEqual({
        connections: [
          expect.objectContaining({ connection_id: mine.connectionId, user_id: userId }),
        ],
        next_cursor: null,
      });
    });

    it.each([
      ['no organization_id', ''],
      ['a malformed organization_id', 'organization_id=00Dnot-an-id'],
      ['an 18-character id with a wrong checksum', 'organization_id=00Dxx0000001gPLAAA'],
      ['a user id in organization_id', 'organization_id=005xx000001Sv6AAAS'],
      ['limit 0', 'organization_id=00Dxx0000001gPLEAY&limit=0'],
      ['limit 101', 'organization_id=00Dxx0000001gPLEAY&limit=101'],
      ['limit not a number', 'organization_id=00Dxx0000001gPLEAY&limit=ten'],
      ['a foreign cursor', 'organization_id=00Dxx0000001gPLEAY&cursor=eyJ4IjoxfQ'],
      ['a malformed cursor', 'organization_id=00Dxx0000001gPLEAY&cursor=%2F%2F'],
      [
        'a repeated organization_id',
        'organization_id=00Dxx0000001gPLEAY&organization_id=00Dxx0000001gPLEAY',
      ],
    ])('answers 400 invalid_request for %s', async (_name, query) => {
      // Act
      const response = await broker.service.fetch(`/connections${query ? `?${query}` : ''}`);

      // Assert
      expect(response.status).toBe(400);
      expect((await readJson(response)).error).toBe('invalid_request');
    });
  });

  describe('DELETE /connections/{connection_id}', () => {
    it('revokes the grant at Salesforce and deletes the connection; idempotent', async () => {
      // Prepare
      const session = await broker.seedSession();

      // Act
      const first = await broker.service.fetch(`/connections/${session.connectionId}`, {
        method: 'DELETE',
      });
      const second = await broker.service.fetch(`/connections/${session.connectionId}`, {
        method: 'DELETE',
      });
      const after = await broker.service.fetch(`/connections/${session.connectionId}`);
      const refresh = await broker.refresh(session.handle);

      // Assert
      expect([first.status, second.status]).toEqual([204, 204]);
      expect(fake().calls.revoke).toBe(1);
      expect(fake().isRefreshTokenActive(session.refreshToken)).toBe(false);
      expect(after.status).toBe(200);
      expect(await after.json()).toMatchObject({ status: 'ended', ended_reason: 'service_api' });
      expect(refresh.status).toBe(401);
      expect(await refresh.json()).toMatchObject({ error: 'reauthentication_required' });
    });

    it('answers 204 for an unknown or malformed id, with no upstream call', async () => {
      // Act
      const unknown = await broker.service.fetch(`/connections/${newConnectionId()}`, {
        method: 'DELETE',
      });
      const malformed = await broker.service.fetch('/connections/nope', { method: 'DELETE' });

      // Assert
      expect([unknown.status, malformed.status]).toEqual([204, 204]);
      expect(fake().calls.revoke).toBe(0);
    });
  });

  describe('DELETE /connections (offboarding)', () => {
    it("ends every connection of a user, revoking each grant, and leaves others' alone", async () => {
      // Prepare
      const leaving = newSalesforceId('005');
      const staying = newSalesforceId('005');
      const gone = await Promise.all(
        Array.from({ length: 3 }, () => broker.seedSession({ userId: leaving })),
      );
      const kept = await broker.seedSession({ userId: staying });
      const query = new URLSearchParams({ organization_id: fake().orgId, user_id: leaving });

      // Act
      const response = await broker.service.fetch(`/connections?${query}`, { method: 'DELETE' });
      const again = await broker.service.fetch(`/connections?${query}`, { method: 'DELETE' });

      // Assert
      expect(response.status).toBe(200);
      expect(await readJson(response)).toEqual({ ended: 3, next_cursor: null });
      expect(await readJson(again)).toEqual({ ended: 0, next_cursor: null });
      expect(fake().calls.revoke).toBe(3);
      expect(gone.every((session) => !fake().isRefreshTokenActive(session.refreshToken))).toBe(
        true,
      );
      expect(fake().isRefreshTokenActive(kept.refreshToken)).toBe(true);
      expect((await broker.refresh(kept.handle)).status).toBe(200);
    });

    it('answers 400 invalid_request without organization_id', async () => {
      // Act
      const response = await broker.service.fetch('/connections', { method: 'DELETE' });

      // Assert
      expect(response.status).toBe(400);
      expect((await readJson(response)).error).toBe('invalid_request');
      expect(fake().calls.revoke).toBe(0);
    });
  });

  describe('SigV4 (API Gateway AWS_IAM authorization)', () => {
    const other = { accessKeyId: 'AKIAOTHERKEY000000000', secretAccessKey: 'other-secret' };

    it.each([
      [
        'unsigned',
        async (path: string) => fetch(`${broker.server.url}${path}`, { method: 'POST' }),
      ],
      [
        'signed with another access key',
        (path: string) =>
          broker.service.fetch(path, {
            method: 'POST',
            credentials: { ...other, secretAccessKey: broker.service.credentials.secretAccessKey },
          }),
      ],
      [
        'signed with a wrong secret',
        (path: string) =>
          broker.service.fetch(path, {
            method: 'POST',
            credentials: { ...broker.service.credentials, secretAccessKey: 'wrong' },
          }),
      ],
      [
        'signed 6 minutes ago',
        (path: string) =>
          broker.service.fetch(path, {
            method: 'POST',
            signingDate: new Date(Date.now() - 6 * 60_000),
          }),
      ],
      [
        'signed over a different body',
        (path: string) =>
          broker.service.fetch(path, {
            method: 'POST',
            body: '{"version": 7}',
            signedBody: '{"version": 1}',
          }),
      ],
      [
        'signed for another region',
        (path: string) =>
          broker.service.fetch(path, { method: 'POST', signingRegion: 'eu-west-1' }),
      ],
      [
        'signed for another service',
        (path: string) => broker.service.fetch(path, { method: 'POST', signingService: 'lambda' }),
      ],
    ])(
      'answers API Gateway\'s 403 {"message":"Forbidden"} when %s, with no store or upstream call',
      async (_name, send) => {
        // Prepare
        const session = await broker.seedSession({ committedAgoMs: 60_000 });
        const invocations = broker.service.invocations;

        // Act
        const response = await send(`/connections/${session.connectionId}/token`);

        // Assert
        expect(response.status).toBe(403);
        expect(await response.json()).toEqual({ message: 'Forbidden' });
        expect(broker.service.invocations).toBe(invocations);
        expect(fake().calls.tokenRefresh).toBe(0);
        expect((await broker.stored(session.handle))?.version).toBe(1);
      },
    );

    it('logs the audit line: who called, on which connection, never a token', async () => {
      // Prepare
      const session = await broker.seedSession({ committedAgoMs: 60_000 });

      // Act
      const response = await broker.service.fetch(`/connections/${session.connectionId}/token`, {
        method: 'POST',
      });
      const token = (await readJson(response)).access_token as string;

      // Assert
      const audit = broker.log.entries.filter((entry) => entry.attributes.event === 'service_call');
      expect(audit).toEqual([
        expect.objectContaining({
          level: 'info',
          attributes: expect.objectContaining({
            caller: LOCAL_CALLER_ARN,
            connection: session.connectionId,
            routeKey: 'POST /connections/{connection_id}/token',
            action: 'token',
          }),
        }),
      ]);
      const text = broker.log.text();
      expect(text).not.toContain(token);
      expect(text).not.toContain(session.refreshToken);
      expect(text).not.toContain(session.handle);
    });
  });
});
