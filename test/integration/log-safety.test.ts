import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createLogger } from '../../functions/http/observability.ts';
import { type BrokerHarness, readJson, startBrokerHarness } from '../support/broker-harness.ts';

/**
 * The production logger (Powertools, JSON lines on stdout) with canary values: whatever
 * the flow, no line may carry a token, the client secret or a session handle.
 */
describe('Production logs', () => {
  let broker: BrokerHarness;
  const lines: string[] = [];
  const clientSecret = 'canary-client-secret-8d1f';

  beforeAll(async () => {
    broker = await startBrokerHarness({
      salesforce: { clientSecret, rotation: true },
      log: createLogger('token-broker-test'),
    });
    // the stack seeds its secret from the fake's options
    broker.stack.secretsManager.putSecret(
      broker.stack.secretId,
      JSON.stringify({ client_id: 'fake-client-id', client_secret: clientSecret }),
    );
    // Powertools writes INFO to stdout and WARN/ERROR to stderr: capture both, print neither.
    for (const stream of [process.stdout, process.stderr]) {
      vi.spyOn(stream, 'write').mockImplementation((chunk: string | Uint8Array) => {
        lines.push(String(chunk));
        return true;
      });
    }
  });

  afterAll(async () => {
    vi.restoreAllMocks();
    await broker?.close();
  });

  it('carry no canary value across success, failure and re-login flows', async () => {
    // Prepare
    const fake = broker.stack.salesforce;
    if (!fake) throw new Error('no fake');
    const session = await broker.seedSession();
    const seen: string[] = [
      session.handle,
      session.refreshToken,
      session.accessToken,
      clientSecret,
    ];

    // Act: a refresh, a 503, an invalid_client, an integrity failure, an invalid_grant
    const first = await readJson(await broker.refresh(session.handle));
    seen.push(first.access_token);
    const stored = await broker.stored(session.handle);
    if (stored) seen.push(stored.tokens.refreshToken);
    fake.inject({ endpoint: 'token', kind: 'maintenance' });
    await broker.refresh(session.handle, { version: first.version });
    fake.inject({
      endpoint: 'token',
      kind: 'error',
      error: 'invalid_client',
      description: 'invalid client credentials',
      times: 2,
    });
    await broker.refresh(session.handle, { version: first.version });
    await broker.refresh(session.handle, {}, { cookie: `__Host-tb-session=${session.handle}` });
    const described = await fetch(`${broker.server.url}/session`, {
      headers: { authorization: `Bearer ${session.handle}` },
    });
    expect(described.status).toBe(200);
    fake.inject({
      endpoint: 'token',
      kind: 'error',
      error: 'invalid_grant',
      description: 'expired access/refresh token',
    });
    await broker.refresh(session.handle, { version: first.version });

    // Assert
    const output = lines.join('');
    expect(output).toContain('"level":"WARN"');
    expect(output).toContain('reauthentication_required');
    expect(output).toContain('session described');
    for (const line of output.split('\n').filter(Boolean)) {
      expect(() => JSON.parse(line)).not.toThrow();
    }
    for (const value of seen) {
      expect(output).not.toContain(value);
    }
  });
});
