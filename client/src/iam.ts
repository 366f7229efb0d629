/**
 * The IAM mode: `POST /connections/{id}/token` on the service API, signed with AWS
 * Signature Version 4 for `execute-api`. Node only; loaded by the client on first use (so
 * browsers and bearer callers never load it), or imported as `<package>/iam`.
 * @see https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html
 * @see https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-access-control-iam.html
 */
import { Hash } from '@smithy/hash-node';
import { SignatureV4 } from '@smithy/signature-v4';
import type { AwsCredentials, IamCredentialOptions, TokenRequest } from './client.js';
// The package's iam.js takes this from index.js: one BrokerError class for `instanceof`.
import { BrokerError } from './errors.js';

type CredentialProvider = () => Promise<AwsCredentials>;

/** The region: given, else the standard variables the AWS SDKs read. */
export function resolveRegion(region: string | undefined): string {
  const found = region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION;
  if (!found) {
    throw new TypeError('credential.iam.region is not set, and neither is AWS_REGION');
  }
  return found;
}

/** Given credentials, a given provider, or the AWS SDK's default chain (loaded only then). */
function credentialProvider(credentials: IamCredentialOptions['credentials']): CredentialProvider {
  if (typeof credentials === 'function') return credentials;
  if (credentials) return async () => credentials;
  let chain: Promise<CredentialProvider> | undefined;
  return async () => {
    chain ??= import('@aws-sdk/credential-provider-node').then(
      // The chain caches what it found and renews credentials before they expire.
      ({ defaultProvider }) => defaultProvider() as CredentialProvider,
    );
    return (await chain)();
  };
}

/**
 * Signs and sends a request: `headers` must not hold `host` (it comes from the URL) and
 * every header given is signed. Exported for callers that use the service API directly.
 */
export function createSignedFetch(options: {
  region?: string;
  credentials?: IamCredentialOptions['credentials'];
  fetch?: typeof fetch;
}): (
  url: string,
  init: { method: string; headers?: Record<string, string>; body?: string; signal?: AbortSignal },
) => Promise<Response> {
  const signer = new SignatureV4({
    service: 'execute-api',
    region: resolveRegion(options.region),
    credentials: credentialProvider(options.credentials),
    // As the AWS SDK for Node does: node:crypto's SHA-256, keyed when given a secret.
    sha256: Hash.bind(null, 'sha256'),
  });
  const fetchFn = options.fetch ?? ((input, init) => fetch(input, init));
  return async (url, init) => {
    const target = new URL(url);
    const query: Record<string, string | string[]> = {};
    for (const key of new Set(target.searchParams.keys())) {
      const values = target.searchParams.getAll(key);
      query[key] = values.length === 1 ? (values[0] ?? '') : values;
    }
    const unsigned = {
      method: init.method,
      protocol: target.protocol,
      hostname: target.hostname,
      ...(target.port ? { port: Number(target.port) } : {}),
      path: target.pathname,
      query,
      // `host` is signed as fetch will send it: the URL's host, with a non-default port.
      headers: { ...init.headers, host: target.host },
      body: init.body,
    };
    const signed = await signer.sign(unsigned).catch((error: unknown) => {
      // No credentials to sign with (the chain found none, or a provider failed): not
      // something a retry fixes.
      throw new BrokerError(
        'credentials_unavailable',
        0,
        `Could not sign the request with AWS credentials: ${(error as Error | undefined)?.message}`,
        { cause: error },
      );
    });
    const { host: _host, ...headers } = signed.headers;
    return fetchFn(target, {
      method: init.method,
      headers,
      ...(init.body === undefined ? {} : { body: init.body }),
      ...(init.signal ? { signal: init.signal } : {}),
    });
  };
}

/**
 * The client's transport for `{ iam }`: `POST <baseUrl>/connections/{id}/token` with the
 * optional `{"version": n}` hint, answered as `/refresh` is.
 */
export function signedTokenRequest(
  baseUrl: string,
  options: IamCredentialOptions,
  fetchFn: typeof fetch,
): TokenRequest {
  if (typeof options?.connectionId !== 'string' || options.connectionId === '') {
    throw new TypeError('credential.iam.connectionId must be the connection id');
  }
  const url = `${baseUrl}/connections/${encodeURIComponent(options.connectionId)}/token`;
  const signedFetch = createSignedFetch({
    ...(options.region ? { region: options.region } : {}),
    credentials: options.credentials,
    fetch: fetchFn,
  });
  return (hint, signal) =>
    signedFetch(url, {
      method: 'POST',
      ...(hint === undefined
        ? {}
        : {
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ version: hint }),
          }),
      signal,
    });
}
