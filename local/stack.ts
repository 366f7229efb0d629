import type { AddressInfo } from 'node:net';
import {
  CreateTableCommand,
  DynamoDBClient,
  UpdateTimeToLiveCommand,
} from '@aws-sdk/client-dynamodb';
import dynalite from 'dynalite';
import { STREAM_FILTER_PATTERNS } from '../functions/aws/stream-events.ts';
import { CONNECTIONS_BY_ORG_INDEX, SWEEP_INDEX } from '../functions/shared/constants.ts';
import {
  type KmsEmulator,
  type SecretsManagerEmulator,
  startKmsEmulator,
  startSecretsManagerEmulator,
} from './aws-emulators.ts';
import { type ChangeCapture, startDynamoDbChangeCapture } from './dynamodb-change-capture.ts';
import { type DynamoDbFaultProxy, startDynamoDbFaultProxy } from './dynamodb-fault-proxy.ts';
import { type EventBridgeEmulator, startEventBridgeEmulator } from './eventbridge-emulator.ts';
import {
  type FakeSalesforce,
  type FakeSalesforceOptions,
  startFakeSalesforce,
} from './fake-salesforce.ts';

export interface LocalStackOptions {
  /** Options of the embedded fake Salesforce; `false` to use `salesforceLoginUrl` instead. */
  salesforce?: FakeSalesforceOptions | false;
  /** An external Salesforce (or Salesforce-like server) when `salesforce` is `false`. */
  salesforceLoginUrl?: string;
  clientId?: string;
  clientSecret?: string;
  tableName?: string;
  host?: string;
  /**
   * Put a {@link DynamoDbFaultProxy} between the broker and dynalite: `env` then points
   * the broker at the proxy, while `dynamodb` (the tests' own client) stays on dynalite.
   */
  dynamodbFaultProxy?: boolean;
  /**
   * Events (README "Events"): a change capture in front of dynalite makes its stream
   * records, and an EventBridge emulator takes the publisher's `PutEvents`. The publisher
   * itself is attached with `events.capture.setHandler` once it is loaded.
   */
  events?: boolean;
}

/** The local stream and bus, when `events` was set. */
export interface LocalEvents {
  readonly capture: ChangeCapture;
  readonly bus: EventBridgeEmulator;
  /** The bus name the publisher puts to (`EVENT_BUS_NAME`). */
  readonly busName: string;
}

/** dynalite, the KMS and Secrets Manager emulators and the fake Salesforce, on loopback. */
export interface LocalStack {
  /** The environment the broker functions need to run against this stack. */
  readonly env: Readonly<Record<string, string>>;
  readonly dynamodbUrl: string;
  readonly kms: KmsEmulator;
  readonly secretsManager: SecretsManagerEmulator;
  readonly salesforce: FakeSalesforce | undefined;
  readonly tableName: string;
  readonly keyId: string;
  readonly secretId: string;
  /** DynamoDB requests served by dynalite, per operation (`X-Amz-Target`), live. */
  readonly dynamodbCalls: Record<string, number>;
  /** A DynamoDB client on dynalite, for tests that inspect or tamper with items. */
  readonly dynamodb: DynamoDBClient;
  /** The fault proxy the broker talks to, when `dynamodbFaultProxy` was set. */
  readonly dynamodbFaults: DynamoDbFaultProxy | undefined;
  /** The change capture and the bus, when `events` was set. */
  readonly events: LocalEvents | undefined;
  close(): Promise<void>;
}

const LOCAL_CREDENTIALS = { accessKeyId: 'local', secretAccessKey: 'local' };

/**
 * Starts everything the broker talks to, in-process, on ephemeral loopback ports: the
 * table is created, a KMS key made, and the client credentials secret seeded.
 */
