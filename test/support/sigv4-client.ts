/**
 * `fetch` with a Signature Version 4 for `execute-api`, as a backend job's AWS SDK would
 * sign a call to the service API: `@smithy/signature-v4` over the method, path, query,
 * `host` and the body's SHA-256.
 * @see https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html
 */
import { Hash } from '@smithy/hash-node';
import { SignatureV4 } from '@smithy/signature-v4';
import type { ServiceCredentials } from '../../local/sigv4-verifier.ts';

export interface SignedFetchOptions {
  credentials: ServiceCredentials;
  region: string;
  method?: string;
  body?: string;
  headers?: Record<string, string>;
  /** Sign at this time instead of now (a stale date). */
  signingDate?: Date;
  /** Sign this body but send `body` (a signature over a different body). */
  signedBody?: string;
  /** Sign for this region or service instead. */
  signingRegion?: string;
  signingService?: string;
}

/** The signed request's headers (for tests that send them by other means). */
export async function signRequest(
  url: string | URL,
  options: SignedFetchOptions,
): Promise<Record<string, string>> {
  const target = new URL(url);
  const signer = new SignatureV4({
    credentials: options.credentials,
    region: options.region,
    service: options.signingService ?? 'execute-api',
    sha256: Hash.bind(null, 'sha256'),
  });
  const query: Record<string, string | string[]> = {};
  for (const [name, value] of target.searchParams) {
    const previous = query[name];
    if (previous === undefined) query[name] = value;
    else query[name] = Array.isArray(previous) ? [...previous, value] : [previous, value];
  }
  const signedBody = options.signedBody ?? options.body;
  const signed = await signer.sign(
    {
      method: options.method ?? 'GET',
      protocol: target.protocol,
      hostname: target.hostname,
      ...(target.port ? { port: Number(target.port) } : {}),
      path: target.pathname,
      query,
      headers: {
        host: target.host,
        ...(options.headers ?? {}),
        ...(signedBody === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(signedBody === undefined ? {} : { body: signedBody }),
    },
    {
      ...(options.signingDate ? { signingDate: options.signingDate } : {}),
      ...(options.signingRegion ? { signingRegion: options.signingRegion } : {}),
    },
  );
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(signed.headers)) {
    if (name !== 'host') headers[name] = String(value);
  }
  return headers;
}

/** `fetch(url)` signed with `options.credentials` (SigV4, service `execute-api`). */
export async function signedFetch(
  url: string | URL,
  options: SignedFetchOptions,
): Promise<Response> {
  const headers = await signRequest(url, options);
  return fetch(url, {
    method: options.method ?? 'GET',
    headers,
    ...(options.body === undefined ? {} : { body: options.body }),
    signal: AbortSignal.timeout(20_000),
  });
}
