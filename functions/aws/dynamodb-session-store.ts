import {
  type AttributeValue,
  ConditionalCheckFailedException,
  DeleteItemCommand,
  DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
  UpdateItemCommand,
} from '@aws-sdk/client-dynamodb';
import { SessionIntegrityError } from '../broker/errors.ts';
import type {
  AcquireLeaseInput,
  AcquireResult,
  CallOptions,
  CommitInput,
  RefreshFailureKind,
  ReleaseLeaseInput,
  SessionRecord,
  SessionStore,
} from '../broker/ports.ts';
import { ITEM_PREFIX } from '../shared/constants.ts';
import { awsUnavailable } from './errors.ts';

type Item = Record<string, AttributeValue>;

/** Partition key prefix of session items (the table also holds login transactions). */
const SESSION_PREFIX = ITEM_PREFIX.session;
/** Items linger this long past their expiry before DynamoDB TTL may delete them. */
const TTL_GRACE_SECONDS = 86_400;

/**
 * {@link SessionStore} on DynamoDB: one item per session, single-item conditional
 * operations only (no transactions). `ConditionalCheckFailedException` becomes a domain
 * outcome here; every other failure becomes `TemporarilyUnavailableError`.
 */
export class DynamoDbSessionStore implements SessionStore {
  readonly #client: DynamoDBClient;
  readonly #tableName: string;

  constructor(options: { tableName: string; client?: DynamoDBClient }) {
    this.#tableName = options.tableName;
    this.#client = options.client ?? new DynamoDBClient({});
  }

