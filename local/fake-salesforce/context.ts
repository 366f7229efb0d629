/** What the request handlers of the fake server share. */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { FakeCallCounters } from '../fake-salesforce.ts';
import type { FaultQueue } from './faults.ts';
import type { Sleeper } from './http.ts';
import type { IdTokenSigner } from './id-token.ts';
import type { OrgState } from './state.ts';

export interface ResolvedOptions {
  clientId: string;
  redirectUris: readonly string[];
  rotation: boolean;
  reuseDetection: boolean;
  concurrencyBlock: boolean;
  approvalsLimit: number;
  accessTokenTtlMs: number;
  tokenLatencyMs: number;
  introspectLatencyMs: number;
  requirePkce: boolean;
  autoApprove: boolean;
  username: string;
}

export interface Context {
  readonly options: ResolvedOptions;
  readonly orgId: string;
  readonly state: OrgState;
  readonly calls: FakeCallCounters;
  readonly faults: FaultQueue;
  readonly sleeper: Sleeper;
  readonly idTokens: IdTokenSigner;
  /** Base URL of the server (known once it listens). */
  url(): string;
  /** The consumer secret of a connected app of this org, `undefined` for an unknown one. */
  secretOf(clientId: string | null): string | undefined;
}

export function identityUrl(ctx: Context, userId: string): string {
  return `${ctx.url()}/id/${ctx.orgId}/${userId}`;
}

/** base64(HMAC-SHA256(client secret, id + issued_at)), as Salesforce signs token responses. */
export function tokenSignature(secret: string, id: string, issuedAt: string): string {
  return createHmac('sha256', secret)
    .update(id + issuedAt)
    .digest('base64');
}

export function constantTimeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}
