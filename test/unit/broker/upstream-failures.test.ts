import { describe, expect, it } from 'vitest';
import {
  LoginFailedError,
  TemporarilyUnavailableError,
  UpstreamMisconfiguredError,
} from '../../../functions/broker/errors.ts';
import type { ClientCredentials } from '../../../functions/broker/ports.ts';
import { UpstreamFailure } from '../../../functions/broker/upstream.ts';
import {
  clampRetryAfter,
  codeExchangeFailure,
  refreshFailure,
  withSecretRetry,
} from '../../../functions/broker/upstream-failures.ts';
import {
  AccessRestrictedError,
  InvalidClientError,
  InvalidGrantError,
  InvalidTokenResponseError,
  OAuthRequestError,
  SalesforceUnavailableError,
  TokenRequestInProgressError,
} from '../../../functions/salesforce/errors.ts';
import { describeError } from '../../../functions/shared/describe-error.ts';
import { CaptureLog, CaptureMetrics } from '../../support/capture-log.ts';

function credentialsSource() {
  let reads = 0;
  return {
    reloads: () => reads,
    source: {
      get: async (): Promise<ClientCredentials> => ({ clientId: 'id', clientSecret: 'secret' }),
      reload: async (): Promise<ClientCredentials> => {
        reads++;
        return { clientId: 'id', clientSecret: 'rotated-secret' };
      },
    },
  };
}

describe('Salesforce failures sorted into the domain kinds', () => {
  it.each([
    [new InvalidGrantError('x', { error: 'invalid_grant' }), 'invalid_grant'],
    [new AccessRestrictedError('x', { error: 'invalid_grant' }), 'access_restricted'],
    [new TokenRequestInProgressError('x', { error: 'invalid_grant' }), 'token_request_in_progress'],
    [new InvalidClientError('x', { error: 'invalid_client' }), 'invalid_client'],
    [new OAuthRequestError('x', { error: 'redirect_uri_mismatch' }), 'request_rejected'],
    [new SalesforceUnavailableError('x', 3, { reason: 'timeout' }), 'unavailable'],
    [new InvalidTokenResponseError('x', 'signature'), 'invalid_response'],
  ])('%s is an UpstreamFailure of kind %s', (error, kind) => {
    // Assess
    expect(error).toBeInstanceOf(UpstreamFailure);
    expect(error.kind).toBe(kind);
  });

  it('keeps the details the domain decides on', () => {
    // Prepare
    const timedOut = new SalesforceUnavailableError('late', 7, { reason: 'timeout' });
    const refused = new SalesforceUnavailableError('refused', undefined, { reason: 'unreachable' });
    const server = new SalesforceUnavailableError('500');
    const grant = new InvalidGrantError('dead', { error: 'invalid_grant', description: 'expired' });

    // Assess
    expect(timedOut).toMatchObject({ retryAfterSeconds: 7, reason: 'timeout' });
    expect(timedOut.outcomeUnknown).toBe(true);
    expect(refused.outcomeUnknown).toBe(false);
    expect(server.reason).toBe('server');
    expect(grant).toMatchObject({ upstreamError: 'invalid_grant', upstreamDescription: 'expired' });
    expect(new InvalidTokenResponseError('x', 'field').reason).toBe('field');
  });
});

describe('Function: withSecretRetry', () => {
  it('re-reads the secret once on invalid_client and calls again with the new one', async () => {
    // Prepare
    const log = new CaptureLog();
    const credentials = credentialsSource();
    const secrets: string[] = [];

    // Act
    const result = await withSecretRetry(
      { credentials: credentials.source, log },
      async (current) => {
        secrets.push(current.clientSecret);
        if (secrets.length === 1) throw new InvalidClientError('bad secret');
        return 'ok';
      },
      { transaction: 't-1' },
    );

    // Assess
    expect(result).toBe('ok');
    expect(secrets).toEqual(['secret', 'rotated-secret']);
    expect(credentials.reloads()).toBe(1);
    expect(log.entries).toEqual([
      {
        level: 'warn',
        message: 'Salesforce rejected the client credentials; re-reading the secret once',
        attributes: { event: 'invalid_client_retry', transaction: 't-1' },
      },
    ]);
  });

  it('hands the first rejection to the second attempt, and retries no further', async () => {
    // Prepare
    const credentials = credentialsSource();
    const first = new InvalidClientError('bad secret');
    const seen: Array<UpstreamFailure | undefined> = [];

    // Act
    const outcome = withSecretRetry(
      { credentials: credentials.source, log: new CaptureLog() },
      async (_current, rejected) => {
        seen.push(rejected);
        throw seen.length === 1 ? first : new InvalidClientError('still bad');
      },
    );

    // Assess
    await expect(outcome).rejects.toThrow('still bad');
    expect(seen).toEqual([undefined, first]);
    expect(credentials.reloads()).toBe(1);
  });

  it('does not re-read the secret for any other failure', async () => {
    // Prepare
    const credentials = credentialsSource();

    // Act
    const outcome = withSecretRetry(
      { credentials: credentials.source, log: new CaptureLog() },
      async () => {
        throw new InvalidGrantError('dead');
      },
    );

    // Assess
    await expect(outcome).rejects.toBeInstanceOf(InvalidGrantError);
    expect(credentials.reloads()).toBe(0);
  });
});

