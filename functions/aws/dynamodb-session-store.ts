import {
  type AttributeValue,
  ConditionalCheckFailedException,
  DeleteItemCommand,
  DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
  QueryCommand,
  UpdateItemCommand,
} from '@aws-sdk/client-dynamodb';
import { isLiveSession } from '../broker/connection.ts';
import { InvalidRequestError, SessionIntegrityError } from '../broker/errors.ts';
import type {
  AccessTokenExpiryInput,
  AcquireLeaseInput,
  AcquireResult,
  CallOptions,
  CommitInput,
  ConnectionPage,
  ConnectionSummary,
  DuePage,
  DueSession,
  EndedMark,
  EndedReason,
  ListConnectionsInput,
  RefreshFailureKind,
  ReleaseLeaseInput,
  SessionRecord,
  SessionStore,
  SweepIndex,
  Tombstone,
} from '../broker/ports.ts';
import { ENDED_REASONS } from '../broker/ports.ts';
import { CONNECTIONS_BY_ORG_INDEX, ITEM_PREFIX, SWEEP_INDEX } from '../shared/constants.ts';
import { putIfAbsent, sendDynamoDb } from './dynamodb-send.ts';

type Item = Record<string, AttributeValue>;

/** Partition key prefix of session items (the table also holds login transactions). */
const SESSION_PREFIX = ITEM_PREFIX.session;
/** Partition key prefix of the items that point from a connection id to its session. */
const CONNECTION_PREFIX = ITEM_PREFIX.connection;
/** Partition key prefix of the tombstones of ended sessions, by session key. */
const ENDED_PREFIX = ITEM_PREFIX.ended;
/** Queries one listing page may take when expired connections are filtered out. */
const MAX_LIST_QUERIES = 5;
/** Items linger this long past their expiry before DynamoDB TTL may delete them. */
const TTL_GRACE_SECONDS = 86_400;

/**
 * {@link SessionStore} on DynamoDB: one item per session, single-item conditional
 * operations only (no transactions). `ConditionalCheckFailedException` becomes a domain
 * outcome here; every other failure becomes `TemporarilyUnavailableError`.
 *
 * A connection is found by id through a small pointer item, `connection#<id>` ->
 * session key, written before the session and deleted after it, so a strongly consistent
 * lookup by id works as soon as `create` returns and a pointer never outlives its session
 * by more than a failed delete (a dangling pointer finds nothing: the session it names is
 * read and must carry the same id). Connections are listed from the sparse
 * {@link CONNECTIONS_BY_ORG_INDEX} on the session items.
 */
export class DynamoDbSessionStore implements SessionStore, SweepIndex {
  readonly shards: number = SWEEP_INDEX.shards;
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
    if (record.connectionId !== undefined) {
      const pointed = await this.#putPointer(record, options);
      if (!pointed) return false;
    }
    return putIfAbsent(this.#client, this.#tableName, toItem(record), options);
  }

