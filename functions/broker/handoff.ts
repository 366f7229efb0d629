/**
 * The one-time handoff for native, desktop and server-side apps (README "Native, desktop
 * and server-side apps"), shaped like RFC 8252 with PKCE (RFC 7636): `/callback` hands the
 * session it created to the app's redirect URI as a short-lived broker code, and the app
 * redeems the code at `POST /token` for the session handle.
 * @see https://www.rfc-editor.org/rfc/rfc8252
 * @see https://www.rfc-editor.org/rfc/rfc7636
 */
import {
  type ClientApp,
  findClientApp,
  isRegisteredRedirectUri,
  isWellFormedClientId,
} from '../shared/client-apps.ts';
import {
  BROKER_CODE_TTL_MS,
  brokerCodeKeyOf,
  equalInConstantTime,
  isWellFormedBrokerCode,
  isWellFormedCodeChallenge,
  newBrokerCode,
  openHandle,
  sealHandle,
  verifierMatchesChallenge,
} from './broker-code.ts';
import { endedMark } from './connection.ts';
import {
  InvalidClientError,
  InvalidGrantError,
  InvalidRequestError,
  UnsupportedGrantTypeError,
} from './errors.ts';
import { type EndSessionDependencies, endSession } from './logout.ts';
import type {
  BrokerCodeRecord,
  BrokerCodeStore,
  CallOptions,
  Clock,
  HandoffRequest,
  Log,
  MetricSink,
} from './ports.ts';
import { logSafeId, newSessionHandle, sessionKeyOf } from './session-handle.ts';

/** Longest app `state` accepted (the contract: 512 characters). */
export const MAX_APP_STATE_LENGTH = 512;
/** RFC 6749 Appendix A.5: `state = 1*VSCHAR`, printable ASCII including the space. */
const APP_STATE = /^[\x20-\x7E]+$/;

/** The `/login` parameters of a handoff, as the query held them (each at most once). */
export interface HandoffParameters {
  clientId: string;
  redirectUri: string | undefined;
  state: string | undefined;
  codeChallenge: string | undefined;
  codeChallengeMethod: string | undefined;
}

/**
 * Validates a handoff login (`/login?client_id=...`): a registered `client_id`, one of its
 * redirect URIs (a loopback one on any port), a `state` of 1 to 512 printable ASCII
 * characters (echoed exactly), and PKCE with `S256` only. Every problem is `400
 * invalid_request`, answered on the broker's own page and never by a redirect: an
 * unregistered redirect URI is exactly where a redirect must not go (RFC 6749 s4.1.2.1).
 * @see https://www.rfc-editor.org/rfc/rfc8252#section-8.1
 */
export function validateHandoff(
  parameters: HandoffParameters,
  clientApps: readonly ClientApp[],
): HandoffRequest {
  const invalid = (why: string) => new InvalidRequestError(why);
  const { clientId, redirectUri, state, codeChallenge, codeChallengeMethod } = parameters;
  const app = isWellFormedClientId(clientId) ? findClientApp(clientApps, clientId) : undefined;
  if (!app) throw invalid('"client_id" is not a registered app.');
  if (redirectUri === undefined) throw invalid('"redirect_uri" is required with "client_id".');
  if (!isRegisteredRedirectUri(app, redirectUri)) {
    throw invalid('"redirect_uri" is not registered for this client_id.');
  }
  if (state === undefined || state.length > MAX_APP_STATE_LENGTH || !APP_STATE.test(state)) {
    throw invalid(`"state" is required: 1 to ${MAX_APP_STATE_LENGTH} printable ASCII characters.`);
  }
  if (codeChallenge === undefined || !isWellFormedCodeChallenge(codeChallenge)) {
    throw invalid('"code_challenge" is required: an S256 challenge (43 base64url characters).');
  }
  if (codeChallengeMethod !== 'S256') {
    throw invalid('"code_challenge_method" must be "S256".');
  }
  return { clientId, redirectUri, appState: state, codeChallenge };
}

export interface IssueCodeDependencies {
  codes: Pick<BrokerCodeStore, 'create' | 'get'>;
  clock: Clock;
  /** Replaced in tests. */
  newBrokerCode?: () => string;
}