export async function startLocalStack(options: LocalStackOptions = {}): Promise<LocalStack> {
  const host = options.host ?? '127.0.0.1';
  const clientId = options.clientId ?? 'fake-client-id';
  const clientSecret = options.clientSecret ?? 'fake-client-secret';
  const tableName = options.tableName ?? 'token-broker-local';

  const dynamo = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 });
  const dynamodbCalls: Record<string, number> = {};
  dynamo.on('request', (request: { headers: Record<string, string | string[] | undefined> }) => {
    const target = String(request.headers['x-amz-target'] ?? '');
    const operation = target.slice(target.indexOf('.') + 1) || 'unknown';
    dynamodbCalls[operation] = (dynamodbCalls[operation] ?? 0) + 1;
  });
  await new Promise<void>((resolve, reject) => {
    dynamo.once('error', reject);
    dynamo.listen(0, host, () => resolve());
  });
  const dynamodbUrl = `http://${host}:${(dynamo.address() as AddressInfo).port}`;
  const capture = options.events
    ? await startDynamoDbChangeCapture({
        target: dynamodbUrl,
        host,
        filterPatterns: STREAM_FILTER_PATTERNS,
      })
    : undefined;
  const bus = options.events ? await startEventBridgeEmulator({ host }) : undefined;
  const events = capture && bus ? { capture, bus, busName: `${tableName}-events` } : undefined;
  const dynamodbFaults = options.dynamodbFaultProxy
    ? await startDynamoDbFaultProxy({ target: capture?.url ?? dynamodbUrl, host })
    : undefined;
  const [kms, secretsManager, salesforce] = await Promise.all([
    startKmsEmulator({ host }),
    startSecretsManagerEmulator({ host }),
    options.salesforce === false
      ? Promise.resolve(undefined)
      : startFakeSalesforce({ clientId, clientSecret, host, ...options.salesforce }),
  ]);

  const dynamodb = new DynamoDBClient({
    endpoint: dynamodbUrl,
    region: 'us-east-1',
    credentials: LOCAL_CREDENTIALS,
  });
  await dynamodb.send(
    new CreateTableCommand({
      TableName: tableName,
      AttributeDefinitions: [
        { AttributeName: 'pk', AttributeType: 'S' },
        { AttributeName: CONNECTIONS_BY_ORG_INDEX.partitionKey, AttributeType: 'S' },
        { AttributeName: CONNECTIONS_BY_ORG_INDEX.sortKey, AttributeType: 'S' },
        { AttributeName: SWEEP_INDEX.partitionKey, AttributeType: 'S' },
        { AttributeName: SWEEP_INDEX.sortKey, AttributeType: 'N' },
      ],
      KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }],
      // The same index as the deployed table (infra/token-broker.ts).
      GlobalSecondaryIndexes: [
        {
          IndexName: CONNECTIONS_BY_ORG_INDEX.name,
          KeySchema: [
            { AttributeName: CONNECTIONS_BY_ORG_INDEX.partitionKey, KeyType: 'HASH' },
            { AttributeName: CONNECTIONS_BY_ORG_INDEX.sortKey, KeyType: 'RANGE' },
          ],
          Projection: {
            ProjectionType: 'INCLUDE',
            NonKeyAttributes: [...CONNECTIONS_BY_ORG_INDEX.projected],
          },
        },
        {
          IndexName: SWEEP_INDEX.name,
          KeySchema: [
            { AttributeName: SWEEP_INDEX.partitionKey, KeyType: 'HASH' },
            { AttributeName: SWEEP_INDEX.sortKey, KeyType: 'RANGE' },
          ],
          Projection: { ProjectionType: 'INCLUDE', NonKeyAttributes: [...SWEEP_INDEX.projected] },
        },
      ],
      BillingMode: 'PAY_PER_REQUEST',
    }),
  );
  await dynamodb
    .send(
      new UpdateTimeToLiveCommand({
        TableName: tableName,
        TimeToLiveSpecification: { AttributeName: 'ttl', Enabled: true },
      }),
    )
    .catch(() => {
      // dynalite does not implement TTL; DynamoDB TTL is only housekeeping anyway.
    });
  const keyId = kms.createKey({ alias: 'alias/token-broker' });
  const secretId = 'token-broker/salesforce-client';
  secretsManager.putSecret(
    secretId,
    JSON.stringify({ client_id: clientId, client_secret: clientSecret }),
  );

  const loginUrl = salesforce?.url ?? options.salesforceLoginUrl;
  if (!loginUrl) throw new Error('startLocalStack: give salesforce options or salesforceLoginUrl');

  const env: Record<string, string> = {
    AWS_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: LOCAL_CREDENTIALS.accessKeyId,
    AWS_SECRET_ACCESS_KEY: LOCAL_CREDENTIALS.secretAccessKey,
    AWS_ENDPOINT_URL_DYNAMODB: dynamodbFaults?.url ?? capture?.url ?? dynamodbUrl,
    ...(events
      ? { AWS_ENDPOINT_URL_EVENTBRIDGE: events.bus.url, EVENT_BUS_NAME: events.busName }
      : {}),
    AWS_ENDPOINT_URL_KMS: kms.url,
    AWS_ENDPOINT_URL_SECRETS_MANAGER: secretsManager.url,
    TABLE_NAME: tableName,
    KMS_KEY_ID: keyId,
    CLIENT_SECRET_ID: secretId,
    SALESFORCE_LOGIN_URL: loginUrl,
  };

  return {
    env,
    dynamodbUrl,
    dynamodbCalls,
    kms,
    secretsManager,
    salesforce,
    tableName,
    keyId,
    secretId,
    dynamodb,
    dynamodbFaults,
    events,
    async close() {
      dynamodb.destroy();
      await Promise.all([
        dynamodbFaults?.close(),
        capture?.close(),
        bus?.close(),
        kms.close(),
        secretsManager.close(),
        salesforce?.close(),
        new Promise<void>((resolve) => {
          dynamo.close(() => resolve());
          (dynamo as { closeAllConnections?: () => void }).closeAllConnections?.();
        }),
      ]);
    },
  };
}