  async findConnection(
    connectionId: string,
    options?: CallOptions,
  ): Promise<SessionRecord | undefined> {
    const pointer = await this.#send(
      new GetItemCommand({
        TableName: this.#tableName,
        Key: connectionKey(connectionId),
        ConsistentRead: true,
      }),
      options,
    );
    const sessionKey = pointer.Item?.sessionKey?.S;
    if (sessionKey === undefined) return undefined;
    const record = await this.get(sessionKey, options);
    return record?.connectionId === connectionId ? record : undefined;
  }

  async listConnections(
    input: ListConnectionsInput,
    options?: CallOptions,
  ): Promise<ConnectionPage> {
    const orgKey = CONNECTIONS_BY_ORG_INDEX.partitionPrefix + input.orgId;
    const userPrefix = input.userId === undefined ? undefined : `${input.userId}#`;
    let startKey = decodeCursor(input.cursor, orgKey, userPrefix);
    const connections: ConnectionSummary[] = [];
    // A page filters out expired sessions (DynamoDB's TTL deletes days late), so a query
    // may return fewer than asked for: query again from where it stopped, a few times.
    for (let query = 0; query < MAX_LIST_QUERIES && connections.length < input.limit; query++) {
      const result = await this.#send(
        new QueryCommand({
          TableName: this.#tableName,
          IndexName: CONNECTIONS_BY_ORG_INDEX.name,
          KeyConditionExpression:
            userPrefix === undefined ? '#org = :org' : '#org = :org AND begins_with(#user, :user)',
          FilterExpression: 'absoluteExpiresAt > :now AND idleExpiresAt > :now',
          ExpressionAttributeNames: {
            '#org': CONNECTIONS_BY_ORG_INDEX.partitionKey,
            ...(userPrefix === undefined ? {} : { '#user': CONNECTIONS_BY_ORG_INDEX.sortKey }),
          },
          ExpressionAttributeValues: {
            ':org': { S: orgKey },
            ':now': number(input.now),
            ...(userPrefix === undefined ? {} : { ':user': { S: userPrefix } }),
          },
          Limit: input.limit - connections.length,
          ...(startKey ? { ExclusiveStartKey: startKey } : {}),
        }),
        options,
      );
      for (const item of (result.Items ?? []) as Item[]) {
        const summary = summaryFromItem(item);
        if (summary && isLiveSession(summary, input.now)) connections.push(summary);
      }
      startKey = result.LastEvaluatedKey as Item | undefined;
      if (!startKey) break;
    }
    return { connections, nextCursor: startKey ? encodeCursor(startKey) : undefined };
  }

  /**
   * One page of a shard of the sweep's index: the sessions whose `sweepAt` is at or before
   * `dueBy`, oldest first. The index projects only the numbers the sweep decides on.
   */
  async dueSessions(
    input: { shard: number; dueBy: number; limit: number; cursor?: string | undefined },
    options?: CallOptions,
  ): Promise<DuePage> {
    const shardKey = SWEEP_INDEX.partitionPrefix + String(input.shard);
    const startKey = decodeSweepCursor(input.cursor, shardKey);
    const result = await this.#send(
      new QueryCommand({
        TableName: this.#tableName,
        IndexName: SWEEP_INDEX.name,
        KeyConditionExpression: '#shard = :shard AND #at <= :dueBy',
        ExpressionAttributeNames: {
          '#shard': SWEEP_INDEX.partitionKey,
          '#at': SWEEP_INDEX.sortKey,
        },
        ExpressionAttributeValues: { ':shard': { S: shardKey }, ':dueBy': number(input.dueBy) },
        Limit: input.limit,
        ...(startKey ? { ExclusiveStartKey: startKey } : {}),
      }),
      options,
    );
    const sessions: DueSession[] = [];
    for (const item of (result.Items ?? []) as Item[]) {
      const due = dueFromItem(item);
      if (due) sessions.push(due);
    }
    const lastKey = result.LastEvaluatedKey as Item | undefined;
    return { sessions, cursor: lastKey ? encodeSweepCursor(lastKey) : undefined };
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
    if (input.committedBefore !== undefined && input.expiringBy !== undefined) {
      // Outside the reuse window, or inside it with a token about to expire.
      conditions.push('(committedAt < :committedBefore OR accessTokenExpiresAt <= :expiringBy)');
      values[':committedBefore'] = number(input.committedBefore);
      values[':expiringBy'] = number(input.expiringBy);
    } else if (input.committedBefore !== undefined) {
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
    const metadata: string[] = [];
    const metadataNames: Record<string, string> = {};
    const metadataValues: Item = {};
    if (input.instanceUrl !== undefined) {
      metadata.push('instanceUrl = :instanceUrl');
      metadataValues[':instanceUrl'] = { S: input.instanceUrl };
    }
    if (input.scope !== undefined) {
      metadata.push('#scope = :scope');
      metadataNames['#scope'] = 'scope';
      metadataValues[':scope'] = { S: input.scope };
    }
    if (input.sweepAt !== undefined) {
      metadata.push('#sweepShard = :sweepShard, #sweepAt = :sweepAt');
      metadataNames['#sweepShard'] = SWEEP_INDEX.partitionKey;
      metadataNames['#sweepAt'] = SWEEP_INDEX.sortKey;
      metadataValues[':sweepShard'] = { S: sweepShardOf(input.sessionKey) };
      metadataValues[':sweepAt'] = number(input.sweepAt);
    }
    try {
      await this.#send(
        new UpdateItemCommand({
          TableName: this.#tableName,
          Key: key(input.sessionKey),
          UpdateExpression:
            'SET version = :next, ciphertext = :ciphertext, encryptedDataKey = :edk, ' +
            'committedAt = :committedAt, idleExpiresAt = :idle, #ttl = :ttl' +
            (metadata.length > 0 ? `, ${metadata.join(', ')} ` : ' ') +
            'REMOVE leaseOwner, leaseUntil, lastFailureAt, lastFailureKind, lastFailureOwner, ' +
            // The new token's expiry is learnt anew (noteAccessTokenExpiry).
            'failingSince, failingReportedAt, accessTokenExpiresAt',
          ConditionExpression: 'leaseOwner = :owner AND version = :version',
          ExpressionAttributeNames: { '#ttl': 'ttl', ...metadataNames },
          ExpressionAttributeValues: {
            ':owner': { S: input.owner },
            ':version': number(input.version),
            ...metadataValues,
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
    // A transient failure starts (or continues) the run `Connection Refresh Failing`
    // reports; `if_not_exists` keeps the first time, and the one report, in this same write.
    const sets = [
      'lastFailureAt = :failedAt',
      'lastFailureKind = :kind',
      'lastFailureOwner = :owner',
    ];
    if (input.failureKind === 'unavailable') {
      sets.push('failingSince = if_not_exists(failingSince, :failedAt)');
      if (input.reportFailing) {
        sets.push('failingReportedAt = if_not_exists(failingReportedAt, :failedAt)');
      }
    }
    const recordFailure = `SET ${sets.join(', ')}`;
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

  async noteAccessTokenExpiry(
    input: AccessTokenExpiryInput,
    options?: CallOptions,
  ): Promise<boolean> {
    // Only on the version whose token was introspected: a commit since then holds another
    // token (and removed the attribute), which this must never be taken for.
    try {
      await this.#send(
        new UpdateItemCommand({
          TableName: this.#tableName,
          Key: key(input.sessionKey),
          UpdateExpression: 'SET accessTokenExpiresAt = :expiresAt',
          ConditionExpression: 'attribute_exists(pk) AND version = :version',
          ExpressionAttributeValues: {
            ':version': number(input.version),
            ':expiresAt': number(input.expiresAt),
          },
        }),
        options,
      );
      return true;
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) return false;
      throw error;
    }
  }

  async deleteAsLeaseHolder(
    sessionKey: string,
    owner: string,
    ended?: EndedMark,
  ): Promise<boolean> {
    if (ended) await this.#putTombstone(sessionKey, ended);
    try {
      const result = await this.#send(
        new DeleteItemCommand({
          TableName: this.#tableName,
          Key: key(sessionKey),
          ConditionExpression: 'leaseOwner = :owner',
          ExpressionAttributeValues: { ':owner': { S: owner } },
          ReturnValues: 'ALL_OLD',
        }),
      );
      await this.#endPointer(result.Attributes as Item | undefined, ended);
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
    ended?: EndedMark,
  ): Promise<'deleted' | 'changed'> {
    // Conditional on the version the caller read, so whoever deletes knows which token set
    // it ended. When the answer of an applied delete is lost, the SDK's retry fails this
    // condition: the caller re-reads, finds nothing, and still holds the tokens to revoke.
    if (ended) await this.#putTombstone(sessionKey, ended, options);
    try {
      const result = await this.#send(
        new DeleteItemCommand({
          TableName: this.#tableName,
          Key: key(sessionKey),
          ConditionExpression: 'version = :version',
          ExpressionAttributeValues: { ':version': number(version) },
          ReturnValues: 'ALL_OLD',
        }),
        options,
      );
      await this.#endPointer(result.Attributes as Item | undefined, ended, options);
      return 'deleted';
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) return 'changed';
      throw error;
    }
  }

  async findEnded(sessionKey: string, options?: CallOptions): Promise<Tombstone | undefined> {
    const result = await this.#send(
      new GetItemCommand({
        TableName: this.#tableName,
        Key: endedKey(sessionKey),
        ConsistentRead: true,
      }),
      options,
    );
    return tombstoneFromItem(result.Item as Item | undefined);
  }

  async findEndedConnection(
    connectionId: string,
    options?: CallOptions,
  ): Promise<Tombstone | undefined> {
    const result = await this.#send(
      new GetItemCommand({
        TableName: this.#tableName,
        Key: connectionKey(connectionId),
        ConsistentRead: true,
      }),
      options,
    );
    return tombstoneFromItem(result.Item as Item | undefined);
  }

  /**
   * Writes the tombstone of a session about to be deleted, before the delete: a delete
   * whose answer is lost must not lose the explanation with it. The `ended#` item is put
   * unconditionally and the pointer marked on the condition that it still names this
   * session, so the SDK's retry of a write that landed writes the same again. When the
   * delete then does not happen (fenced, version moved), the tombstone is harmless: it is
   * read only for a key or id whose session is gone. Best effort: the session must end
   * all the same; without its tombstone the handle answers `invalid_session` and the id
   * `404`, as before tombstones existed.
   */
  async #putTombstone(sessionKey: string, ended: EndedMark, options?: CallOptions) {
    let record: SessionRecord | undefined;
    try {
      record = await this.get(sessionKey, options);
    } catch {
      return;
    }
    if (record === undefined) return;
    const attributes = tombstoneAttributes(record, ended);
    await Promise.all([
      this.#send(
        new PutItemCommand({
          TableName: this.#tableName,
          Item: {
            ...endedKey(sessionKey),
            ...attributes,
            ...(record.connectionId === undefined
              ? {}
              : { connectionId: { S: record.connectionId } }),
          },
        }),
        options,
      ).catch(() => {}),
      record.connectionId === undefined
        ? undefined
        : this.#markPointer(record, attributes, options).catch(() => {}),
    ]);
  }

  /**
   * Turns the connection pointer into the tombstone. It keeps its `sessionKey`, so it still
   * finds a session whose delete did not happen; its TTL becomes the later of the
   * session's and the retention's, so it never vanishes under a live session.
   */
  async #markPointer(
    record: SessionRecord,
    attributes: ReturnType<typeof tombstoneAttributes>,
    options?: CallOptions,
  ) {
    const ttl = Math.max(ttlSeconds(record.absoluteExpiresAt), Number(attributes.ttl.N));
    await this.#send(
      new UpdateItemCommand({
        TableName: this.#tableName,
        Key: connectionKey(record.connectionId ?? ''),
        UpdateExpression:
          'SET #kind = :kind, endedReason = :reason, endedAt = :endedAt, ' +
          'orgId = :orgId, userId = :userId, #ttl = :ttl',
        ConditionExpression: 'sessionKey = :sessionKey',
        ExpressionAttributeNames: { '#kind': 'kind', '#ttl': 'ttl' },
        ExpressionAttributeValues: {
          ':sessionKey': { S: record.sessionKey },
          ':kind': attributes.kind,
          ':reason': attributes.endedReason,
          ':endedAt': attributes.endedAt,
          ':orgId': attributes.orgId,
          ':userId': attributes.userId,
          ':ttl': number(ttl),
        },
      }),
      options,
    );
  }

  /** Removes the pointer of a deleted session; with `ended` it is the tombstone: kept. */
  async #endPointer(
    deleted: Item | undefined,
    ended: EndedMark | undefined,
    options?: CallOptions,
  ) {
    if (ended === undefined) await this.#deletePointer(deleted, options);
  }

  /**
   * Writes `connection#<id>` -> session key. When the answer of a put that landed is lost,
   * the SDK's retry fails the condition: read it back and accept our own pointer.
   */
  async #putPointer(record: SessionRecord, options?: CallOptions): Promise<boolean> {
    const connectionId = record.connectionId ?? '';
    const pointer: Item = {
      ...connectionKey(connectionId),
      kind: { S: 'connection' },
      sessionKey: { S: record.sessionKey },
      // Ids and the time only, for the `Connection Created` event its INSERT makes.
      orgId: { S: record.orgId },
      userId: { S: record.userId },
      createdAt: number(record.createdAt),
      ttl: number(ttlSeconds(record.absoluteExpiresAt)),
    };
    if (await putIfAbsent(this.#client, this.#tableName, pointer, options)) return true;
    const existing = await this.#send(
      new GetItemCommand({
        TableName: this.#tableName,
        Key: connectionKey(connectionId),
        ConsistentRead: true,
      }),
      options,
    );
    return existing.Item?.sessionKey?.S === record.sessionKey;
  }

  /**
   * Removes the pointer of a deleted session. Best effort: the session is already gone, so
   * a pointer left behind finds nothing and DynamoDB's TTL removes it later; failing the
   * delete that succeeded would tell the caller the wrong thing.
   */
  async #deletePointer(deleted: Item | undefined, options?: CallOptions): Promise<void> {
    const connectionId = deleted?.connectionId?.S;
    const sessionKey = deleted?.pk?.S?.slice(SESSION_PREFIX.length);
    if (connectionId === undefined || sessionKey === undefined) return;
    try {
      await this.#send(
        new DeleteItemCommand({
          TableName: this.#tableName,
          Key: connectionKey(connectionId),
          ConditionExpression: 'sessionKey = :sessionKey',
          ExpressionAttributeValues: { ':sessionKey': { S: sessionKey } },
        }),
        options,
      );
    } catch {
      // See above.
    }
  }

  // biome-ignore lint/suspicious/noExplicitAny: the command's own output type is read by each caller
  #send(command: { input: any }, options?: CallOptions): Promise<any> {
    return sendDynamoDb(this.#client, command, options);
  }
}

