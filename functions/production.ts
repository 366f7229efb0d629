/**
 * Per-process adapters for the Lambda entry files, each built on first use and reused by
 * warm invocations. One export per adapter, imported as a namespace, so that each bundle
 * keeps only the SDK clients its entry uses (the SDK packages are side-effect free and
 * tree-shake). The SDK clients read `AWS_ENDPOINT_URL_<SERVICE>` themselves, which is how
 * local runs reach dynalite and the emulators without any "local mode" branch here.
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import { KMSClient } from '@aws-sdk/client-kms';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { awsClientConfig } from './aws/client-config.ts';
import { DynamoDbAlertStore } from './aws/dynamodb-alert-store.ts';
import { DynamoDbBrokerCodeStore } from './aws/dynamodb-code-store.ts';
import { DynamoDbLoginTransactionStore } from './aws/dynamodb-login-store.ts';
import { DynamoDbSessionStore } from './aws/dynamodb-session-store.ts';
import { EventBridgeBus } from './aws/eventbridge-bus.ts';
import { KmsDataKeys } from './aws/kms-data-keys.ts';
import { defaultCredentials, salesforceApps } from './aws/secrets-manager-credentials.ts';
import { loadConfig } from './broker/config.ts';
import { TokenVault } from './broker/envelope.ts';
import { type Clock, systemClock } from './broker/ports.ts';
import { createLogger, EmfMetrics } from './http/observability.ts';
import { SalesforceOAuthClient } from './salesforce/oauth-client.ts';
import { DEFAULT_EVENT_SOURCE } from './shared/constants.ts';

// `@__PURE__`: an adapter no entry uses is dropped from its bundle, SDK client and all.
export const config = /* @__PURE__ */ once(() => loadConfig(process.env));
const dynamodb = /* @__PURE__ */ once(() => new DynamoDBClient(awsClientConfig()));

export const log = /* @__PURE__ */ once(() => createLogger());
export const metrics = /* @__PURE__ */ once(() => new EmfMetrics());
export const clock = (): Clock => systemClock;
export const sessions = /* @__PURE__ */ once(
  () => new DynamoDbSessionStore({ tableName: config().tableName, client: dynamodb() }),
);
export const transactions = /* @__PURE__ */ once(
  () => new DynamoDbLoginTransactionStore({ tableName: config().tableName, client: dynamodb() }),
);
export const codes = /* @__PURE__ */ once(
  () => new DynamoDbBrokerCodeStore({ tableName: config().tableName, client: dynamodb() }),
);
export const alerts = /* @__PURE__ */ once(
  () => new DynamoDbAlertStore({ tableName: config().tableName, client: dynamodb() }),
);
export const vault = /* @__PURE__ */ once(
  () =>
    new TokenVault(
      new KmsDataKeys({ keyId: config().kmsKeyId, client: new KMSClient(awsClientConfig()) }),
    ),
);
/**
 * The connected apps, each with its own cached secret (README "Login hosts and several
 * connected apps"); the first is the default app.
 */
export const apps = /* @__PURE__ */ once(() =>
  salesforceApps(config(), new SecretsManagerClient(awsClientConfig())),
);
/** The apps' names and login URLs without their secrets (`/logout` revokes, reads no secret). */
export const appHosts = /* @__PURE__ */ once(() =>
  config().salesforceApps.map((app) => ({ name: app.name, loginUrl: new URL(app.loginUrl) })),
);
/** The default app's credentials (the first app's, the same cache). */
export const credentials = /* @__PURE__ */ once(() => defaultCredentials(apps()));
export const salesforce = /* @__PURE__ */ once(
  () =>
    new SalesforceOAuthClient({
      loginUrl: config().salesforceLoginUrl,
      timeoutMs: config().upstreamTimeoutMs,
    }),
);

/**
 * The publisher's bus (`EVENT_BUS_NAME`, a name or ARN) and `source` (the service name).
 * The publisher reads no other setting: it needs no table, key or secret.
 */
export const eventBus = /* @__PURE__ */ once(() => {
  const busName = process.env.EVENT_BUS_NAME;
  if (!busName) throw new Error('EVENT_BUS_NAME is not set');
  return new EventBridgeBus({
    busName,
    source: process.env.POWERTOOLS_SERVICE_NAME || DEFAULT_EVENT_SOURCE,
    client: new EventBridgeClient(awsClientConfig()),
  });
});

function once<T>(build: () => T): () => T {
  let value: T | undefined;
  let built = false;
  return () => {
    if (!built) {
      value = build();
      built = true;
    }
    return value as T;
  };
}
