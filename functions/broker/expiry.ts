import { describeError } from '../shared/describe-error.ts';
import type { BrokerConfig } from './config.ts';
import type { ClientCredentials, Clock, Log, MetricSink, SessionStore } from './ports.ts';
import { type TokenIntrospection, UpstreamFailure } from './upstream.ts';

/**
 * Access token expiry (README "Access token expiry"). Salesforce's token responses carry
 * no `expires_in`; only introspection (RFC 7662) says when an access token expires. The
 * login and the refresh start it as soon as Salesforce has answered, beside their own
 * store write, so the answer waits for whichever is slower rather than for both in turn;
 * then the expiry is noted on the version it belongs to. Nothing here ever fails the
 * login or the refresh: without an expiry the answer has no `expires_at`.
 */

/** The part of the Salesforce client introspection uses. */
export interface IntrospectionClient {
  introspect?(
    credentials: ClientCredentials,
    accessToken: string,
    options?: { timeoutMs?: number | undefined; loginUrl?: URL | undefined },
  ): Promise<TokenIntrospection>;
}

export interface ExpiryDependencies {
  salesforce: IntrospectionClient;
  store: Pick<SessionStore, 'noteAccessTokenExpiry'>;
  clock: Clock;
  log: Log;
  metrics: MetricSink;
  config: Partial<Pick<BrokerConfig, 'introspection'>>;
}

/** The most an introspection may add to an answer: it is one short Salesforce call. */
export const INTROSPECTION_BUDGET_MS = 2_000;
/** The most the expiry's own write may take. */
const NOTE_BUDGET_MS = 1_000;

/**
 * Starts introspecting `accessToken`; the promise gives its expiry (epoch ms) or
 * `undefined` (turned off, inactive, failed, or out of time), and never rejects.
 */
export function introspectExpiry(
  deps: ExpiryDependencies,
  input: {
    accessToken: string;
    credentials: Promise<ClientCredentials>;
    loginUrl: URL | undefined;
    /** Epoch ms by which the answer is due; the call ends before it. */
    deadline: number;
    session: string;
  },
): Promise<number | undefined> {
  const introspect = deps.salesforce.introspect?.bind(deps.salesforce);
  if (deps.config.introspection === false || introspect === undefined) {
    return Promise.resolve(undefined);
  }
  const run = async () => {
    const timeoutMs = Math.min(INTROSPECTION_BUDGET_MS, input.deadline - deps.clock.now());
    if (timeoutMs <= 0) {
      // The answer is due: it goes without an expiry rather than late.
      reportFailure(deps, input.session, 'no_time', undefined);
      return undefined;
    }
    const answer = await introspect(await input.credentials, input.accessToken, {
      timeoutMs,
      loginUrl: input.loginUrl,
    });
    if (!answer.active) {
      // Just issued and already inactive: Salesforce's view, not ours to act on here.
      reportFailure(deps, input.session, 'inactive', undefined);
      return undefined;
    }
    if (answer.expiresAt <= deps.clock.now()) {
      // Past already for a token just issued: a clock out of step. Stored, it would make
      // every call without a hint refresh (the margin rule).
      reportFailure(deps, input.session, 'expired', undefined);
      return undefined;
    }
    return answer.expiresAt;
  };
  return run().catch((error: unknown) => {
    reportFailure(deps, input.session, 'failed', error);
    return undefined;
  });
}

/**
 * Waits for the introspection started beside the store write, then notes its expiry on
 * the version just stored; the expiry (epoch ms), or `undefined` when none was learnt.
 */
export async function settleExpiry(
  deps: ExpiryDependencies,
  expiry: Promise<number | undefined>,
  input: { sessionKey: string; version: number; deadline: number },
  session: string,
): Promise<number | undefined> {
  const expiresAt = await expiry;
  if (expiresAt !== undefined) await noteExpiry(deps, { ...input, expiresAt }, session);
  return expiresAt;
}

/** Notes the expiry on `version` (best effort: a failure only loses the `expires_at`). */
async function noteExpiry(
  deps: ExpiryDependencies,
  input: { sessionKey: string; version: number; expiresAt: number; deadline: number },
  session: string,
): Promise<void> {
  const timeoutMs = Math.min(NOTE_BUDGET_MS, input.deadline - deps.clock.now());
  if (timeoutMs <= 0) return;
  try {
    await deps.store.noteAccessTokenExpiry(
      { sessionKey: input.sessionKey, version: input.version, expiresAt: input.expiresAt },
      { timeoutMs },
    );
  } catch (error) {
    deps.log.warn('the access token expiry could not be stored', {
      event: 'expiry_not_stored',
      session,
      error: describeError(error),
    });
  }
}

function reportFailure(
  deps: ExpiryDependencies,
  session: string,
  outcome: 'inactive' | 'expired' | 'failed' | 'no_time',
  error: unknown,
): void {
  deps.metrics.count('IntrospectionFailed');
  deps.log.warn('introspection gave no expiry; answering without expires_at', {
    event: 'introspection_failed',
    session,
    outcome,
    // The upstream failure kind and its stable reason, as the refresh path names them.
    ...(error instanceof UpstreamFailure ? { kind: error.kind, reason: error.reason } : {}),
    ...(error === undefined ? {} : { error: describeError(error) }),
  });
}

/** Epoch ms to the `expires_at` of an answer: whole seconds, rounded down (a lower bound). */
export function expiresAtSeconds(expiresAt: number | undefined): number | undefined {
  return expiresAt === undefined ? undefined : Math.floor(expiresAt / 1000);
}