/**
 * Mints the broker code for a session `/callback` just created and stores it (hash only,
 * the handle sealed under the code) for 60 seconds. A put whose answer was lost is read
 * back; `false` when the code is certainly not stored (the caller ends the session).
 */
export async function issueBrokerCode(
  deps: IssueCodeDependencies,
  grant: { handoff: HandoffRequest; connectionId: string; sessionKey: string; handle: string },
  options: CallOptions,
): Promise<string | undefined> {
  const code = (deps.newBrokerCode ?? newBrokerCode)();
  const now = deps.clock.now();
  const record: BrokerCodeRecord = {
    codeKey: brokerCodeKeyOf(code),
    clientId: grant.handoff.clientId,
    redirectUri: grant.handoff.redirectUri,
    codeChallenge: grant.handoff.codeChallenge,
    connectionId: grant.connectionId,
    sessionKey: grant.sessionKey,
    sealedHandle: sealHandle(code, grant.handle),
    createdAt: now,
    expiresAt: now + BROKER_CODE_TTL_MS,
  };
  let created: boolean | 'unknown';
  try {
    created = await deps.codes.create(record, options);
  } catch {
    created = 'unknown';
  }
  if (created === true) return code;
  // The put may have landed with its answer lost (the SDK's retry then fails the
  // condition): our own ciphertext (random IV) in the item means it is stored.
  try {
    const stored = await deps.codes.get(record.codeKey, options);
    if (stored && Buffer.from(stored.sealedHandle).equals(Buffer.from(record.sealedHandle))) {
      return code;
    }
  } catch {
    // Unknown either way: the caller ends the session, so a stored code hands over nothing.
  }
  return undefined;
}

export interface RedeemDependencies extends EndSessionDependencies {
  codes: BrokerCodeStore;
  clock: Clock;
  log: Log;
  metrics: MetricSink;
  config: {
    clientApps: readonly ClientApp[];
    invocationDeadlineMs: number;
    endedConnectionRetentionMs?: number | undefined;
  };
  /** Replaced in tests. */
  newRedemptionId?: () => string;
}

/** The parameters of `POST /token`, present and single (the route checked the form). */
export interface TokenRequest {
  grantType: string;
  code: string;
  redirectUri: string;
  clientId: string;
  codeVerifier: string;
}

export interface HandedOverSession {
  handle: string;
  connectionId: string;
}

const INVALID_GRANT =
  'The code is unknown, expired or already used, or was issued for another client, redirect URI or verifier.';

/**
 * `POST /token` (RFC 6749 s4.1.3 with RFC 7636 s4.6): no upstream call on the way to a
 * handle, and one store write.
 *
 * 1. `grant_type` must be `authorization_code`, `client_id` a registered app (`401
 *    invalid_client` otherwise, and the code is left alone);
 * 2. the code is spent with one conditional write, whatever follows: a code works at
 *    most once. A code presented again (`replayed`) ends the connection the first
 *    redemption created (RFC 6749 s4.1.2: revoke what the code granted);
 * 3. the first redemption checks expiry, client, redirect URI and the PKCE verifier. A
 *    failed check has spent the code too (RFC 6749 s4.1.2: single use; the safer choice
 *    when an interceptor guesses), and since nobody can redeem it any more, the session
 *    it would have handed over is ended at once instead of lingering at Salesforce;
 * 4. the handle, sealed under the code, is opened and answered.
 *
 * Every refusal is `invalid_grant` to the client; the log says which. Long on purpose: the
 * steps share the one spend-the-code outcome and read in the protocol's order.
 * @see https://www.rfc-editor.org/rfc/rfc6749#section-4.1.3
 * @see https://www.rfc-editor.org/rfc/rfc7636#section-4.6
 */