/**
 * The sweep index partition of a session: its key is base64url of a SHA-256, so its first
 * character spreads sessions evenly over the shards.
 */
export function sweepShardOf(sessionKey: string): string {
  const code = sessionKey.charCodeAt(0) || 0;
  return SWEEP_INDEX.partitionPrefix + String(code % SWEEP_INDEX.shards);
}

/** A cursor's fields (base64url JSON), or `invalid()` thrown: each caller checks them. */
function parseCursor(cursor: string, invalid: () => Error): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw invalid();
  }
  if (typeof parsed !== 'object' || parsed === null) throw invalid();
  return parsed as Record<string, unknown>;
}

/** A sweep cursor is the last index position returned, base64url JSON, checked on return. */
function encodeSweepCursor(lastKey: Item): string {
  const cursor = {
    s: lastKey.pk?.S?.slice(SESSION_PREFIX.length),
    a: lastKey[SWEEP_INDEX.sortKey]?.N,
  };
  return Buffer.from(JSON.stringify(cursor), 'utf8').toString('base64url');
}

function decodeSweepCursor(cursor: string | undefined, shardKey: string): Item | undefined {
  if (cursor === undefined) return undefined;
  const invalid = () => new InvalidRequestError('not a cursor of the sweep index');
  const { s, a } = parseCursor(cursor, invalid);
  if (typeof s !== 'string' || !/^[A-Za-z0-9_-]{1,64}$/.test(s)) throw invalid();
  if (typeof a !== 'string' || !/^\d{1,16}$/.test(a)) throw invalid();
  return {
    pk: { S: SESSION_PREFIX + s },
    [SWEEP_INDEX.partitionKey]: { S: shardKey },
    [SWEEP_INDEX.sortKey]: { N: a },
  };
}