  async get(sessionKey: string, options?: CallOptions): Promise<SessionRecord | undefined> {
    const result = await this.#send(
      new GetItemCommand({
        TableName: this.#tableName,
        Key: key(sessionKey),
        ConsistentRead: true,
      }),
      options,
    );
    return result.Item ? fromItem(result.Item) : undefined;
  }

  async create(record: SessionRecord, options?: CallOptions): Promise<boolean> {
    try {
      await this.#send(
        new PutItemCommand({
          TableName: this.#tableName,
          Item: toItem(record),
          ConditionExpression: 'attribute_not_exists(pk)',
        }),
        options,
      );
      return true;
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) return false;
      throw error;
    }
  }

  async tryAcquireLease(input: AcquireLeaseInput): Promise<AcquireResult> {
    // Acquire only a live session whose lease is free or has lapsed:
    //
    //   holder A: |--acquire--|----- Salesforce -----|--commit--|
    //             |<------------ leaseUntil ------------------->|
    //   caller B:      acquire fails (lease held) -> waits, polls
    //   caller C:                                   after leaseUntil: may acquire
    //
    // With a version hint, only that version may be refreshed (a newer one is returned
    // instead); without one, a version committed within the reuse window is not refreshed.
    // `:leaseEndedBy` is `now` less the clock-skew margin (see `refresh.ts`).
    const conditions = [
      'attribute_exists(pk)',
      'absoluteExpiresAt > :now',
      'idleExpiresAt > :now',
      '(attribute_not_exists(leaseUntil) OR leaseUntil <= :leaseEndedBy)',
    ];
    const values: Item = {
      ':now': number(input.now),
      ':leaseEndedBy': number(input.leaseEndedBy),
      ':owner': { S: input.owner },
      ':leaseUntil': number(input.leaseUntil),
    };
    if (input.expectedVersion !== undefined) {
      conditions.push('version = :expectedVersion');
      values[':expectedVersion'] = number(input.expectedVersion);
    }
    if (input.committedBefore !== undefined) {
      conditions.push('committedAt < :committedBefore');
      values[':committedBefore'] = number(input.committedBefore);
    }
    try {
      const result = await this.#send(
        new UpdateItemCommand({
          TableName: this.#tableName,
          Key: key(input.sessionKey),
          UpdateExpression: 'SET leaseOwner = :owner, leaseUntil = :leaseUntil',
          ConditionExpression: conditions.join(' AND '),
          ExpressionAttributeValues: values,
          ReturnValues: 'ALL_NEW',
        }),
      );
      if (!result.Attributes) return { acquired: false };
      return { acquired: true, record: fromItem(result.Attributes) };
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) return { acquired: false };
      throw error;
    }
  }

  async commit(input: CommitInput, options?: CallOptions): Promise<'committed' | 'fenced'> {
    // Fenced: only the lease owner, and only on the version it read. A holder whose lease
    // lapsed while another caller refreshed, or whose session a logout deleted, fails here
    // and can never overwrite newer data. The lease is cleared in the same write.
    try {
      await this.#send(
        new UpdateItemCommand({
          TableName: this.#tableName,
          Key: key(input.sessionKey),
          UpdateExpression:
            'SET version = :next, ciphertext = :ciphertext, encryptedDataKey = :edk, ' +
            'committedAt = :committedAt, idleExpiresAt = :idle, #ttl = :ttl ' +
            'REMOVE leaseOwner, leaseUntil, lastFailureAt, lastFailureKind, lastFailureOwner',
          ConditionExpression: 'leaseOwner = :owner AND version = :version',
          ExpressionAttributeNames: { '#ttl': 'ttl' },
          ExpressionAttributeValues: {
            ':owner': { S: input.owner },
            ':version': number(input.version),
            ':next': number(input.version + 1),
            ':ciphertext': { B: input.sealed.ciphertext },
            ':edk': { B: input.sealed.encryptedDataKey },
            ':committedAt': number(input.committedAt),
            ':idle': number(input.idleExpiresAt),
            ':ttl': number(ttlSeconds(input.idleExpiresAt)),
          },
        }),
        options,
      );
      return 'committed';
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) return 'fenced';
      throw error;
    }
  }

  async releaseLease(input: ReleaseLeaseInput): Promise<void> {
    // With `keepLease` the lease stays until `leaseUntil`, as a fence: the holder's upstream
    // request may still be running at Salesforce with the current refresh token.
    const recordFailure =
      'SET lastFailureAt = :failedAt, lastFailureKind = :kind, lastFailureOwner = :owner';
    try {
      await this.#send(
        new UpdateItemCommand({
          TableName: this.#tableName,
          Key: key(input.sessionKey),
          UpdateExpression: input.keepLease
            ? recordFailure
            : `${recordFailure} REMOVE leaseOwner, leaseUntil`,
          ConditionExpression: 'leaseOwner = :owner',
          ExpressionAttributeValues: {
            ':owner': { S: input.owner },
            ':failedAt': number(input.failedAt),
            ':kind': { S: input.failureKind },
          },
        }),
      );
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) return;
      throw error;
    }
  }

  async deleteAsLeaseHolder(sessionKey: string, owner: string): Promise<boolean> {
    try {
      await this.#send(
        new DeleteItemCommand({
          TableName: this.#tableName,
          Key: key(sessionKey),
          ConditionExpression: 'leaseOwner = :owner',
          ExpressionAttributeValues: { ':owner': { S: owner } },
        }),
      );
      return true;
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) return false;
      throw error;
    }
  }

  async deleteVersion(
    sessionKey: string,
    version: number,
    options?: CallOptions,
  ): Promise<'deleted' | 'changed'> {
    // Conditional on the version the caller read, so whoever deletes knows which token set
    // it ended. When the answer of an applied delete is lost, the SDK's retry fails this
    // condition: the caller re-reads, finds nothing, and still holds the tokens to revoke.
    try {
      await this.#send(
        new DeleteItemCommand({
          TableName: this.#tableName,
          Key: key(sessionKey),
          ConditionExpression: 'version = :version',
          ExpressionAttributeValues: { ':version': number(version) },
        }),
        options,
      );
      return 'deleted';
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) return 'changed';
      throw error;
    }
  }

  // biome-ignore lint/suspicious/noExplicitAny: one typed send for every command keeps the error translation in one place
  async #send<T extends { input: any }>(command: T, options?: CallOptions): Promise<any> {
    try {
      // A deadline from the domain (the time left in a lease) aborts the call, SDK retries
      // included; the per-attempt timeouts are in the client's own configuration.
      return await this.#client.send(
        // biome-ignore lint/suspicious/noExplicitAny: see above
        command as any,
        options?.timeoutMs === undefined
          ? {}
          : { abortSignal: AbortSignal.timeout(Math.max(1, options.timeoutMs)) },
      );
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) throw error;
      throw awsUnavailable('DynamoDB', error);
    }
  }
}

