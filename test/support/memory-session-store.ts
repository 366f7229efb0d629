import { isLiveSession, summarizeConnection } from '../../functions/broker/connection.ts';
import type {
  AccessTokenExpiryInput,
  AcquireLeaseInput,
  AcquireResult,
  CommitInput,
  ConnectionPage,
  EndedMark,
  ListConnectionsInput,
  ReleaseLeaseInput,
  SessionRecord,
  SessionStore,
  Tombstone,
} from '../../functions/broker/ports.ts';

/**
 * An in-memory {@link SessionStore} with the same conditions as the DynamoDB adapter, for
 * unit tests that drive time and interleavings by hand.
 */
export class MemorySessionStore implements SessionStore {
  readonly items = new Map<string, SessionRecord>();
  /** Tombstones by session key (the adapter's `ended#` items and marked pointers). */
  readonly tombstones = new Map<string, Tombstone>();
  readonly calls = { get: 0, acquire: 0, commit: 0, release: 0, delete: 0 };

  async get(sessionKey: string): Promise<SessionRecord | undefined> {
    this.calls.get++;
    const item = this.items.get(sessionKey);
    return item ? structuredClone(item) : undefined;
  }

  async create(record: SessionRecord): Promise<boolean> {
    if (this.items.has(record.sessionKey)) return false;
    this.items.set(record.sessionKey, structuredClone(record));
    return true;
  }

  async findConnection(connectionId: string): Promise<SessionRecord | undefined> {
    this.calls.get++;
    for (const item of this.items.values()) {
      if (item.connectionId === connectionId) return structuredClone(item);
    }
    return undefined;
  }

  /** Same order and paging as the index: by user, then creation; the cursor is an offset. */
  async listConnections(input: ListConnectionsInput): Promise<ConnectionPage> {
    const matching = [...this.items.values()]
      .filter(
        (item) =>
          item.orgId === input.orgId &&
          (input.userId === undefined || item.userId === input.userId) &&
          isLiveSession(item, input.now),
      )
      .map((item) => summarizeConnection(item))
      .filter((summary) => summary !== undefined)
      .sort((a, b) =>
        a.userId === b.userId ? a.createdAt - b.createdAt : a.userId < b.userId ? -1 : 1,
      );
    const start = input.cursor === undefined ? 0 : Number(input.cursor);
    const connections = matching.slice(start, start + input.limit);
    const end = start + connections.length;
    return { connections, nextCursor: end < matching.length ? String(end) : undefined };
  }

  async tryAcquireLease(input: AcquireLeaseInput): Promise<AcquireResult> {
    this.calls.acquire++;
    const item = this.items.get(input.sessionKey);
    const ok =
      item !== undefined &&
      item.absoluteExpiresAt > input.now &&
      item.idleExpiresAt > input.now &&
      (item.leaseUntil === undefined || item.leaseUntil <= input.leaseEndedBy) &&
      (input.expectedVersion === undefined || item.version === input.expectedVersion) &&
      (input.committedBefore === undefined ||
        item.committedAt < input.committedBefore ||
        (input.expiringBy !== undefined &&
          item.accessTokenExpiresAt !== undefined &&
          item.accessTokenExpiresAt <= input.expiringBy));
    if (!ok || !item) return { acquired: false };
    item.leaseOwner = input.owner;
    item.leaseUntil = input.leaseUntil;
    return { acquired: true, record: structuredClone(item) };
  }

  async commit(input: CommitInput): Promise<'committed' | 'fenced'> {
    this.calls.commit++;
    const item = this.items.get(input.sessionKey);
    if (!item || item.leaseOwner !== input.owner || item.version !== input.version) return 'fenced';
    item.version = input.version + 1;
    item.sealed = input.sealed;
    item.committedAt = input.committedAt;
    item.idleExpiresAt = input.idleExpiresAt;
    if (input.instanceUrl !== undefined) item.instanceUrl = input.instanceUrl;
    if (input.scope !== undefined) item.scope = input.scope;
    item.leaseOwner = undefined;
    item.leaseUntil = undefined;
    item.lastFailureAt = undefined;
    item.lastFailureKind = undefined;
    item.lastFailureOwner = undefined;
    item.failingSince = undefined;
    item.failingReportedAt = undefined;
    item.accessTokenExpiresAt = undefined;
    return 'committed';
  }

  async noteAccessTokenExpiry(input: AccessTokenExpiryInput): Promise<boolean> {
    const item = this.items.get(input.sessionKey);
    if (!item || item.version !== input.version) return false;
    item.accessTokenExpiresAt = input.expiresAt;
    return true;
  }

  async releaseLease(input: ReleaseLeaseInput): Promise<void> {
    this.calls.release++;
    const item = this.items.get(input.sessionKey);
    if (!item || item.leaseOwner !== input.owner) return;
    if (!input.keepLease) {
      item.leaseOwner = undefined;
      item.leaseUntil = undefined;
    }
    item.lastFailureAt = input.failedAt;
    item.lastFailureKind = input.failureKind;
    item.lastFailureOwner = input.owner;
    if (input.failureKind === 'unavailable') {
      item.failingSince ??= input.failedAt;
      if (input.reportFailing) item.failingReportedAt ??= input.failedAt;
    }
  }

  async deleteAsLeaseHolder(
    sessionKey: string,
    owner: string,
    ended?: EndedMark,
  ): Promise<boolean> {
    this.calls.delete++;
    const item = this.items.get(sessionKey);
    if (!item || item.leaseOwner !== owner) return false;
    this.items.delete(sessionKey);
    this.#bury(item, ended);
    return true;
  }

  async deleteVersion(
    sessionKey: string,
    version: number,
    _options?: unknown,
    ended?: EndedMark,
  ): Promise<'deleted' | 'changed'> {
    this.calls.delete++;
    const item = this.items.get(sessionKey);
    if (!item || item.version !== version) return 'changed';
    this.items.delete(sessionKey);
    this.#bury(item, ended);
    return 'deleted';
  }

  async findEnded(sessionKey: string): Promise<Tombstone | undefined> {
    return this.tombstones.get(sessionKey);
  }

  async findEndedConnection(connectionId: string): Promise<Tombstone | undefined> {
    for (const tombstone of this.tombstones.values()) {
      if (tombstone.connectionId === connectionId) return tombstone;
    }
    return undefined;
  }

  #bury(item: SessionRecord, ended: EndedMark | undefined): void {
    if (ended === undefined) return;
    this.tombstones.set(item.sessionKey, {
      connectionId: item.connectionId,
      orgId: item.orgId,
      userId: item.userId,
      reason: ended.reason,
      endedAt: ended.endedAt,
    });
  }

  /** Deletes unconditionally and returns what was there (a test's stand-in for a logout). */
  async delete(sessionKey: string): Promise<SessionRecord | undefined> {
    this.calls.delete++;
    const item = this.items.get(sessionKey);
    this.items.delete(sessionKey);
    return item;
  }
}