/** An entry of the sweep index; `undefined` for an item that is not a session's. */
function dueFromItem(item: Item): DueSession | undefined {
  const pk = item.pk?.S;
  if (pk === undefined || !pk.startsWith(SESSION_PREFIX)) return undefined;
  const read = (name: string) => Number(item[name]?.N);
  const due = {
    sessionKey: pk.slice(SESSION_PREFIX.length),
    version: read('version'),
    committedAt: read('committedAt'),
    idleExpiresAt: read('idleExpiresAt'),
    absoluteExpiresAt: read('absoluteExpiresAt'),
    sweepAt: read(SWEEP_INDEX.sortKey),
  };
  return Object.values(due).every((value) => value !== '' && !Number.isNaN(value))
    ? due
    : undefined;
}

function key(sessionKey: string): Item {
  return { pk: { S: SESSION_PREFIX + sessionKey } };
}

function endedKey(sessionKey: string): Item {
  return { pk: { S: ENDED_PREFIX + sessionKey } };
}

/** The token-free attributes of a tombstone; DynamoDB's TTL removes it after retention. */
function tombstoneAttributes(record: SessionRecord, ended: EndedMark) {
  return {
    kind: { S: 'tombstone' },
    endedReason: { S: ended.reason },
    endedAt: number(ended.endedAt),
    orgId: { S: record.orgId },
    userId: { S: record.userId },
    ttl: number(Math.ceil(ended.retainUntil / 1000)),
    ...(ended.upstreamError === undefined
      ? {}
      : { upstreamError: { S: ended.upstreamError.slice(0, MAX_UPSTREAM_TEXT) } }),
    ...(ended.upstreamDescription === undefined
      ? {}
      : { upstreamDescription: { S: ended.upstreamDescription.slice(0, MAX_UPSTREAM_TEXT) } }),
  } satisfies Item;
}

