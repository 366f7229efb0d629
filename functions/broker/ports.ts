/**
 * The small interfaces (ports) the domain depends on. Entry files build the real adapters
 * (`functions/aws/*`, `functions/salesforce/*`) once at module scope; tests replace them.
 */

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
  count(name: string, value?: number, dimensions?: Record<string, string>): void;
  timing(name: string, milliseconds: number): void;
}

export const noMetrics: MetricSink = { count: () => {}, timing: () => {} };

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
  generate(sessionKey: string): Promise<DataKey>;
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
  orgId: string;
  userId: string;
}

export type RefreshFailureKind = 'unavailable' | 'misconfigured' | 'integrity';

export type AcquireResult = { acquired: true; record: SessionRecord } | { acquired: false };

export interface AcquireLeaseInput {
  sessionKey: string;
  owner: string;
  now: number;
  leaseUntil: number;
  /** Acquire only if the stored version equals this (the caller's hint). */
  expectedVersion?: number | undefined;
  /** Without a hint: acquire only if the stored version was committed before this (ms). */
  committedBefore?: number | undefined;
}

export interface CommitInput {
  sessionKey: string;
  owner: string;
  /** The version the lease was acquired on; the commit stores `version + 1`. */
  version: number;
  sealed: SealedTokenSet;
  committedAt: number;
  idleExpiresAt: number;
}

/** Sessions in DynamoDB, with single-item conditional operations only. */
export interface SessionStore {
  /** Strongly consistent read. */
  get(sessionKey: string): Promise<SessionRecord | undefined>;
  /** Creates a session; false if the key already exists. */
  create(record: SessionRecord): Promise<boolean>;
  tryAcquireLease(input: AcquireLeaseInput): Promise<AcquireResult>;
  /** Fenced commit: `'fenced'` when the lease or version moved on (or the session is gone). */
  commit(input: CommitInput): Promise<'committed' | 'fenced'>;
  /** Gives the lease up without a new version, recording why; no-op when fenced. */
  releaseLease(input: {
    sessionKey: string;
    owner: string;
    failedAt: number;
    failureKind: RefreshFailureKind;
  }): Promise<void>;
  /** Deletes the session only while `owner` holds its lease; false when fenced. */
  deleteAsLeaseHolder(sessionKey: string, owner: string): Promise<boolean>;
  /** Deletes unconditionally and returns what was there. */
  delete(sessionKey: string): Promise<SessionRecord | undefined>;
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
  /** Where `/callback` sends the browser: a validated relative path. */
  returnTo: string;
  /** SHA-256 of the `__Host-tb-login` cookie value (base64url). */
  cookieHash: string;
  createdAt: number;
  /** The code checks this itself; DynamoDB TTL only deletes late items. */
  expiresAt: number;
  /** The session the browser held at `/login`, ended once the new one exists. */
  replacesSessionKey?: string | undefined;
}

/** Login transactions, in the session table under `login#<stateKey>`. */
export interface LoginTransactionStore {
  /** Stores a new transaction; false if the key already exists. */
  create(transaction: LoginTransaction): Promise<boolean>;
  /**
   * Deletes the transaction and returns it, exactly once: a second call (a replayed
   * callback, or a concurrent one) gets `undefined`.
   */
  consume(stateKey: string): Promise<LoginTransaction | undefined>;
}