export async function redeemBrokerCode(
  deps: RedeemDependencies,
  request: TokenRequest,
): Promise<HandedOverSession> {
  if (request.grantType !== 'authorization_code') {
    throw new UnsupportedGrantTypeError('Only "grant_type=authorization_code" is supported.');
  }
  if (!findClientApp(deps.config.clientApps, request.clientId)) {
    deps.log.info('token request from an unknown client', { event: 'client_unknown' });
    throw new InvalidClientError('The client_id is not a registered app.');
  }
  if (!isWellFormedBrokerCode(request.code)) {
    return refuse(deps, 'code_malformed');
  }
  const deadline = deps.clock.now() + deps.config.invocationDeadlineMs;
  const left = (): CallOptions => ({ timeoutMs: deadline - deps.clock.now() });
  const codeKey = brokerCodeKeyOf(request.code);
  const redemption = await deps.codes.redeem(
    codeKey,
    { redemptionId: (deps.newRedemptionId ?? newSessionHandle)(), now: deps.clock.now() },
    left(),
  );
  if (redemption.outcome === 'unknown') return refuse(deps, 'code_unknown');
  const { record } = redemption;
  const end = async (reason: 'code_replayed' | 'code_rejected') => {
    // A replay ends the connection with a tombstone (`code_replayed`, and its event); a
    // refused first redemption ends a session nobody was ever handed: no tombstone.
    await endSession(
      deps,
      record.sessionKey,
      reason,
      { at: deadline, now: () => deps.clock.now() },
      reason === 'code_replayed'
        ? endedMark(deps.config, 'code_replayed', deps.clock.now())
        : undefined,
    );
  };
  if (redemption.outcome === 'replayed') {
    deps.log.warn('a spent broker code was presented again; its connection is ended', {
      event: 'code_replayed',
      connection: record.connectionId,
      session: logSafeId(record.sessionKey),
    });
    await end('code_replayed');
    throw new InvalidGrantError(INVALID_GRANT);
  }
  const rejection = firstRedemptionProblem(deps, record, request);
  if (rejection !== undefined) {
    deps.log.warn('a broker code was refused; it is spent and its connection is ended', {
      event: 'code_rejected',
      reason: rejection,
      connection: record.connectionId,
      session: logSafeId(record.sessionKey),
    });
    await end('code_rejected');
    throw new InvalidGrantError(INVALID_GRANT);
  }
  let handle: string;
  try {
    handle = openHandle(request.code, record.sealedHandle);
    if (sessionKeyOf(handle) !== record.sessionKey) throw new Error('handle of another session');
  } catch (error) {
    // The code matched its hash, yet the handle sealed under it does not open: the item
    // was altered or copied. The integrity alarm, like a session that fails to decrypt.
    deps.metrics.count('IntegrityError');
    deps.log.error('a broker code item failed its integrity check', {
      event: 'integrity_error',
      alarm: true,
      item: 'broker_code',
      connection: record.connectionId,
      reason: error instanceof Error ? error.name : 'unknown',
    });
    await end('code_rejected');
    throw new InvalidGrantError(INVALID_GRANT);
  }
  deps.log.info('broker code redeemed; session handed over', {
    event: 'code_redeemed',
    connection: record.connectionId,
    session: logSafeId(record.sessionKey),
    client: record.clientId,
  });
  return { handle, connectionId: record.connectionId };
}

/** Why the first redemption of a code fails, or `undefined` when it is good. */
function firstRedemptionProblem(
  deps: Pick<RedeemDependencies, 'clock'>,
  record: BrokerCodeRecord,
  request: TokenRequest,
): string | undefined {
  // Every comparison runs, so the time taken says nothing about which one failed.
  const expired = deps.clock.now() >= record.expiresAt;
  const clientMatches = equalInConstantTime(request.clientId, record.clientId);
  const redirectMatches = equalInConstantTime(request.redirectUri, record.redirectUri);
  const verifierMatches = verifierMatchesChallenge(request.codeVerifier, record.codeChallenge);
  if (expired) return 'expired';
  if (!clientMatches) return 'client_mismatch';
  if (!redirectMatches) return 'redirect_uri_mismatch';
  if (!verifierMatches) return 'verifier_mismatch';
  return undefined;
}

function refuse(deps: Pick<RedeemDependencies, 'log'>, reason: string): never {
  deps.log.info('a broker code was refused', { event: 'code_refused', reason });
  throw new InvalidGrantError(INVALID_GRANT);
}