/** Longest Salesforce error text a tombstone keeps. */
const MAX_UPSTREAM_TEXT = 200;

/**
 * A tombstone from an `ended#` item or a marked pointer; `undefined` for anything else
 * (a live pointer, a malformed item). Expired ones are dropped: DynamoDB's TTL deletes late.
 */
export function tombstoneFromItem(item: Item | undefined, now = Date.now()): Tombstone | undefined {
  const reason = item?.endedReason?.S;
  const endedAt = item?.endedAt?.N;
  const ttl = item?.ttl?.N;
  if (
    item === undefined ||
    reason === undefined ||
    !(ENDED_REASONS as readonly string[]).includes(reason)
  ) {
    return undefined;
  }
  if (endedAt === undefined || !Number.isFinite(Number(endedAt))) return undefined;
  if (ttl !== undefined && Number(ttl) * 1000 <= now) return undefined;
  return {
    connectionId: item.connectionId?.S ?? connectionIdOfPointer(item),
    orgId: item.orgId?.S ?? '',
    userId: item.userId?.S ?? '',
    reason: reason as EndedReason,
    endedAt: Number(endedAt),
  };
}

function connectionIdOfPointer(item: Item): string | undefined {
  const pk = item.pk?.S;
  return pk?.startsWith(CONNECTION_PREFIX) ? pk.slice(CONNECTION_PREFIX.length) : undefined;
}

