/**
 * The small interfaces (ports) the domain depends on. Entry files build the real adapters
 * (`functions/aws/*`, `functions/salesforce/*`) once at module scope; tests replace them.
 */
import type { BrokerMetricName } from '../shared/constants.ts';

/** Milliseconds since the epoch. */
export interface Clock {
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

/** Structured logger; Powertools Logger satisfies it. Never pass a secret in `attributes`. */
export interface Log {
  debug(message: string, attributes?: Record<string, unknown>): void;
  info(message: string, attributes?: Record<string, unknown>): void;
  warn(message: string, attributes?: Record<string, unknown>): void;
  error(message: string, attributes?: Record<string, unknown>): void;
}

/** Counters and timings, emitted as CloudWatch Embedded Metric Format in production. */
export interface MetricSink {
  count(name: BrokerMetricName, value?: number, dimensions?: Record<string, string>): void;
  timing(name: BrokerMetricName, milliseconds: number): void;
}

/** What the broker keeps of a Salesforce grant. Stored only encrypted. */
export interface TokenSet {
  accessToken: string;
  refreshToken: string;
  /** Exactly as Salesforce sent it. */
  instanceUrl: string;
  /** Milliseconds since the epoch, as the 13-digit string Salesforce sent. */
  issuedAt: string;
  scope: string;
  /** The identity URL (`https://login.salesforce.com/id/<orgId>/<userId>`). */
  identityUrl: string;
}

/** A token set sealed with a data key (AES-256-GCM), beside the KMS-encrypted data key. */
export interface SealedTokenSet {
  /** iv (12 bytes) | tag (16 bytes) | ciphertext */
  ciphertext: Uint8Array;
  encryptedDataKey: Uint8Array;
}

/** A fresh AES-256 data key from KMS `GenerateDataKey`. */
export interface DataKey {
  plaintext: Uint8Array;
  encrypted: Uint8Array;
}

/**
 * KMS data keys bound to a session by the encryption context
 * `{purpose: "salesforce-token", session: <session key>}`.
 * @see https://docs.aws.amazon.com/kms/latest/developerguide/encrypt_context.html
 */
export interface DataKeyService {
  generate(sessionKey: string, options?: CallOptions): Promise<DataKey>;
  decrypt(encryptedDataKey: Uint8Array, sessionKey: string): Promise<Uint8Array>;
}

export interface ClientCredentials {
  clientId: string;
  clientSecret: string;
}

/** The connected app's credentials, cached; `reload()` bypasses the cache (secret rotation). */
export interface ClientCredentialsSource {
  get(): Promise<ClientCredentials>;
  reload(): Promise<ClientCredentials>;
}

/**
 * One connected app of the deployment (README "Login hosts and several connected apps"):
 * its name, its own cached credentials (each app's secret is read, cached and re-read on
 * `invalid_client` on its own), its default login origin and its scopes.
 */
export interface SalesforceApp {
  name: string;
  credentials: ClientCredentialsSource;
  /** The app's default login origin (`https://login.salesforce.com`, a My Domain origin). */
  loginUrl: URL;
  scopes: string;
}

/** One session as stored. The handle itself is never stored, only its hash (`sessionKey`). */
export interface SessionRecord {
  sessionKey: string;
  version: number;
  sealed: SealedTokenSet;
  /** When `version` was committed (ms). */
  committedAt: number;
  createdAt: number;
  absoluteExpiresAt: number;
  idleExpiresAt: number;
  leaseOwner?: string | undefined;
  leaseUntil?: number | undefined;
  /** Set by a holder that gave up without committing, so its waiters share the outcome. */
  lastFailureAt?: number | undefined;
  lastFailureKind?: RefreshFailureKind | undefined;
  /**
   * The holder that recorded the failure. While it still holds the lease (it keeps the
   * lease when Salesforce may still be processing its abandoned request), newcomers get
   * the failure at once instead of waiting for a lease that will not commit.
   */
  lastFailureOwner?: string | undefined;
  orgId: string;
  userId: string;
  /**
   * The connection this session is the credential for (`con_...`, non-secret). Absent on
   * sessions stored before connections existed: they refresh as before but are not found
   * by connection id.
   */
  connectionId?: string | undefined;
  /** Non-secret copies of the token set's `instance_url` and `scope`, for metadata answers. */
  instanceUrl?: string | undefined;
  scope?: string | undefined;
  /**
   * The host the login happened at (`acme.my.salesforce.com`); refresh and revocation go
   * to its endpoints. Absent on older sessions: the app's configured login host.
   */
  loginHost?: string | undefined;
  /** The connected app (`SalesforceApp.name`) that holds the grant. Absent: the first app. */
  salesforceApp?: string | undefined;
  /** An Experience Cloud login's site (`sfdc_site_url` / `sfdc_community_url`), non-secret. */
  siteUrl?: string | undefined;
  /**
   * When the first of an unbroken run of transient refresh failures (`unavailable`) was
   * recorded (ms); kept across further failures, cleared by the next commit.
   */
  failingSince?: number | undefined;
  /**
   * When that run was reported as `Connection Refresh Failing` (ms): set once, by the
   * release that finds it `failingAfterSeconds` old; cleared by the next commit, which is
   * then `Connection Recovered`.
   */
  failingReportedAt?: number | undefined;
  /**
   * When the scheduled sweep next looks at the session (epoch ms, `sweepAtOf` in
   * `./connection.ts`); absent on sessions stored before the sweep: the sweep finds them
   * once their next commit writes it.
   */
  sweepAt?: number | undefined;
  /**
   * When the stored access token expires (epoch ms), as introspection said after the login
   * or the refresh that stored it (README "Access token expiry"); a lower bound. Absent
   * until then, and cleared by every commit (a new token's expiry is learnt anew).
   */
  accessTokenExpiresAt?: number | undefined;
}

/**
 * What a connection shows of itself: never a token. `lastRefreshedAt` is when the broker
 * last obtained tokens for it (the login, then each committed refresh).
 */
export interface ConnectionSummary {
  connectionId: string;
  orgId: string;
  userId: string;
  instanceUrl: string;
  scope: string;
  createdAt: number;
  lastRefreshedAt: number;
  version: number;
  absoluteExpiresAt: number;
  idleExpiresAt: number;
  /**
   * From the session item only (the org index does not project them, so listings leave
   * them out): the login host, the connected app, an Experience Cloud site.
   */
  loginHost?: string | undefined;
  salesforceApp?: string | undefined;
  siteUrl?: string | undefined;
}

/** One page of {@link SessionStore.listConnections}. */
export interface ConnectionPage {
  connections: ConnectionSummary[];
  /** Opaque; pass back to get the next page. `undefined` on the last page. */
  nextCursor: string | undefined;
}

export interface ListConnectionsInput {
  orgId: string;
  userId?: string | undefined;
  /** 1 to 100. */
  limit: number;
  cursor?: string | undefined;
  /** Connections past their idle or absolute expiry are left out. */
  now: number;
}

export type RefreshFailureKind = 'unavailable' | 'misconfigured' | 'forbidden' | 'integrity';

/** Per-call limits the domain passes to an adapter: the time left in its lease or invocation. */
export interface CallOptions {
  /** Abort the call (and the SDK's retries) after this long, in ms. */
  timeoutMs?: number | undefined;
}

export type AcquireResult = { acquired: true; record: SessionRecord } | { acquired: false };

export interface AcquireLeaseInput {
  sessionKey: string;
  owner: string;
  now: number;
  /**
   * Acquire only if the current lease (if any) ended at or before this: `now` less the
   * clock-skew margin, so a caller whose clock runs ahead cannot cut a holder's lease short.
   */
  leaseEndedBy: number;
  leaseUntil: number;
  /** Acquire only if the stored version equals this (the caller's hint). */
  expectedVersion?: number | undefined;
  /** Without a hint: acquire only if the stored version was committed before this (ms). */
  committedBefore?: number | undefined;
  /**
   * With `committedBefore`: acquire also when the stored access token expires at or before
   * this (ms), however recently it was committed (`refreshMarginSeconds`).
   */
  expiringBy?: number | undefined;
}

/** The expiry introspection found for the token a version holds (see `accessTokenExpiresAt`). */
export interface AccessTokenExpiryInput {
  sessionKey: string;
  /** The version whose token was introspected: a newer commit is never overwritten. */
  version: number;
  expiresAt: number;
}

export interface CommitInput {
  sessionKey: string;
  owner: string;
  /** The version the lease was acquired on; the commit stores `version + 1`. */
  version: number;
  sealed: SealedTokenSet;
  committedAt: number;
  idleExpiresAt: number;
  /** The refreshed token set's `instance_url` and `scope`, kept in clear beside it. */
  instanceUrl?: string | undefined;
  scope?: string | undefined;
  /** When the sweep next looks at the session (see {@link SessionRecord.sweepAt}). */
  sweepAt?: number | undefined;
}

/** What a lease holder's commit writes: the input without the lease and the key. */
export type CommittedFields = Omit<CommitInput, 'sessionKey' | 'owner' | 'version'>;

export interface ReleaseLeaseInput {
  sessionKey: string;
  owner: string;
  failedAt: number;
  failureKind: RefreshFailureKind;
  /**
   * Record the failure but keep the lease until it runs out: the upstream request timed
   * out or its connection broke, so Salesforce may still be processing it with the
   * current refresh token, and a second request with that token must not follow it.
   */
  keepLease?: boolean;
  /**
   * Mark the run of transient failures as reported (`failingReportedAt`), once: the
   * holder found it `failingAfterSeconds` old. The store keeps an earlier mark.
   */
  reportFailing?: boolean;
}

/** Sessions in DynamoDB, with single-item conditional operations only. */
export interface SessionStore {
  /** Strongly consistent read. */
  get(sessionKey: string, options?: CallOptions): Promise<SessionRecord | undefined>;
  /**
   * Creates a session; false if the key already exists. A session with a `connectionId`
   * is findable by it (strongly consistent) as soon as this returns.
   */
  create(record: SessionRecord, options?: CallOptions): Promise<boolean>;
  /** The session of a connection, by a strongly consistent read; `undefined` if none. */
  findConnection(connectionId: string, options?: CallOptions): Promise<SessionRecord | undefined>;
  /**
   * The live connections of an organization (optionally one user), from an index: never a
   * scan. The index is eventually consistent; a connection just created may take a moment
   * to be listed (it is found by id at once).
   */
  listConnections(input: ListConnectionsInput, options?: CallOptions): Promise<ConnectionPage>;
  tryAcquireLease(input: AcquireLeaseInput): Promise<AcquireResult>;
  /** Fenced commit: `'fenced'` when the lease or version moved on (or the session is gone). */
  commit(input: CommitInput, options?: CallOptions): Promise<'committed' | 'fenced'>;
  /** Gives the lease up (or keeps it, see `keepLease`) recording why; no-op when fenced. */
  releaseLease(input: ReleaseLeaseInput): Promise<void>;
  /**
   * Stores the access token's expiry on the version it belongs to; false when that version
   * is gone (a newer commit, or the session ended).
   */
  noteAccessTokenExpiry(input: AccessTokenExpiryInput, options?: CallOptions): Promise<boolean>;
  /**
   * Deletes the session only while `owner` holds its lease; false when fenced. With
   * `ended`, a tombstone is kept (see {@link EndedMark}).
   */
  deleteAsLeaseHolder(sessionKey: string, owner: string, ended?: EndedMark): Promise<boolean>;
  /**
   * Deletes the session only while its stored version is `version`, so the caller knows
   * exactly which token set it ended: `'changed'` when the version moved or the item is
   * gone (read again to tell which).
   */
  deleteVersion(
    sessionKey: string,
    version: number,
    options?: CallOptions,
    ended?: EndedMark,
  ): Promise<'deleted' | 'changed'>;
  /** The tombstone of an ended session, by its key; `undefined` if none (or unreadable). */
  findEnded(sessionKey: string, options?: CallOptions): Promise<Tombstone | undefined>;
  /** The tombstone of an ended connection, by its id; `undefined` if none. */
  findEndedConnection(connectionId: string, options?: CallOptions): Promise<Tombstone | undefined>;
}

/**
 * Why a connection ended, as `GET /connections/{id}` answers it (`ended_reason`) and the
 * `Connection Ended` event carries it (`reason`).
 */
export type EndedReason =
  | 'logout'
  | 'service_api'
  | 'reauthentication_required'
  | 'replaced'
  | 'expired'
  | 'code_replayed';

export const ENDED_REASONS: readonly EndedReason[] = [
  'logout',
  'service_api',
  'reauthentication_required',
  'replaced',
  'expired',
  'code_replayed',
];
/** One entry of the sweep's index: a session due for keep-alive or expiry. */
export interface DueSession {
  sessionKey: string;
  version: number;
  committedAt: number;
  idleExpiresAt: number;
  absoluteExpiresAt: number;
  /** The index's sort key (epoch ms). */
  sweepAt: number;
}

/** One page of {@link SweepIndex.dueSessions}. */
export interface DuePage {
  sessions: DueSession[];
  /** Opaque; pass back for the next page of the same shard. `undefined` on the last page. */
  cursor: string | undefined;
}

/**
 * The sweep's index of sessions by when they are due (`SWEEP_INDEX`), queried one shard
 * at a time, oldest first, never scanned. Eventually consistent: the sweep re-checks each
 * entry against the item before acting on it (the lease acquire or the fenced delete).
 */
export interface SweepIndex {
  readonly shards: number;
  dueSessions(
    input: { shard: number; dueBy: number; limit: number; cursor?: string | undefined },
    options?: CallOptions,
  ): Promise<DuePage>;
}

/**
 * Asks a delete to keep a token-free tombstone until `retainUntil` (epoch ms), so the
 * connection id and the session handle explain why they no longer work.
 */
export interface EndedMark {
  reason: EndedReason;
  /** Epoch ms. */
  endedAt: number;
  /** Epoch ms (`endedConnectionRetentionDays` after `endedAt`). */
  retainUntil: number;
  /** Salesforce's `error` (e.g. `invalid_grant`) when Salesforce ended it; never a secret. */
  upstreamError?: string | undefined;
  /** Salesforce's `error_description` (e.g. `expired access/refresh token`), capped. */
  upstreamDescription?: string | undefined;
}

/** What is left of an ended connection: ids and why, never a token. */
export interface Tombstone {
  connectionId: string | undefined;
  orgId: string;
  userId: string;
  reason: EndedReason;
  /** Epoch ms. */
  endedAt: number;
}

/**
 * A connected app Salesforce refuses (`invalid_client` and the like), raised for the
 * `Upstream Misconfigured` event. Ids and Salesforce's error code only.
 */
export interface UpstreamAlert {
  /** The connected app (`SalesforceApp.name`). */
  app: string;
  upstreamError: string | undefined;
  /** Epoch ms. */
  at: number;
  /** The connection whose refresh met it, when one did (a login has none yet). */
  connectionId?: string | undefined;
  orgId?: string | undefined;
  userId?: string | undefined;
}

/** Operator alerts, one small item per kind and app, in the session table. */
export interface AlertStore {
  /**
   * Records the alert unless the same one was recorded within `quietMs`: `false` then.
   * The caller bounds it with `timeoutMs` and only logs a failure.
   */
  raise(alert: UpstreamAlert, quietMs: number, options?: CallOptions): Promise<boolean>;
}

/**
 * One pending Web Server Flow login, stored under the hash of its `state` until
 * `/callback` consumes it. Neither the state nor the login cookie is stored in clear.
 * @see https://www.rfc-editor.org/rfc/rfc6749#section-10.12
 */
export interface LoginTransaction {
  /** SHA-256 of the `state` (base64url). */
  stateKey: string;
  /** The PKCE `code_verifier`, AES-256-GCM-sealed under a key derived from the `state`. */
  sealedVerifier: Uint8Array;
  /**
   * Where `/callback` sends the browser: a validated relative path, or for a handoff the
   * app's redirect URI (its `handoff.redirectUri`).
   */
  returnTo: string;
  /** SHA-256 of the `__Host-tb-login` cookie value (base64url). */
  cookieHash: string;
  createdAt: number;
  /** The code checks this itself; DynamoDB TTL only deletes late items. */
  expiresAt: number;
  /** The session the browser held at `/login`, ended once the new one exists. */
  replacesSessionKey?: string | undefined;
  /**
   * Set for a login started by a registered native, desktop or server-side app (the
   * one-time handoff): `/callback` answers its redirect URI with a broker code instead of
   * setting the session cookie.
   */
  handoff?: HandoffRequest | undefined;
  /** The login host the login was started at; absent on older transactions: the app's. */
  loginHost?: string | undefined;
  /** The connected app the login was started with; absent: the first app. */
  salesforceApp?: string | undefined;
}

/** What a handoff login binds its broker code to (README "Native, desktop and server-side apps"). */
export interface HandoffRequest {
  clientId: string;
  /** Exactly as the app sent it (a loopback URI with its port). */
  redirectUri: string;
  /** The app's own `state`, echoed back exactly. */
  appState: string;
  /** The app's PKCE S256 `code_challenge`. */
  codeChallenge: string;
}

/**
 * One broker code of the handoff, stored under `code#<SHA-256 of the code>`. The session
 * handle is sealed under a key derived from the code, so the table alone never yields it.
 */
export interface BrokerCodeRecord {
  /** SHA-256 of the code (base64url). */
  codeKey: string;
  clientId: string;
  redirectUri: string;
  codeChallenge: string;
  connectionId: string;
  /** The session the code hands over (the hash of its handle). */
  sessionKey: string;
  /** The session handle, AES-256-GCM-sealed under a key derived from the code. */
  sealedHandle: Uint8Array;
  createdAt: number;
  /** The code checks this itself; DynamoDB TTL only deletes the item much later. */
  expiresAt: number;
  /** Set by the first redemption, whatever its outcome: the code is then spent. */
  redeemedAt?: number | undefined;
  /** A random id of the redemption that spent it, to recognise its own lost answer. */
  redemptionId?: string | undefined;
}

/** Outcome of {@link BrokerCodeStore.redeem}. */
export type Redemption =
  | { outcome: 'first'; record: BrokerCodeRecord }
  | { outcome: 'replayed'; record: BrokerCodeRecord }
  | { outcome: 'unknown' };

/** Broker codes, in the session table under `code#<codeKey>`. */
export interface BrokerCodeStore {
  /** Stores a new code; false if the key already exists. */
  create(record: BrokerCodeRecord, options?: CallOptions): Promise<boolean>;
  /** Strongly consistent read; `undefined` if none. */
  get(codeKey: string, options?: CallOptions): Promise<BrokerCodeRecord | undefined>;
  /**
   * Spends the code with one conditional write, keeping the item so a later attempt is
   * recognised: `first` for exactly one caller (also when its write landed but the answer
   * was lost), `replayed` for every later one, `unknown` when there is no such code.
   */
  redeem(
    codeKey: string,
    redemption: { redemptionId: string; now: number },
    options?: CallOptions,
  ): Promise<Redemption>;
}

/** Login transactions, in the session table under `login#<stateKey>`. */
export interface LoginTransactionStore {
  /** Stores a new transaction; false if another one holds the key. */
  create(transaction: LoginTransaction, options?: CallOptions): Promise<boolean>;
  /**
   * Consumes the transaction and returns it, exactly once: a second call (a replayed
   * callback, or a concurrent one) gets `undefined`.
   */
  consume(stateKey: string, options?: CallOptions): Promise<LoginTransaction | undefined>;
}
