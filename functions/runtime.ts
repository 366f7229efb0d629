import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { KMSClient } from '@aws-sdk/client-kms';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { awsClientConfig } from './aws/client-config.ts';
import { DynamoDbAlertStore } from './aws/dynamodb-alert-store.ts';
import { DynamoDbBrokerCodeStore } from './aws/dynamodb-code-store.ts';
import { DynamoDbLoginTransactionStore } from './aws/dynamodb-login-store.ts';
import { DynamoDbSessionStore } from './aws/dynamodb-session-store.ts';
import { KmsDataKeys } from './aws/kms-data-keys.ts';
import { defaultCredentials, salesforceApps } from './aws/secrets-manager-credentials.ts';
import { type BrokerConfig, loadConfig } from './broker/config.ts';
import { TokenVault } from './broker/envelope.ts';
import type {
  AlertStore,
  BrokerCodeStore,
  ClientCredentialsSource,
  Clock,
  Log,
  LoginTransactionStore,
  SalesforceApp,
  SessionStore,
} from './broker/ports.ts';
import { systemClock } from './broker/ports.ts';
import { createLogger, EmfMetrics } from './http/observability.ts';
import type { FlushableMetrics } from './http/route.ts';
import { SalesforceOAuthClient } from './salesforce/oauth-client.ts';

/**
 * Every adapter at once, for tests and tools that serve several routes from one process
 * with parts replaced. The Lambda entries use `production.ts` instead, which builds only
 * what each entry needs.
 */
export interface Runtime {
  config: BrokerConfig;
  store: SessionStore;
  /** Pending logins (`/login` writes, `/callback` consumes), in the same table. */
  transactions: LoginTransactionStore;
  /** Broker codes of the handoff (`/callback` writes, `/token` redeems), in the same table. */
  codes: BrokerCodeStore;
  /** Operator alerts (`Upstream Misconfigured`), in the same table. */
  alerts: AlertStore;
  vault: TokenVault;
  /** The default (first) app's credentials. */
  credentials: ClientCredentialsSource;
  /** Every connected app, each with its own credentials cache. */
  apps: readonly SalesforceApp[];
  salesforce: SalesforceOAuthClient;
  clock: Clock;
  log: Log;
  metrics: FlushableMetrics;
}

/**
 * Every adapter at once, from an explicit environment, with parts replaced: for tests and
 * tools. The SDK clients read `AWS_ENDPOINT_URL_<SERVICE>` themselves, which is how local
 * runs reach dynalite and the emulators without any "local mode" branch here.
 */
export function buildRuntime(
  env: Readonly<Record<string, string | undefined>>,
  overrides: Partial<Runtime> = {},
): Runtime {
  const config = loadConfig(env);
  const dynamodb = new DynamoDBClient(awsClientConfig(env));
  const built = salesforceApps(config, new SecretsManagerClient(awsClientConfig(env)));
  // A replaced `credentials` is the default app's, as in a single-app deployment.
  const apps =
    overrides.apps ??
    built.map((app, index) =>
      index === 0 && overrides.credentials ? { ...app, credentials: overrides.credentials } : app,
    );
  return {
    config,
    store: new DynamoDbSessionStore({ tableName: config.tableName, client: dynamodb }),
    transactions: new DynamoDbLoginTransactionStore({
      tableName: config.tableName,
      client: dynamodb,
    }),
    codes: new DynamoDbBrokerCodeStore({ tableName: config.tableName, client: dynamodb }),
    alerts: new DynamoDbAlertStore({ tableName: config.tableName, client: dynamodb }),
    vault: new TokenVault(
      new KmsDataKeys({ keyId: config.kmsKeyId, client: new KMSClient(awsClientConfig(env)) }),
    ),
    credentials: defaultCredentials(apps),
    apps,
    salesforce: new SalesforceOAuthClient({
      loginUrl: config.salesforceLoginUrl,
      timeoutMs: config.upstreamTimeoutMs,
    }),
    clock: systemClock,
    log: createLogger(),
    metrics: new EmfMetrics(),
    ...overrides,
  };
}