function connectionKey(connectionId: string): Item {
  return { pk: { S: CONNECTION_PREFIX + connectionId } };
}

/** The index sort key: a user's connections together, oldest first. */
function userKey(record: SessionRecord, connectionId: string): string {
  return `${record.userId}#${String(record.createdAt).padStart(15, '0')}#${connectionId}`;
}

/**
 * A listing cursor is the index position of the last connection returned, base64url JSON.
 * It is checked against the query it continues: a cursor from another organization or
 * user, or a forged one, is refused rather than passed to DynamoDB.
 */
function encodeCursor(lastKey: Item): string {
  const cursor = {
    s: lastKey.pk?.S?.slice(SESSION_PREFIX.length),
    u: lastKey[CONNECTIONS_BY_ORG_INDEX.sortKey]?.S,
  };
  return Buffer.from(JSON.stringify(cursor), 'utf8').toString('base64url');
}

function decodeCursor(
  cursor: string | undefined,
  orgKey: string,
  userPrefix: string | undefined,
): Item | undefined {
  if (cursor === undefined) return undefined;
  const invalid = () => new InvalidRequestError('"cursor" is not a cursor of this listing.');
  const { s, u } = parseCursor(cursor, invalid);
  if (typeof s !== 'string' || !/^[A-Za-z0-9_-]{1,64}$/.test(s)) throw invalid();
  if (typeof u !== 'string' || u.length > 512) throw invalid();
  if (userPrefix !== undefined && !u.startsWith(userPrefix)) throw invalid();
  return {
    pk: { S: SESSION_PREFIX + s },
    [CONNECTIONS_BY_ORG_INDEX.partitionKey]: { S: orgKey },
    [CONNECTIONS_BY_ORG_INDEX.sortKey]: { S: u },
  };
}

