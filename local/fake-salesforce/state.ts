/**
 * The OAuth state of the fake org, without HTTP: users, authorization codes, refresh-token
 * families (one per approval), access tokens. Time comes from an injected clock so the
 * expiry rules can be tested without waiting.
 */
import { createHash } from 'node:crypto';
import { newAccessToken, newAuthorizationCode, newRefreshToken, newSalesforceId } from './ids.ts';

export const CODE_TTL_MS = 15 * 60 * 1000;

export interface OrgConfig {
  orgId: string;
  rotation: boolean;
  reuseDetection: boolean;
  approvalsLimit: number;
  accessTokenTtlMs: number;
  now: () => number;
}

export interface User {
  id: string;
  username: string;
  displayName: string;
  email: string;
}

export type Outcome<T> = { ok: true; value: T } | { ok: false; error: string; description: string };

/** What a successful code exchange or refresh hands out. */
export interface Issued {
  accessToken: string;
  /** Present on code exchange with a refresh scope, and on a refresh with rotation on. */
  refreshToken?: string;
  scope: string;
  user: User;
  issuedAt: number;
  nonce: string | null;
}

export interface AccessTokenRecord {
  familyId: number;
  clientId: string;
  user: User;
  scope: string;
  issuedAt: number;
  expiresAt: number;
  revoked: boolean;
}

interface Family {
  id: number;
  clientId: string;
  user: User;
  scope: string;
  /** null for grants without a refresh scope (access token only). */
  currentRefreshToken: string | null;
  revoked: boolean;
}

interface RefreshTokenRecord {
  familyId: number;
  status: 'current' | 'rotated' | 'revoked';
  issuedAt: number;
}

interface CodeRecord {
  clientId: string;
  redirectUri: string;
  codeChallenge: string | null;
  scope: string;
  user: User;
  nonce: string | null;
  expiresAt: number;
  used: boolean;
}

export type TokenLookup =
  | { kind: 'access'; record: AccessTokenRecord }
  | { kind: 'refresh'; familyClientId: string; user: User; scope: string; issuedAt: number };

const EXPIRED_TOKEN = 'expired access/refresh token';
const CODE_VERIFIER = /^[A-Za-z0-9._~-]{43,128}$/;

export function scopeList(scope: string): string[] {
  return scope.split(/[\s+]+/).filter((s) => s.length > 0);
}

/** `refresh_token` and `offline_access` are synonyms; `full` does not imply them. */
export function hasRefreshScope(scope: string): boolean {
  return scopeList(scope).some((s) => s === 'refresh_token' || s === 'offline_access');
}

export function s256(verifier: string): string {
  return createHash('sha256').update(verifier).digest('base64url');
}

function fail(
  error: string,
  description: string,
): { ok: false; error: string; description: string } {
  return { ok: false, error, description };
}

export class OrgState {
  readonly users = new Map<string, User>();
  /** Refresh tokens with a refresh request in progress (Salesforce's concurrency block). */
  readonly inFlight = new Set<string>();
  reuseRevocations = 0;

  private readonly usersByName = new Map<string, User>();
  private readonly codes = new Map<string, CodeRecord>();
  private readonly families = new Map<number, Family>();
  private readonly refreshTokens = new Map<string, RefreshTokenRecord>();
  private readonly accessTokens = new Map<string, AccessTokenRecord>();
  private nextFamilyId = 1;

  constructor(private readonly config: OrgConfig) {}

  /** The user with that login name, created on first use. */
  userByName(username: string): User {
    const key = username.toLowerCase();
    const known = this.usersByName.get(key);
    if (known) return known;
    return this.addUser(newSalesforceId('005'), username);
  }

  /** The user with that id, created on first use. */
  userById(id: string): User {
    return this.users.get(id) ?? this.addUser(id, `${id.toLowerCase()}@example.com`);
  }

  private addUser(id: string, username: string): User {
    const local = username.split('@')[0] ?? username;
    const displayName = local
      .split(/[._-]+/)
      .filter((p) => p.length > 0)
      .map((p) => p.charAt(0).toUpperCase() + p.slice(1))
      .join(' ');
    const user: User = { id, username, displayName: displayName || username, email: username };
    this.users.set(id, user);
    this.usersByName.set(username.toLowerCase(), user);
    return user;
  }

  issueCode(input: Omit<CodeRecord, 'expiresAt' | 'used'>): string {
    const now = this.config.now();
    for (const [code, rec] of this.codes) {
      if (rec.used || rec.expiresAt <= now) this.codes.delete(code);
    }
    const code = newAuthorizationCode();
    this.codes.set(code, { ...input, expiresAt: now + CODE_TTL_MS, used: false });
    return code;
  }

  exchangeCode(input: {
    code: string;
    clientId: string;
    redirectUri: string | null;
    codeVerifier: string | null;
  }): Outcome<Issued> {
    const rec = this.codes.get(input.code);
    if (!rec || rec.used || rec.expiresAt <= this.config.now() || rec.clientId !== input.clientId) {
      return fail('invalid_grant', 'expired authorization code');
    }
    // Single use: any presentation with the right client burns the code.
    rec.used = true;
    if (input.redirectUri !== rec.redirectUri) {
      return fail('redirect_uri_mismatch', 'redirect_uri must match configuration');
    }
    if (rec.codeChallenge !== null) {
      const v = input.codeVerifier;
      if (v === null || !CODE_VERIFIER.test(v) || s256(v) !== rec.codeChallenge) {
        return fail('invalid_grant', 'invalid code verifier');
      }
    }
    const issued = this.createGrant(rec.user, rec.clientId, rec.scope, hasRefreshScope(rec.scope));
    return { ok: true, value: { ...issued, nonce: rec.nonce } };
  }