describe('Function: clampRetryAfter', () => {
  it.each([
    [0, 1],
    [0.4, 1],
    [2.6, 3],
    [120, 120],
    [3600, 120],
  ])('clamps %d seconds to %d', (seconds, expected) => {
    expect(clampRetryAfter(seconds)).toBe(expected);
  });
});

describe('Function: describeError', () => {
  it('names an error with its message, or by name only', () => {
    // Prepare
    const error = new TypeError('upstream said something');

    // Assess
    expect(describeError(error)).toBe('TypeError: upstream said something');
    expect(describeError(error, 'name_only')).toBe('TypeError');
  });

  it('names a thrown non-error by its type only, and nothing by undefined', () => {
    expect(describeError('a thrown secret')).toBe('string');
    expect(describeError(undefined)).toBeUndefined();
  });
});

describe('The refresh and code exchange mappings share the kinds', () => {
  it('answers a rate limit with the clamped Retry-After on both paths', async () => {
    // Prepare
    const deps = { log: new CaptureLog(), metrics: new CaptureMetrics() };
    const limited = new SalesforceUnavailableError('429', 3600, { reason: 'rate_limited' });
    const released: Array<[string, boolean | undefined]> = [];

    // Act
    const refresh = refreshFailure(deps, limited, {
      session: 's',
      deleteSession: async () => true,
      release: async (kind, keepLease) => {
        released.push([kind, keepLease]);
      },
      newerVersion: async () => undefined,
    });
    const login = codeExchangeFailure(deps, limited, 't');

    // Assess
    await expect(refresh).rejects.toMatchObject({ retryAfterSeconds: 120 });
    await expect(refresh).rejects.toBeInstanceOf(TemporarilyUnavailableError);
    expect(login).toBeInstanceOf(TemporarilyUnavailableError);
    expect(login).toMatchObject({ retryAfterSeconds: 120 });
    expect(released).toEqual([['unavailable', false]]);
  });

  it('answers invalid_client as upstream_misconfigured on both paths', async () => {
    // Prepare
    const deps = { log: new CaptureLog(), metrics: new CaptureMetrics() };
    const rejected = new InvalidClientError('bad', { error: 'invalid_client' });

    // Act
    const refresh = refreshFailure(deps, rejected, {
      session: 's',
      deleteSession: async () => true,
      release: async () => {},
      newerVersion: async () => undefined,
    });
    const login = codeExchangeFailure(deps, rejected, 't');

    // Assess
    await expect(refresh).rejects.toBeInstanceOf(UpstreamMisconfiguredError);
    expect(login).toBeInstanceOf(UpstreamMisconfiguredError);
    expect(deps.log.events()).toEqual(['upstream_misconfigured', 'upstream_misconfigured']);
  });

  it('passes anything that is not an upstream failure through unchanged', async () => {
    // Prepare
    const deps = { log: new CaptureLog(), metrics: new CaptureMetrics() };
    const other = new Error('Secrets Manager down');
    const released: string[] = [];

    // Act
    const refresh = refreshFailure(deps, other, {
      session: 's',
      deleteSession: async () => true,
      release: async (kind) => {
        released.push(kind);
      },
      newerVersion: async () => undefined,
    });
    const login = codeExchangeFailure(deps, other, 't');

    // Assess
    await expect(refresh).rejects.toBe(other);
    expect(login).toBe(other);
    expect(login).not.toBeInstanceOf(LoginFailedError);
    expect(released).toEqual(['unavailable']);
    expect(deps.log.entries).toEqual([]);
  });
});
