import jsforce from 'jsforce';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BrokerHarness, readJson, startBrokerHarness } from '../support/broker-harness.ts';

/**
 * A real Salesforce client: jsforce calls its `refreshFn` when the REST API answers
 * `401 INVALID_SESSION_ID`, then retries. Here `refreshFn` asks the broker, so the client
 * never holds a refresh token (the raw HTTP the README describes for other languages).
 */
function brokerConnection(brokerUrl: string, handle: string, start: Record<string, unknown>) {
  let version = Number(start.version);
  return new jsforce.Connection({
    instanceUrl: String(start.instance_url),
    accessToken: String(start.access_token),
    version: '65.0',
    refreshFn: (_connection, callback) => {
      fetch(`${brokerUrl}/refresh`, {
        method: 'POST',
        headers: { authorization: `Bearer ${handle}`, 'content-type': 'application/json' },
        // The version this client holds is dead: the broker refreshes it once for everyone.
        body: JSON.stringify({ version }),
      })
        .then(async (response) => {
          const body = (await response.json()) as {
            version: number;
            access_token: string;
            error?: string;
          };
          if (!response.ok) throw new Error(`broker answered ${response.status} ${body.error}`);
          version = body.version;
          callback(null, body.access_token);
        })
        .catch((error: Error) => callback(error));
    },
  });
}

describe('jsforce 3 with refreshFn calling /refresh', () => {
  let broker: BrokerHarness;

  beforeAll(async () => {
    broker = await startBrokerHarness({ salesforce: { rotation: true, tokenLatencyMs: 20 } });
  });

  afterAll(async () => {
    await broker?.close();
  });

  it('survives an expired access token with one token-endpoint call for 20 parallel queries', async () => {
    // Prepare: four clients of one session, each holding the same soon-dead access token
    const fake = broker.stack.salesforce;
    if (!fake) throw new Error('no fake Salesforce');
    const session = await broker.seedSession({ committedAgoMs: 0 });
    const start = await readJson(await broker.refresh(session.handle));
    const connections = Array.from({ length: 4 }, () =>
      brokerConnection(broker.server.url, session.handle, start),
    );
    const before = await connections[0]?.query('SELECT Id, Name FROM Account');
    fake.expireAccessTokens();
    fake.resetCalls();

    // Act
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, index) =>
        connections[index % 4]?.query<{ Name: string }>('SELECT Id, Name FROM Account'),
      ),
    );

    // Assert
    expect(before?.totalSize).toBeGreaterThan(0);
    expect(results.every((result) => result?.records[0]?.Name)).toBe(true);
    expect(fake.calls.tokenRefresh).toBe(1);
    expect(fake.calls.rest).toBeGreaterThanOrEqual(40);
    expect(fake.reuseRevocations).toBe(0);
  });
});
