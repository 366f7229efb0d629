import {
  endedMark,
  isLiveSession,
  isWellFormedConnectionId,
  summarizeConnection,
} from './connection.ts';
import { InvalidSessionError, NotFoundError, SessionIntegrityError } from './errors.ts';
import { type EndSessionOutcome, endSession, type RevocationClient } from './logout.ts';
import type {
  CallOptions,
  ConnectionPage,
  ConnectionSummary,
  SessionRecord,
  Tombstone,
} from './ports.ts';
import {
  type FreshAccessToken,
  type RefreshDependencies,
  type RefreshGrantClient,
  refreshStoredSession,
} from './refresh.ts';

/** What the service API needs: the refresh path's adapters, and revocation for `DELETE`. */
export interface ServiceDependencies extends RefreshDependencies {
  salesforce: RefreshGrantClient & RevocationClient;
  config: RefreshDependencies['config'] & { invocationDeadlineMs: number };
}

/** The end of the caller's invocation: every store and upstream call must finish by then. */
export interface Deadline {
  at: number;
  now: () => number;
}

/**
 * Connections ended per `DELETE /connections` call: each is a read, a delete, a KMS
 * decrypt and a revocation at Salesforce, run side by side, and all must fit in one
 * invocation. More matches answer `next_cursor`.
 */
export const MAX_ENDED_PER_CALL = 25;

const NOT_FOUND = 'No such connection.';

/**
 * `POST /connections/{connection_id}/token` (README "Backend jobs: the service API"):
 * `/refresh`'s answer and semantics for a connection found by id, through the same
 * single-flight loop on the same item, so a job and the user's app share one lease and
 * one upstream call. An unknown or ended connection is `404 not_found`; Salesforce's
 * `invalid_grant` is `401 reauthentication_required`, as on `/refresh`.
 */
export async function connectionToken(
  deps: ServiceDependencies,
  connectionId: string,
  versionHint?: number,
): Promise<FreshAccessToken> {
  const record = await findLiveConnection(deps, connectionId);
  try {
    return await refreshStoredSession(deps, record.sessionKey, versionHint);
  } catch (error) {
    // Ended between our read and the refresh (a logout, a revocation): gone, like unknown.
    if (error instanceof InvalidSessionError && !(error instanceof SessionIntegrityError)) {
      throw new NotFoundError(NOT_FOUND, { cause: error });
    }
    throw error;
  }
}

/** What `GET /connections/{connection_id}` finds: a live connection or a tombstone. */
export type DescribedConnection =
  | { status: 'active'; summary: ConnectionSummary }
  | { status: 'ended'; tombstone: Tombstone };

/**
 * `GET /connections/{connection_id}`: the metadata, never a token; for a connection that
 * Salesforce or the service API ended within `endedConnectionRetentionDays`, its
 * tombstone (why and when); `404` when unknown. The tombstone is read only when no live
 * session was found, so a live connection costs no extra read.
 */
export async function describeConnection(
  deps: Pick<ServiceDependencies, 'store' | 'clock'>,
  connectionId: string,
  options?: CallOptions,
): Promise<DescribedConnection> {
  try {
    const record = await findLiveConnection(deps, connectionId, options);
    const summary = summarizeConnection(record);
    if (summary === undefined) throw new NotFoundError(NOT_FOUND);
    return { status: 'active', summary };
  } catch (error) {
    if (!(error instanceof NotFoundError) || !isWellFormedConnectionId(connectionId)) throw error;
    const tombstone = await deps.store.findEndedConnection(connectionId, options);
    if (tombstone === undefined) throw error;
    return { status: 'ended', tombstone };
  }
}

/** `GET /connections?organization_id&user_id&limit&cursor`: one page, from the index. */
export async function listConnections(
  deps: Pick<ServiceDependencies, 'store' | 'clock'>,
  query: { orgId: string; userId?: string | undefined; limit: number; cursor?: string | undefined },
  options?: CallOptions,
): Promise<ConnectionPage> {
  return deps.store.listConnections({ ...query, now: deps.clock.now() }, options);
}

/**
 * `DELETE /connections/{connection_id}`: the grant is revoked at Salesforce (RFC 7009)
 * and the connection deleted, exactly as a logout ends a session (`endSession`: delete by
 * version first, then revoke; a revocation that fails is the alarm-worthy
 * `revoke_failed`, and the connection is gone all the same). Idempotent: an unknown id
 * answers the same as a known one.
 * @see https://www.rfc-editor.org/rfc/rfc7009#section-2
 */
export async function endConnection(
  deps: ServiceDependencies,
  connectionId: string,
  deadline: Deadline,
): Promise<EndSessionOutcome> {
  if (!isWellFormedConnectionId(connectionId)) return 'absent';
  const record = await deps.store.findConnection(connectionId, left(deadline));
  if (record === undefined) return 'absent';
  return endSession(
    deps,
    record.sessionKey,
    'service',
    deadline,
    endedMark(deps.config, 'service_api', deps.clock.now()),
  );
}

/**
 * `DELETE /connections?organization_id&user_id` (offboarding): ends up to
 * {@link MAX_ENDED_PER_CALL} matching connections, side by side, each like
 * {@link endConnection}. `nextCursor` is set while more may remain; ended connections
 * leave the index, so the caller continues from the cursor (or starts again).
 */
export async function endConnections(
  deps: ServiceDependencies,
  query: { orgId: string; userId?: string | undefined; cursor?: string | undefined },
  deadline: Deadline,
): Promise<{ ended: string[]; nextCursor: string | undefined }> {
  const page = await listConnections(deps, { ...query, limit: MAX_ENDED_PER_CALL }, left(deadline));
  const outcomes = await Promise.all(
    page.connections.map(async (connection) => ({
      connectionId: connection.connectionId,
      outcome: await endConnection(deps, connection.connectionId, deadline),
    })),
  );
  return {
    ended: outcomes
      .filter((result) => result.outcome !== 'absent')
      .map((result) => result.connectionId),
    nextCursor: page.nextCursor,
  };
}

/**
 * The live session of a connection, or `404`. A malformed id is `404` too, not `400`:
 * the answer must not tell a caller which strings have the shape of a connection id.
 */
async function findLiveConnection(
  deps: Pick<ServiceDependencies, 'store' | 'clock'>,
  connectionId: string,
  options?: CallOptions,
): Promise<SessionRecord> {
  if (!isWellFormedConnectionId(connectionId)) throw new NotFoundError(NOT_FOUND);
  const record = await deps.store.findConnection(connectionId, options);
  if (record === undefined || !isLiveSession(record, deps.clock.now())) {
    throw new NotFoundError(NOT_FOUND);
  }
  return record;
}

function left(deadline: Deadline): CallOptions {
  return { timeoutMs: deadline.at - deadline.now() };
}