  /** A new approval (refresh-token family), evicting the oldest beyond the approvals limit. */
  createGrant(user: User, clientId: string, scope: string, withRefreshToken: boolean): Issued {
    const now = this.config.now();
    let refreshToken: string | undefined;
    if (withRefreshToken) {
      const live = [...this.families.values()].filter(
        (f) =>
          !f.revoked &&
          f.currentRefreshToken !== null &&
          f.user.id === user.id &&
          f.clientId === clientId,
      );
      const limit = Math.max(1, this.config.approvalsLimit);
      while (live.length >= limit) {
        const oldest = live.shift();
        if (oldest) this.revokeFamily(oldest);
      }
      refreshToken = newRefreshToken();
    }
    const family: Family = {
      id: this.nextFamilyId++,
      clientId,
      user,
      scope,
      currentRefreshToken: refreshToken ?? null,
      revoked: false,
    };
    this.families.set(family.id, family);
    if (refreshToken !== undefined) {
      this.refreshTokens.set(refreshToken, {
        familyId: family.id,
        status: 'current',
        issuedAt: now,
      });
    }
    const accessToken = this.issueAccessToken(family, now);
    return {
      accessToken,
      ...(refreshToken !== undefined ? { refreshToken } : {}),
      scope,
      user,
      issuedAt: now,
      nonce: null,
    };
  }

  refresh(input: { refreshToken: string; clientId: string }): Outcome<Issued> {
    const rec = this.refreshTokens.get(input.refreshToken);
    const family = rec ? this.families.get(rec.familyId) : undefined;
    if (!rec || !family || family.clientId !== input.clientId) {
      return fail('invalid_grant', EXPIRED_TOKEN);
    }
    if (rec.status === 'rotated') {
      // A rotated-out token came back: somebody else holds the family. Revoke it all.
      if (this.config.reuseDetection && !family.revoked) {
        this.revokeFamily(family);
        this.reuseRevocations++;
      }
      return fail('invalid_grant', EXPIRED_TOKEN);
    }
    if (rec.status === 'revoked' || family.revoked) return fail('invalid_grant', EXPIRED_TOKEN);

    const now = this.config.now();
    let refreshToken: string | undefined;
    if (this.config.rotation) {
      refreshToken = newRefreshToken();
      rec.status = 'rotated';
      family.currentRefreshToken = refreshToken;
      this.refreshTokens.set(refreshToken, {
        familyId: family.id,
        status: 'current',
        issuedAt: now,
      });
    }
    const accessToken = this.issueAccessToken(family, now);
    return {
      ok: true,
      value: {
        accessToken,
        ...(refreshToken !== undefined ? { refreshToken } : {}),
        scope: family.scope,
        user: family.user,
        issuedAt: now,
        nonce: null,
      },
    };
  }

  private issueAccessToken(family: Family, now: number): string {
    const token = newAccessToken(this.config.orgId);
    this.accessTokens.set(token, {
      familyId: family.id,
      clientId: family.clientId,
      user: family.user,
      scope: family.scope,
      issuedAt: now,
      expiresAt: now + this.config.accessTokenTtlMs,
      revoked: false,
    });
    return token;
  }

  private revokeFamily(family: Family): void {
    family.revoked = true;
    if (family.currentRefreshToken !== null) {
      const rec = this.refreshTokens.get(family.currentRefreshToken);
      if (rec) rec.status = 'revoked';
    }
  }

  /** The record of a usable access token (not revoked, not expired, family alive). */
  activeAccessToken(token: string): AccessTokenRecord | undefined {
    const rec = this.accessTokens.get(token);
    if (!rec || rec.revoked || rec.expiresAt <= this.config.now()) return undefined;
    if (this.families.get(rec.familyId)?.revoked !== false) return undefined;
    return rec;
  }

  isRefreshTokenActive(token: string): boolean {
    const rec = this.refreshTokens.get(token);
    if (rec?.status !== 'current') return false;
    return this.families.get(rec.familyId)?.revoked === false;
  }

  lookup(token: string): TokenLookup | undefined {
    const access = this.activeAccessToken(token);
    if (access) return { kind: 'access', record: access };
    if (this.isRefreshTokenActive(token)) {
      const rec = this.refreshTokens.get(token);
      const family = rec ? this.families.get(rec.familyId) : undefined;
      if (rec && family) {
        return {
          kind: 'refresh',
          familyClientId: family.clientId,
          user: family.user,
          scope: family.scope,
          issuedAt: rec.issuedAt,
        };
      }
    }
    return undefined;
  }

  /**
   * Revokes a refresh token (with its family's access tokens) or a single access token.
   * false when the token is unknown, expired or already revoked.
   */
  revoke(token: string): boolean {
    if (this.isRefreshTokenActive(token)) {
      const rec = this.refreshTokens.get(token);
      const family = rec ? this.families.get(rec.familyId) : undefined;
      if (family) this.revokeFamily(family);
      return true;
    }
    const access = this.activeAccessToken(token);
    if (access) {
      access.revoked = true;
      return true;
    }
    return false;
  }

  expireAccessTokens(): void {
    const now = this.config.now();
    for (const rec of this.accessTokens.values()) rec.expiresAt = Math.min(rec.expiresAt, now);
  }
}
