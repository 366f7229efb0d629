import { randomUUID } from 'node:crypto';
import {
  type AttributeValue,
  ConditionalCheckFailedException,
  DynamoDBClient,
  GetItemCommand,
  UpdateItemCommand,
} from '@aws-sdk/client-dynamodb';
import type { CallOptions, LoginTransaction, LoginTransactionStore } from '../broker/ports.ts';
import { ITEM_PREFIX } from '../shared/constants.ts';
import { putIfAbsent, sendDynamoDb } from './dynamodb-send.ts';

type Item = Record<string, AttributeValue>;

/** Partition key prefix of login transactions (the table also holds sessions). */
export const LOGIN_PREFIX = ITEM_PREFIX.login;

/**
 * {@link LoginTransactionStore} on DynamoDB, in the session table: one item per pending
 * login under `login#<SHA-256 of the state>`, with `ttl` (epoch seconds) at its expiry so
 * DynamoDB TTL removes abandoned logins. TTL deletes late (up to days), so the code
 * checks `expiresAt` itself; TTL is only housekeeping.
 *
 * Both writes survive a lost answer: when DynamoDB applies a write but its answer is lost,
 * the SDK's retry fails the write's own condition, so a failed condition is read back
 * (consistently) to tell "this call's write landed" from "someone else's did".
 * @see https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/TTL.html
 */
export class DynamoDbLoginTransactionStore implements LoginTransactionStore {
  readonly #client: DynamoDBClient;
  readonly #tableName: string;

  constructor(options: { tableName: string; client?: DynamoDBClient }) {
    this.#tableName = options.tableName;
    this.#client = options.client ?? new DynamoDBClient({});
  }

  async create(transaction: LoginTransaction, options?: CallOptions): Promise<boolean> {
    const item: Item = {
      ...key(transaction.stateKey),
      kind: { S: 'login' },
      sealedVerifier: { B: transaction.sealedVerifier },
      returnTo: { S: transaction.returnTo },
      cookieHash: { S: transaction.cookieHash },
      createdAt: number(transaction.createdAt),
      expiresAt: number(transaction.expiresAt),
      ttl: number(Math.ceil(transaction.expiresAt / 1000)),
    };
    if (transaction.replacesSessionKey !== undefined) {
      item.replacesSessionKey = { S: transaction.replacesSessionKey };
    }
    if (transaction.loginHost !== undefined) item.loginHost = { S: transaction.loginHost };
    if (transaction.salesforceApp !== undefined) {
      item.salesforceApp = { S: transaction.salesforceApp };
    }
    if (transaction.handoff !== undefined) {
      // The app's state is echoed to it, so it is kept as sent; the item lives 10 minutes.
      item.handoffClientId = { S: transaction.handoff.clientId };
      item.handoffRedirectUri = { S: transaction.handoff.redirectUri };
      item.handoffState = { S: transaction.handoff.appState };
      item.handoffCodeChallenge = { S: transaction.handoff.codeChallenge };
    }
    if (await putIfAbsent(this.#client, this.#tableName, item, options)) return true;
    // 256 random bits do not collide: the item there is most likely this put, applied with
    // its answer lost and retried by the SDK. It is ours if it carries our cookie hash.
    const stored = await this.#read(transaction.stateKey, options);
    return stored?.cookieHash?.S === transaction.cookieHash;
  }

  async consume(stateKey: string, options?: CallOptions): Promise<LoginTransaction | undefined> {
    // One conditional update that marks the item consumed by this call and returns it: of
    // any number of concurrent or replayed callbacks with this state, exactly one gets the
    // transaction. A mark rather than a delete, so that a lost answer can be told apart
    // from a replay by reading the mark back; the consumed item goes with its TTL.
    const consumer = randomUUID();
    try {
      const result = await sendDynamoDb(
        this.#client,
        new UpdateItemCommand({
          TableName: this.#tableName,
          Key: key(stateKey),
          UpdateExpression: 'SET consumedBy = :consumer',
          ConditionExpression: 'attribute_exists(pk) AND attribute_not_exists(consumedBy)',
          ExpressionAttributeValues: { ':consumer': { S: consumer } },
          ReturnValues: 'ALL_NEW',
        }),
        options,
      );
      const attributes = (result as { Attributes?: Item }).Attributes;
      return attributes ? fromItem(stateKey, attributes) : undefined;
    } catch (error) {
      if (!(error instanceof ConditionalCheckFailedException)) throw error;
    }
    const stored = await this.#read(stateKey, options);
    return stored?.consumedBy?.S === consumer ? fromItem(stateKey, stored) : undefined;
  }

  async #read(stateKey: string, options: CallOptions | undefined): Promise<Item | undefined> {
    const result = await sendDynamoDb(
      this.#client,
      new GetItemCommand({ TableName: this.#tableName, Key: key(stateKey), ConsistentRead: true }),
      options,
    );
    return (result as { Item?: Item }).Item;
  }
}

function key(stateKey: string): Item {
  return { pk: { S: LOGIN_PREFIX + stateKey } };
}

function number(value: number): AttributeValue {
  return { N: String(value) };
}

/** A damaged item is treated as no transaction: the login cannot be completed. */
function fromItem(stateKey: string, item: Item): LoginTransaction | undefined {
  const sealedVerifier = item.sealedVerifier?.B;
  const returnTo = item.returnTo?.S;
  const cookieHash = item.cookieHash?.S;
  const createdAt = item.createdAt?.N;
  const expiresAt = item.expiresAt?.N;
  // Part of a handoff is a damaged item: fail closed rather than fall back to the cookie.
  const handoff = handoffFromItem(item);
  if (
    handoff === null ||
    item.kind?.S !== 'login' ||
    sealedVerifier === undefined ||
    returnTo === undefined ||
    cookieHash === undefined ||
    createdAt === undefined ||
    expiresAt === undefined
  ) {
    return undefined;
  }
  return {
    stateKey,
    sealedVerifier,
    returnTo,
    cookieHash,
    createdAt: Number(createdAt),
    expiresAt: Number(expiresAt),
    replacesSessionKey: item.replacesSessionKey?.S,
    handoff: handoff ?? undefined,
    loginHost: item.loginHost?.S,
    salesforceApp: item.salesforceApp?.S,
  };
}

/** The handoff of a transaction; `null` when only part of it is there (a damaged item). */
function handoffFromItem(item: Item): LoginTransaction['handoff'] | null {
  const clientId = item.handoffClientId?.S;
  const redirectUri = item.handoffRedirectUri?.S;
  const appState = item.handoffState?.S;
  const codeChallenge = item.handoffCodeChallenge?.S;
  if (clientId === undefined) return undefined;
  if (redirectUri === undefined || appState === undefined || codeChallenge === undefined) {
    return null;
  }
  return { clientId, redirectUri, appState, codeChallenge };
}
