import { describe, expect, it } from 'vitest';
import { LOCAL_CALLER_ARN, SigV4Verifier } from '../../../local/sigv4-verifier.ts';
import { signRequest } from '../../support/sigv4-client.ts';

const URL_ = 'http://127.0.0.1:4000/connections/con_AAAAAAAAAAAAAAAAAAAAAA/token?x=1';
const NOW = Date.UTC(2026, 11, 2, 12, 0, 0);
const credentials = {
  accessKeyId: 'AKIALOCALTESTKEY0000',
  secretAccessKey: 'local-test-secret',
  sessionToken: 'local-session-token',
};

async function parts(options: { sessionToken?: string; signedAt?: number; body?: string }) {
  const headers = await signRequest(URL_, {
    credentials: { ...credentials, sessionToken: options.sessionToken },
    region: 'us-east-1',
    method: 'POST',
    signingDate: new Date(options.signedAt ?? NOW),
    ...(options.body === undefined ? {} : { body: options.body }),
  });
  const target = new URL(URL_);
  return {
    method: 'POST',
    path: target.pathname,
    rawQuery: target.search.slice(1),
    headers: { ...headers, host: target.host },
    body: Buffer.from(options.body ?? ''),
  };
}

describe('SigV4Verifier', () => {
  const verifier = new SigV4Verifier({ credentials, region: 'us-east-1', now: () => NOW });

  it('names the caller of a request signed with the pair and its session token', async () => {
    // Act
    const identity = await verifier.verify(
      await parts({ sessionToken: credentials.sessionToken, body: '{"version":1}' }),
    );

    // Assert
    expect(identity).toMatchObject({
      userArn: LOCAL_CALLER_ARN,
      accessKey: credentials.accessKeyId,
    });
  });

  it.each([
    ['without the session token', {}],
    ['with another session token', { sessionToken: 'another-token' }],
    [
      '5 minutes and 1 second ago',
      { sessionToken: credentials.sessionToken, signedAt: NOW - 301_000 },
    ],
  ])('refuses a request signed %s', async (_name, options) => {
    // Act
    const identity = await verifier.verify(await parts(options));

    // Assert
    expect(identity).toBeUndefined();
  });

  it('accepts a date just inside the 5-minute window', async () => {
    // Act
    const identity = await verifier.verify(
      await parts({ sessionToken: credentials.sessionToken, signedAt: NOW + 299_000 }),
    );

    // Assert
    expect(identity?.userArn).toBe(LOCAL_CALLER_ARN);
  });
});
