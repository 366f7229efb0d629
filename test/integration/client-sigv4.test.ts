import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Hash } from '@smithy/hash-node';
import { SignatureV4 } from '@smithy/signature-v4';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createBrokerClient, ForbiddenError } from '../../client/src/index.ts';

const REGION = 'eu-west-1';
const KEYS = {
  accessKeyId: 'AKIDEXAMPLECLIENT',
  secretAccessKey: 'secret-canary-0b7e4f',
  sessionToken: 'session-token-canary',
};

interface Seen {
  method: string;
  path: string;
  body: string;
  headers: IncomingMessage['headers'];
  valid: boolean;
}

/** `20261202T141500Z` -> Date. */
function amzDate(value: string): Date {
  const match = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(value);
  if (!match) return new Date(Number.NaN);
  const [, y, mo, d, h, mi, s] = match.map(Number) as number[];
  return new Date(Date.UTC(y ?? 0, (mo ?? 1) - 1, d, h, mi, s));
}

/**
 * Checks a request's SigV4 signature as API Gateway's IAM authorization would: the same
 * canonical request signed again with the caller's keys must give the same Authorization.
 */
async function signatureValid(request: IncomingMessage, body: string): Promise<boolean> {
  const authorization = String(request.headers.authorization ?? '');
  const signedNames = /SignedHeaders=([^,]+)/.exec(authorization)?.[1]?.split(';') ?? [];
  if (!signedNames.includes('host') || !authorization.includes(`/${REGION}/execute-api/`)) {
    return false;
  }
  const url = new URL(request.url ?? '/', `http://${request.headers.host}`);
  const headers: Record<string, string> = {};
  for (const name of signedNames) headers[name] = String(request.headers[name] ?? '');
  const signer = new SignatureV4({
    service: 'execute-api',
    region: REGION,
    credentials: KEYS,
    sha256: Hash.bind(null, 'sha256'),
  });
  const again = await signer.sign(
    {
      method: request.method ?? 'GET',
      protocol: 'http:',
      hostname: url.hostname,
      port: Number(url.port),
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
      headers,
      ...(body ? { body } : {}),
    },
    { signingDate: amzDate(String(request.headers['x-amz-date'])) },
  );
  return again.headers.authorization === authorization;
}

