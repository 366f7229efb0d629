/**
 * The synthesized broker (`cdk.out` bundles and template) run as Lambda would run it,
 * against the local stack: see `local/bundle-runtime.ts`. Test setup (seeding a session,
 * reading the raw item) happens in the test process with the adapters on the emulators;
 * everything the tests assert on runs in the bundles.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { DynamoDBClient, GetItemCommand } from '@aws-sdk/client-dynamodb';
import { KMSClient } from '@aws-sdk/client-kms';
import { DynamoDbSessionStore } from '../../functions/aws/dynamodb-session-store.ts';
import { KmsDataKeys } from '../../functions/aws/kms-data-keys.ts';
import { TokenVault } from '../../functions/broker/envelope.ts';
import type { SessionStore } from '../../functions/broker/ports.ts';
import { sessionKeyOf } from '../../functions/broker/session-handle.ts';
import {
  type BundleApi,
  type DeployedApp,
  LOCAL_OVERRIDES,
  type LocalOverride,
  readDeployedApp,
  startBundleApi,
  synthesizeApp,
} from '../../local/bundle-runtime.ts';
import type { FakeSalesforce, FakeSalesforceOptions } from '../../local/fake-salesforce.ts';
import {
  generateLocalCredentials,
  type ServiceCredentials,
  SigV4Verifier,
} from '../../local/sigv4-verifier.ts';
import { type LocalStack, startLocalStack } from '../../local/stack.ts';
import { type SeededSession, seedSession } from './broker-harness.ts';

const repoRoot = join(import.meta.dirname, '..', '..');

/** Synthesizes the app with `cdk.json`'s context plus `context`; `remove()` deletes it. */
export async function synthesizeBroker(
  context: Record<string, unknown> = {},
): Promise<DeployedApp & { remove(): void }> {
  const outdir = await synthesizeApp({ projectRoot: repoRoot, context });
  return {
    ...readDeployedApp(outdir),
    remove: () => rmSync(outdir, { recursive: true, force: true }),
  };
}

export interface DeployedBroker {
  app: DeployedApp;
  stack: LocalStack;
  fake: FakeSalesforce;
  api: BundleApi;
  /** Adapters in the test process, on the emulators directly: setup and inspection only. */
  setup: { store: SessionStore; vault: TokenVault };
  seedSession(options?: { committedAgoMs?: number }): Promise<SeededSession>;
  /** The one credential pair the service API's `AWS_IAM` routes accept here. */
  service: { credentials: ServiceCredentials; region: string };
  /** `POST /refresh` with the bearer handle, over HTTP, to the shipped bundle. */
  refresh(handle: string, body?: unknown): Promise<Response>;
  /** The raw session item, read from dynalite directly (not through a fault proxy). */
  rawItem(handle: string): Promise<Record<string, { S?: string; N?: string }> | undefined>;
  /** The functions' output, one string per line, never printed. */
  logText(): string;
  /** The `event` field of every JSON log line the functions wrote. */
  logEvents(): string[];
  close(): Promise<void>;
}

export async function startDeployedBroker(options: {
  app: DeployedApp;
  salesforce?: FakeSalesforceOptions;
  dynamodbFaultProxy?: boolean;
}): Promise<DeployedBroker> {
  const stack = await startLocalStack({
    salesforce: options.salesforce ?? {},
    dynamodbFaultProxy: options.dynamodbFaultProxy ?? false,
  });
  const fake = stack.salesforce;
  if (!fake) throw new Error('the deployed broker needs the fake Salesforce');
  const overrides = Object.fromEntries(
    LOCAL_OVERRIDES.map((name) => [name, stack.env[name]]),
  ) as Record<LocalOverride, string>;
  const service = { credentials: generateLocalCredentials(), region: 'us-east-1' };
  const api = await startBundleApi({
    app: options.app,
    resources: { tableName: stack.tableName, keyId: stack.keyId, secretId: stack.secretId },
    overrides,
    iamVerifier: new SigV4Verifier(service),
  });
  // Explicit endpoints rather than process.env: several brokers may run in one process.
  const clientConfig = {
    region: stack.env.AWS_REGION,
    credentials: {
      accessKeyId: stack.env.AWS_ACCESS_KEY_ID ?? '',
      secretAccessKey: stack.env.AWS_SECRET_ACCESS_KEY ?? '',
    },
  };
  const dynamodb = new DynamoDBClient({ ...clientConfig, endpoint: stack.dynamodbUrl });
  const kms = new KMSClient({ ...clientConfig, endpoint: stack.kms.url });
  const setup = {
    store: new DynamoDbSessionStore({ tableName: stack.tableName, client: dynamodb }),
    vault: new TokenVault(new KmsDataKeys({ keyId: stack.keyId, client: kms })),
  };

  return {
    app: options.app,
    stack,
    fake,
    api,
    setup,
    service,
    seedSession: (seedOptions) => seedSession(setup, fake, seedOptions),
    refresh(handle, body) {
      return fetch(`${api.url}/refresh`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${handle}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
    },
    async rawItem(handle) {
      const result = await stack.dynamodb.send(
        new GetItemCommand({
          TableName: stack.tableName,
          Key: { pk: { S: `session#${sessionKeyOf(handle)}` } },
          ConsistentRead: true,
        }),
      );
      return result.Item as Record<string, { S?: string; N?: string }> | undefined;
    },
    logText: () => api.logs.map((entry) => entry.line).join('\n'),
    logEvents() {
      const events: string[] = [];
      for (const { line } of api.logs) {
        if (!line.startsWith('{')) continue;
        try {
          const parsed = JSON.parse(line) as { event?: unknown };
          if (typeof parsed.event === 'string') events.push(parsed.event);
        } catch {
          // not a JSON log line
        }
      }
      return events;
    },
    async close() {
      await api.close();
      dynamodb.destroy();
      kms.destroy();
      await stack.close();
    },
  };
}