function key(sessionKey: string): Item {
  return { pk: { S: SESSION_PREFIX + sessionKey } };
}

function number(value: number): AttributeValue {
  return { N: String(value) };
}

function ttlSeconds(expiresAtMs: number): number {
  return Math.ceil(expiresAtMs / 1000) + TTL_GRACE_SECONDS;
}

function toItem(record: SessionRecord): Item {
  const item: Item = {
    ...key(record.sessionKey),
    kind: { S: 'session' },
    version: number(record.version),
    ciphertext: { B: record.sealed.ciphertext },
    encryptedDataKey: { B: record.sealed.encryptedDataKey },
    committedAt: number(record.committedAt),
    createdAt: number(record.createdAt),
    absoluteExpiresAt: number(record.absoluteExpiresAt),
    idleExpiresAt: number(record.idleExpiresAt),
    orgId: { S: record.orgId },
    userId: { S: record.userId },
    ttl: number(ttlSeconds(Math.min(record.absoluteExpiresAt, record.idleExpiresAt))),
  };
  if (record.leaseOwner !== undefined) item.leaseOwner = { S: record.leaseOwner };
  if (record.leaseUntil !== undefined) item.leaseUntil = number(record.leaseUntil);
  return item;
}

function fromItem(item: Item): SessionRecord {
  const pk = readString(item, 'pk');
  if (!pk.startsWith(SESSION_PREFIX)) throw new SessionIntegrityError('Not a session item');
  const failureKind = item.lastFailureKind?.S;
  return {
    sessionKey: pk.slice(SESSION_PREFIX.length),
    version: readNumber(item, 'version'),
    sealed: {
      ciphertext: readBinary(item, 'ciphertext'),
      encryptedDataKey: readBinary(item, 'encryptedDataKey'),
    },
    committedAt: readNumber(item, 'committedAt'),
    createdAt: readNumber(item, 'createdAt'),
    absoluteExpiresAt: readNumber(item, 'absoluteExpiresAt'),
    idleExpiresAt: readNumber(item, 'idleExpiresAt'),
    leaseOwner: item.leaseOwner?.S,
    leaseUntil: item.leaseUntil?.N === undefined ? undefined : Number(item.leaseUntil.N),
    lastFailureAt: item.lastFailureAt?.N === undefined ? undefined : Number(item.lastFailureAt.N),
    lastFailureKind: isFailureKind(failureKind) ? failureKind : undefined,
    lastFailureOwner: item.lastFailureOwner?.S,
    orgId: item.orgId?.S ?? '',
    userId: item.userId?.S ?? '',
  };
}

const FAILURE_KINDS: readonly string[] = [
  'unavailable',
  'misconfigured',
  'forbidden',
  'integrity',
] satisfies RefreshFailureKind[];

function isFailureKind(value: string | undefined): value is RefreshFailureKind {
  return value !== undefined && FAILURE_KINDS.includes(value);
}

function readString(item: Item, name: string): string {
  const value = item[name]?.S;
  if (value === undefined)
    throw new SessionIntegrityError(`Session item attribute "${name}" must be a string`);
  return value;
}

function readNumber(item: Item, name: string): number {
  const value = item[name]?.N;
  if (value === undefined)
    throw new SessionIntegrityError(`Session item attribute "${name}" must be a number`);
  return Number(value);
}

function readBinary(item: Item, name: string): Uint8Array {
  const value = item[name]?.B;
  if (value === undefined)
    throw new SessionIntegrityError(`Session item attribute "${name}" must be binary`);
  return value;
}