describe('Client: IAM mode signs the service API call with SigV4', () => {
  let server: Server;
  let baseUrl: string;
  const seen: Seen[] = [];
  let version = 1;

  beforeAll(async () => {
    server = createServer((request, response) => {
      const chunks: Buffer[] = [];
      request.on('data', (chunk: Buffer) => chunks.push(chunk));
      request.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        void signatureValid(request, body).then((valid) => {
          seen.push({
            method: request.method ?? '',
            path: request.url ?? '',
            body,
            headers: request.headers,
            valid,
          });
          response.setHeader('content-type', 'application/json');
          if (!valid) {
            response.writeHead(403).end('{"message":"Forbidden"}');
            return;
          }
          version++;
          response.writeHead(200).end(
            JSON.stringify({
              access_token: `00Dxx!iam-v${version}`,
              instance_url: 'https://acme.my.salesforce.com',
              token_type: 'Bearer',
              issued_at: String(Date.now()),
              version,
            }),
          );
        });
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterEach(() => {
    seen.length = 0;
  });

  afterAll(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it('posts to /connections/{id}/token, signed with the given keys and session token', async () => {
    // Prepare
    const client = createBrokerClient({
      baseUrl,
      credential: { iam: { connectionId: 'con_abc-DEF_123', region: REGION, credentials: KEYS } },
    });

    // Act
    const token = await client.getAccessToken();
    client.invalidate(token.version);
    const next = await client.getAccessToken();

    // Assert
    expect(seen.map(({ method, path, valid }) => ({ method, path, valid }))).toEqual([
      { method: 'POST', path: '/connections/con_abc-DEF_123/token', valid: true },
      { method: 'POST', path: '/connections/con_abc-DEF_123/token', valid: true },
    ]);
    expect(seen[0]?.body).toBe('');
    expect(seen[1]?.body).toBe(JSON.stringify({ version: token.version }));
    expect(seen[1]?.headers['x-amz-security-token']).toBe(KEYS.sessionToken);
    expect(String(seen[1]?.headers.authorization)).toContain('content-type');
    expect(next.version).toBe(token.version + 1);
  });

  it('takes the region from AWS_REGION and the keys from the default chain', async () => {
    // Prepare: the chain's first source is the environment
    const saved = { ...process.env };
    Object.assign(process.env, {
      AWS_REGION: REGION,
      AWS_ACCESS_KEY_ID: KEYS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: KEYS.secretAccessKey,
      AWS_SESSION_TOKEN: KEYS.sessionToken,
    });
    try {
      const client = createBrokerClient({
        baseUrl,
        credential: { iam: { connectionId: 'con_x' } },
      });

      // Act
      const token = await client.getAccessToken();

      // Assert
      expect(token.accessToken).toMatch(/^00Dxx!iam-v/);
      expect(seen[0]?.valid).toBe(true);
    } finally {
      process.env = saved;
    }
  });

  it('maps a refused signature (403 {"message":"Forbidden"}) to ForbiddenError, not retried', async () => {
    // Prepare
    const client = createBrokerClient({
      baseUrl,
      credential: {
        iam: {
          connectionId: 'con_x',
          region: REGION,
          credentials: async () => ({ ...KEYS, secretAccessKey: 'not-the-secret' }),
        },
      },
    });

    // Act
    const error = await client.getAccessToken().catch((caught: unknown) => caught);

    // Assert
    expect(error).toBeInstanceOf(ForbiddenError);
    expect(error).toMatchObject({ status: 403, code: 'forbidden' });
    expect(seen).toHaveLength(1);
    expect(seen[0]?.valid).toBe(false);
    expect(String(error)).not.toContain('not-the-secret');
  });

  it('signs for the region it is given, which the API checks', async () => {
    // Prepare
    const client = createBrokerClient({
      baseUrl,
      credential: { iam: { connectionId: 'con_x', region: 'us-east-2', credentials: KEYS } },
    });

    // Act
    const error = await client.getAccessToken().catch((caught: unknown) => caught);

    // Assert
    expect(error).toBeInstanceOf(ForbiddenError);
    expect(String(seen[0]?.headers.authorization)).toContain('/us-east-2/execute-api/aws4_request');
  });

  it('works from the built package too, which loads its own iam.js', async () => {
    // Prepare: client/dist, as npm pack ships it (built by the tests' global setup)
    const packaged = new URL('../../client/dist/index.js', import.meta.url).href;
    const built = (await import(packaged)) as typeof import('../../client/src/index.ts');
    const client = built.createBrokerClient({
      baseUrl,
      credential: { iam: { connectionId: 'con_x', region: REGION, credentials: KEYS } },
    });

    // Act
    const token = await client.getAccessToken();

    // Assert
    expect(token.accessToken).toMatch(/^00Dxx!iam-v/);
    expect(seen[0]?.valid).toBe(true);
  });

  it('says so, without retrying, when it has no credentials or no region', async () => {
    // Prepare
    const saved = { ...process.env };
    delete process.env.AWS_REGION;
    delete process.env.AWS_DEFAULT_REGION;
    const noKeys = createBrokerClient({
      baseUrl,
      credential: {
        iam: {
          connectionId: 'con_x',
          region: REGION,
          credentials: async () => {
            throw new Error('no credentials in this chain');
          },
        },
      },
    });
    const noRegion = createBrokerClient({
      baseUrl,
      credential: { iam: { connectionId: 'con_x', credentials: KEYS } },
    });

    // Act
    const keysError = await noKeys.getAccessToken().catch((caught: unknown) => caught);
    const regionError = await noRegion.getAccessToken().catch((caught: unknown) => caught);
    process.env = saved;

    // Assert
    expect(keysError).toMatchObject({ code: 'credentials_unavailable', status: 0 });
    expect(String((keysError as Error).message)).toContain('no credentials in this chain');
    expect(regionError).toMatchObject({ code: 'iam_unavailable' });
    expect(seen).toHaveLength(0);
  });
});
