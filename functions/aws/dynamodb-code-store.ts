import {
  type AttributeValue,
  ConditionalCheckFailedException,
  DynamoDBClient,
  GetItemCommand,
  UpdateItemCommand,
} from '@aws-sdk/client-dynamodb';
import { BROKER_CODE_RETENTION_MS } from '../broker/broker-code.ts';
import type {
  BrokerCodeRecord,
  BrokerCodeStore,
  CallOptions,
  Redemption,
} from '../broker/ports.ts';
import { ITEM_PREFIX } from '../shared/constants.ts';
import { putIfAbsent, sendDynamoDb } from './dynamodb-send.ts';
import { awsUnavailable } from './errors.ts';

type Item = Record<string, AttributeValue>;

/**
 * {@link BrokerCodeStore} on DynamoDB, in the session table: one item per broker code under
 * `code#<SHA-256 of the code>`, kept (`ttl`) a day past its expiry so that a replay is
 * recognised. Redemption is one conditional `UpdateItem` that sets `redeemedAt`, so of any
 * number of concurrent or replayed redemptions exactly one is first.
 */
export class DynamoDbBrokerCodeStore implements BrokerCodeStore {
  readonly #client: DynamoDBClient;
  readonly #tableName: string;

  constructor(options: { tableName: string; client?: DynamoDBClient }) {
    this.#tableName = options.tableName;
    this.#client = options.client ?? new DynamoDBClient({});
  }

  async create(record: BrokerCodeRecord, options?: CallOptions): Promise<boolean> {
    return putIfAbsent(this.#client, this.#tableName, toItem(record), options);
  }

  async get(codeKey: string, options?: CallOptions): Promise<BrokerCodeRecord | undefined> {
    const result = await this.#send(
      new GetItemCommand({ TableName: this.#tableName, Key: key(codeKey), ConsistentRead: true }),
      options,
    );
    return result.Item ? fromItem(codeKey, result.Item) : undefined;
  }

  async redeem(
    codeKey: string,
    redemption: { redemptionId: string; now: number },
    options?: CallOptions,
  ): Promise<Redemption> {
    let failure: unknown;
    try {
      const result = await this.#send(
        new UpdateItemCommand({
          TableName: this.#tableName,
          Key: key(codeKey),
          UpdateExpression: 'SET redeemedAt = :now, redemptionId = :id',
          ConditionExpression:
            'attribute_exists(pk) AND kind = :kind AND attribute_not_exists(redeemedAt)',
          ExpressionAttributeValues: {
            ':now': number(redemption.now),
            ':id': { S: redemption.redemptionId },
            ':kind': { S: 'code' },
          },
          ReturnValues: 'ALL_NEW',
        }),
        options,
      );
      const record = result.Attributes ? fromItem(codeKey, result.Attributes) : undefined;
      if (record) return { outcome: 'first', record };
    } catch (error) {
      failure = error;
    }
    // The condition failed (no such code, or spent), or the write's answer was lost: a
    // consistent read tells which, and our own redemption id means the write was ours.
    let stored: BrokerCodeRecord | undefined;
    try {
      stored = await this.get(codeKey, options);
    } catch (error) {
      throw failure instanceof ConditionalCheckFailedException ? error : (failure ?? error);
    }
    if (stored === undefined) return { outcome: 'unknown' };
    if (stored.redeemedAt === undefined) {
      // Not spent: the write failed before it applied. The app may retry.
      throw failure instanceof ConditionalCheckFailedException || failure === undefined
        ? awsUnavailable('DynamoDB', failure ?? new Error('unexpected answer'))
        : failure;
    }
    return stored.redemptionId === redemption.redemptionId
      ? { outcome: 'first', record: stored }
      : { outcome: 'replayed', record: stored };
  }

  // biome-ignore lint/suspicious/noExplicitAny: the command's own output type is read by each caller
  #send(command: { input: any }, options?: CallOptions): Promise<any> {
    return sendDynamoDb(this.#client, command, options);
  }
}

function key(codeKey: string): Item {
  return { pk: { S: ITEM_PREFIX.code + codeKey } };
}

function number(value: number): AttributeValue {
  return { N: String(value) };
}

function toItem(record: BrokerCodeRecord): Item {
  return {
    ...key(record.codeKey),
    kind: { S: 'code' },
    clientId: { S: record.clientId },
    redirectUri: { S: record.redirectUri },
    codeChallenge: { S: record.codeChallenge },
    connectionId: { S: record.connectionId },
    sessionKey: { S: record.sessionKey },
    sealedHandle: { B: record.sealedHandle },
    createdAt: number(record.createdAt),
    expiresAt: number(record.expiresAt),
    ttl: number(Math.ceil((record.expiresAt + BROKER_CODE_RETENTION_MS) / 1000)),
  };
}

/** A damaged item is no code. */
function fromItem(codeKey: string, item: Item): BrokerCodeRecord | undefined {
  const clientId = item.clientId?.S;
  const redirectUri = item.redirectUri?.S;
  const codeChallenge = item.codeChallenge?.S;
  const connectionId = item.connectionId?.S;
  const sessionKey = item.sessionKey?.S;
  const sealedHandle = item.sealedHandle?.B;
  const createdAt = item.createdAt?.N;
  const expiresAt = item.expiresAt?.N;
  if (
    item.kind?.S !== 'code' ||
    clientId === undefined ||
    redirectUri === undefined ||
    codeChallenge === undefined ||
    connectionId === undefined ||
    sessionKey === undefined ||
    sealedHandle === undefined ||
    createdAt === undefined ||
    expiresAt === undefined
  ) {
    return undefined;
  }
  return {
    codeKey,
    clientId,
    redirectUri,
    codeChallenge,
    connectionId,
    sessionKey,
    sealedHandle,
    createdAt: Number(createdAt),
    expiresAt: Number(expiresAt),
    redeemedAt: item.redeemedAt?.N === undefined ? undefined : Number(item.redeemedAt.N),
    redemptionId: item.redemptionId?.S,
  };
}