/** A connection's metadata from an index item (which holds no ciphertext). */
function summaryFromItem(item: Item): ConnectionSummary | undefined {
  const connectionId = item.connectionId?.S;
  if (connectionId === undefined) return undefined;
  return {
    connectionId,
    orgId: readString(item, 'orgId'),
    userId: readString(item, 'userId'),
    instanceUrl: item.instanceUrl?.S ?? '',
    scope: item.scope?.S ?? '',
    createdAt: readNumber(item, 'createdAt'),
    lastRefreshedAt: readNumber(item, 'committedAt'),
    version: readNumber(item, 'version'),
    absoluteExpiresAt: readNumber(item, 'absoluteExpiresAt'),
    idleExpiresAt: readNumber(item, 'idleExpiresAt'),
  };
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
  if (record.connectionId !== undefined) {
    item.connectionId = { S: record.connectionId };
    item[CONNECTIONS_BY_ORG_INDEX.partitionKey] = {
      S: CONNECTIONS_BY_ORG_INDEX.partitionPrefix + record.orgId,
    };
    item[CONNECTIONS_BY_ORG_INDEX.sortKey] = { S: userKey(record, record.connectionId) };
  }
  if (record.instanceUrl !== undefined) item.instanceUrl = { S: record.instanceUrl };
  if (record.scope !== undefined) item.scope = { S: record.scope };
  if (record.loginHost !== undefined) item.loginHost = { S: record.loginHost };
  if (record.salesforceApp !== undefined) item.salesforceApp = { S: record.salesforceApp };
  if (record.siteUrl !== undefined) item.siteUrl = { S: record.siteUrl };
  if (record.leaseOwner !== undefined) item.leaseOwner = { S: record.leaseOwner };
  if (record.leaseUntil !== undefined) item.leaseUntil = number(record.leaseUntil);
  if (record.sweepAt !== undefined) {
    item[SWEEP_INDEX.partitionKey] = { S: sweepShardOf(record.sessionKey) };
    item[SWEEP_INDEX.sortKey] = number(record.sweepAt);
  }
  if (record.accessTokenExpiresAt !== undefined) {
    item.accessTokenExpiresAt = number(record.accessTokenExpiresAt);
  }
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
    connectionId: item.connectionId?.S,
    instanceUrl: item.instanceUrl?.S,
    scope: item.scope?.S,
    loginHost: item.loginHost?.S,
    salesforceApp: item.salesforceApp?.S,
    siteUrl: item.siteUrl?.S,
    failingSince: optionalNumber(item, 'failingSince'),
    failingReportedAt: optionalNumber(item, 'failingReportedAt'),
    sweepAt: item.sweepAt?.N === undefined ? undefined : Number(item.sweepAt.N),
    accessTokenExpiresAt: optionalNumber(item, 'accessTokenExpiresAt'),
  };
}

function optionalNumber(item: Item, name: string): number | undefined {
  const value = item[name]?.N;
  return value === undefined ? undefined : Number(value);
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
