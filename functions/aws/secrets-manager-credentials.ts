import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { BrokerConfig } from '../broker/config.ts';
import { UpstreamMisconfiguredError } from '../broker/errors.ts';
import type {
  ClientCredentials,
  ClientCredentialsSource,
  Clock,
  SalesforceApp,
} from '../broker/ports.ts';
import { systemClock } from '../broker/ports.ts';
import { awsUnavailable } from './errors.ts';

/**
 * The connected app's `{"client_id","client_secret"}` from Secrets Manager, cached in
 * memory for `ttlMs` and shared by concurrent callers. When a read fails and a cached
 * value exists, the cached value keeps serving (Secrets Manager outages do not stop
 * refreshes); `reload()` forces a read after Salesforce said `invalid_client`.
 * @see https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_GetSecretValue.html
 */
export class SecretsManagerCredentials implements ClientCredentialsSource {
  readonly #client: SecretsManagerClient;
  readonly #secretId: string;
  readonly #ttlMs: number;
  readonly #clock: Clock;
  #cached: { value: ClientCredentials; readAt: number } | undefined;
  #inFlight: Promise<ClientCredentials> | undefined;

  constructor(options: {
    secretId: string;
    ttlMs: number;
    client?: SecretsManagerClient;
    clock?: Clock;
  }) {
    this.#secretId = options.secretId;
    this.#ttlMs = options.ttlMs;
    this.#client = options.client ?? new SecretsManagerClient({});
    this.#clock = options.clock ?? systemClock;
  }

  async get(): Promise<ClientCredentials> {
    const cached = this.#cached;
    if (cached && this.#clock.now() - cached.readAt < this.#ttlMs) return cached.value;
    try {
      return await this.#read();
    } catch (error) {
      if (cached) return cached.value;
      throw error;
    }
  }

  reload(): Promise<ClientCredentials> {
    return this.#read();
  }

  #read(): Promise<ClientCredentials> {
    this.#inFlight ??= this.#fetch().finally(() => {
      this.#inFlight = undefined;
    });
    return this.#inFlight;
  }

  async #fetch(): Promise<ClientCredentials> {
    let secretString: string | undefined;
    try {
      const result = await this.#client.send(
        new GetSecretValueCommand({ SecretId: this.#secretId }),
      );
      secretString = result.SecretString;
    } catch (error) {
      throw awsUnavailable('Secrets Manager', error);
    }
    const value = parseCredentials(secretString);
    this.#cached = { value, readAt: this.#clock.now() };
    return value;
  }
}

/**
 * One {@link SecretsManagerCredentials} per configured app, sharing one client: each
 * app's secret has its own cache, so `invalid_client` on one app re-reads only its secret.
 */
export function salesforceApps(
  config: Pick<BrokerConfig, 'salesforceApps' | 'secretCacheTtlMs'>,
  client: SecretsManagerClient,
  clock?: Clock,
): SalesforceApp[] {
  return config.salesforceApps.map((app) => ({
    name: app.name,
    credentials: new SecretsManagerCredentials({
      secretId: app.secretId,
      ttlMs: config.secretCacheTtlMs,
      client,
      ...(clock ? { clock } : {}),
    }),
    loginUrl: new URL(app.loginUrl),
    scopes: app.scopes,
  }));
}

/** The first (default) app's credentials; `loadConfig` always yields at least one app. */
export function defaultCredentials(apps: readonly SalesforceApp[]): ClientCredentialsSource {
  const [first] = apps;
  if (first === undefined) throw new Error('no connected app is configured');
  return first.credentials;
}

/** Parses the secret; the messages name the member and never include its value. */
export function parseCredentials(secretString: string | undefined): ClientCredentials {
  let body: unknown;
  try {
    body = JSON.parse(secretString ?? '');
  } catch {
    throw new SecretFormatError('the secret must be a JSON object {"client_id","client_secret"}');
  }
  if (typeof body !== 'object' || body === null) {
    throw new SecretFormatError('the secret must be a JSON object {"client_id","client_secret"}');
  }
  const { client_id: clientId, client_secret: clientSecret } = body as Record<string, unknown>;
  if (typeof clientId !== 'string' || clientId.length === 0) {
    throw new SecretFormatError('the secret "client_id" member must be a non-empty string');
  }
  if (typeof clientSecret !== 'string' || clientSecret.length === 0) {
    throw new SecretFormatError('the secret "client_secret" member must be a non-empty string');
  }
  return { clientId, clientSecret };
}

/** The secret exists but does not hold usable credentials: an operator must fix it. */
export class SecretFormatError extends UpstreamMisconfiguredError {
  constructor(problem: string) {
    super(`Client credentials secret is malformed: ${problem}`);
  }
}
