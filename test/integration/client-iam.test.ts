import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  BrokerError,
  createBrokerClient,
  ForbiddenError,
  TemporarilyUnavailableError,
} from '../../client/src/index.ts';
import { type RunningBroker, startBrokerLocally } from '../../local/start.ts';
import { freePort } from '../support/free-port.ts';
import { handoffLogin, TEST_APP } from '../support/handoff-login.ts';

/**
 * IAM mode through the service API against npm start: `POST /connections/{id}/token`,
 * SigV4-signed, single-flight with `/refresh`, refused with API Gateway's own 403 when the
 * signature is wrong.
 */
describe('IAM mode through the service API against npm start', () => {
  let broker: RunningBroker;
  let service: RunningBroker['service'];

  beforeAll(async () => {
    const port = await freePort();
    broker = await startBrokerLocally({
      PORT: String(port),
      HOST: '127.0.0.1',
      PUBLIC_URL: `http://127.0.0.1:${port}`,
      CLIENT_APPS: JSON.stringify([TEST_APP]),
    });
    service = broker.service;
  });

  afterAll(async () => {
    await broker?.close();
  });

  function fake() {
    const salesforce = broker.stack.salesforce;
    if (!salesforce) throw new Error('npm start without SALESFORCE_LOGIN_URL runs the mock org');
    return salesforce;
  }

  it('gets a token for a connection, and 20 concurrent calls after an invalidation make one refresh', async () => {
    // Prepare: a connection a person created by logging in; the job knows only its id
    const { handle, connectionId } = await handoffLogin(broker.url);
    const job = createBrokerClient({
      baseUrl: broker.url,
      credential: {
        iam: { connectionId, region: service.region, credentials: service.credentials },
      },
    });
    const first = await job.getAccessToken();
    job.invalidate(first.version);
    fake().resetCalls();

    // Act
    const tokens = await Promise.all(Array.from({ length: 20 }, () => job.getAccessToken()));
    const rest = await job.fetch('/services/data/v65.0/query?q=SELECT+Id,Name+FROM+Account');
    const sameSession = await fetch(`${broker.url}/refresh`, {
      method: 'POST',
      headers: { authorization: `Bearer ${handle}`, 'content-type': 'application/json' },
      body: JSON.stringify({ version: first.version }),
    });

    // Assert: one refresh at Salesforce; /refresh with the old version gets the same token
    expect(new Set(tokens.map((token) => token.version))).toEqual(new Set([first.version + 1]));
    expect(fake().calls.tokenRefresh).toBe(1);
    expect(rest.status).toBe(200);
    expect(await sameSession.json()).toMatchObject({
      version: first.version + 1,
      access_token: tokens[0]?.accessToken,
    });
  });

  it("refuses a wrong signature with API Gateway's 403 (ForbiddenError), not retried", async () => {
    // Prepare
    const { connectionId } = await handoffLogin(broker.url);
    const job = createBrokerClient({
      baseUrl: broker.url,
      credential: {
        iam: {
          connectionId,
          region: service.region,
          credentials: { ...service.credentials, secretAccessKey: 'not-the-secret' },
        },
      },
    });

    // Act
    const error = await job.getAccessToken().catch((caught: unknown) => caught);

    // Assert
    expect(error).toBeInstanceOf(ForbiddenError);
    expect(error).toMatchObject({ status: 403 });
  });

  it('answers an ended connection as /refresh does, with a typed error', async () => {
    // Prepare
    const { handle, connectionId } = await handoffLogin(broker.url);
    await fetch(`${broker.url}/logout`, {
      method: 'POST',
      headers: { authorization: `Bearer ${handle}` },
    });
    const job = createBrokerClient({
      baseUrl: broker.url,
      credential: {
        iam: { connectionId, region: service.region, credentials: service.credentials },
      },
    });

    // Act
    const error = await job.getAccessToken().catch((caught: unknown) => caught);

    // Assert
    expect(error).toBeInstanceOf(BrokerError);
    expect(error).not.toBeInstanceOf(TemporarilyUnavailableError);
    expect(error).not.toBeInstanceOf(ForbiddenError);
    expect((error as BrokerError).status).toBeGreaterThanOrEqual(400);
  });
});
