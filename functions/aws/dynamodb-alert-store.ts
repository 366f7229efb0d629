import {
  ConditionalCheckFailedException,
  DynamoDBClient,
  PutItemCommand,
} from '@aws-sdk/client-dynamodb';
import type { AlertStore, CallOptions, UpstreamAlert } from '../broker/ports.ts';
import { ITEM_PREFIX } from '../shared/constants.ts';
import { sendDynamoDb } from './dynamodb-send.ts';

/** The partition key of the `Upstream Misconfigured` alert of one connected app. */
export function upstreamAlertKey(app: string): string {
  return `${ITEM_PREFIX.alert}upstream_misconfigured#${app}`;
}

/** An alert item is kept this long after its last raise (DynamoDB TTL, housekeeping only). */
const ALERT_TTL_SECONDS = 86_400;
/** Longest Salesforce error code an alert keeps. */
const MAX_ERROR_TEXT = 100;

/**
 * {@link AlertStore} on DynamoDB: one item per alert kind and connected app, put only when
 * absent or older than the quiet period (one conditional put, no read), so a storm of
 * refusals writes at most one item per app every few minutes, and each write is one event.
 */
export class DynamoDbAlertStore implements AlertStore {
  readonly #client: DynamoDBClient;
  readonly #tableName: string;

  constructor(options: { tableName: string; client?: DynamoDBClient }) {
    this.#tableName = options.tableName;
    this.#client = options.client ?? new DynamoDBClient({});
  }

  async raise(alert: UpstreamAlert, quietMs: number, options?: CallOptions): Promise<boolean> {
    const item: Record<string, { S: string } | { N: string }> = {
      pk: { S: upstreamAlertKey(alert.app) },
      kind: { S: 'alert' },
      alert: { S: 'upstream_misconfigured' },
      app: { S: alert.app },
      raisedAt: { N: String(alert.at) },
      ttl: { N: String(Math.ceil(alert.at / 1000) + ALERT_TTL_SECONDS) },
    };
    if (alert.upstreamError !== undefined) {
      item.upstreamError = { S: alert.upstreamError.slice(0, MAX_ERROR_TEXT) };
    }
    if (alert.connectionId !== undefined) item.connectionId = { S: alert.connectionId };
    if (alert.orgId !== undefined) item.orgId = { S: alert.orgId };
    if (alert.userId !== undefined) item.userId = { S: alert.userId };
    try {
      await sendDynamoDb(
        this.#client,
        new PutItemCommand({
          TableName: this.#tableName,
          Item: item,
          ConditionExpression: 'attribute_not_exists(pk) OR raisedAt <= :quietBefore',
          ExpressionAttributeValues: { ':quietBefore': { N: String(alert.at - quietMs) } },
        }),
        options,
      );
      return true;
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) return false;
      throw error;
    }
  }
}
