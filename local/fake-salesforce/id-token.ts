/** OpenID Connect bits: RS256 `id_token`s, the JWKS at `/id/keys`, discovery metadata. */
import { createHash, generateKeyPair, type KeyObject, sign } from 'node:crypto';

const KID = '258';

export class IdTokenSigner {
  private keys: Promise<{ publicKey: KeyObject; privateKey: KeyObject }> | undefined;

  /** The RSA key pair, generated on first use (only `openid` grants need it). */
  private keyPair(): Promise<{ publicKey: KeyObject; privateKey: KeyObject }> {
    this.keys ??= new Promise((resolve, reject) => {
      generateKeyPair('rsa', { modulusLength: 2048 }, (err, publicKey, privateKey) => {
        if (err) reject(err);
        else resolve({ publicKey, privateKey });
      });
    });
    return this.keys;
  }

  async sign(claims: {
    issuer: string;
    subject: string;
    audience: string;
    accessToken: string;
    issuedAtMs: number;
    nonce: string | null;
  }): Promise<string> {
    const { privateKey } = await this.keyPair();
    const iat = Math.floor(claims.issuedAtMs / 1000);
    const digest = createHash('sha256').update(claims.accessToken).digest();
    const payload: Record<string, unknown> = {
      at_hash: digest.subarray(0, digest.length / 2).toString('base64url'),
      sub: claims.subject,
      aud: claims.audience,
      iss: claims.issuer,
      exp: iat + 300,
      iat,
    };
    if (claims.nonce !== null) payload.nonce = claims.nonce;
    const header = { kid: KID, typ: 'JWT', alg: 'RS256' };
    const input = `${b64url(header)}.${b64url(payload)}`;
    const signature = sign('sha256', Buffer.from(input), privateKey).toString('base64url');
    return `${input}.${signature}`;
  }

  async jwks(): Promise<{ keys: Record<string, unknown>[] }> {
    const { publicKey } = await this.keyPair();
    return {
      keys: [{ ...publicKey.export({ format: 'jwk' }), kid: KID, alg: 'RS256', use: 'sig' }],
    };
  }
}

function b64url(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

export const SUPPORTED_SCOPES = [
  'api',
  'refresh_token',
  'offline_access',
  'openid',
  'id',
  'profile',
  'email',
  'address',
  'phone',
  'web',
  'full',
  'chatter_api',
  'visualforce',
  'custom_permissions',
  'lightning',
  'content',
  'wave_api',
  'pardot_api',
  'cdp_query_api',
];

export function openIdConfiguration(url: string): Record<string, unknown> {
  return {
    issuer: url,
    authorization_endpoint: `${url}/services/oauth2/authorize`,
    token_endpoint: `${url}/services/oauth2/token`,
    revocation_endpoint: `${url}/services/oauth2/revoke`,
    introspection_endpoint: `${url}/services/oauth2/introspect`,
    userinfo_endpoint: `${url}/services/oauth2/userinfo`,
    jwks_uri: `${url}/id/keys`,
    scopes_supported: SUPPORTED_SCOPES,
    response_types_supported: ['code'],
    subject_types_supported: ['public'],
    id_token_signing_alg_values_supported: ['RS256'],
    token_endpoint_auth_methods_supported: ['client_secret_post', 'client_secret_basic'],
    code_challenge_methods_supported: ['S256'],
    claims_supported: [
      'active',
      'address',
      'email',
      'email_verified',
      'family_name',
      'given_name',
      'is_app_installed',
      'language',
      'locale',
      'name',
      'nickname',
      'organization_id',
      'phone_number',
      'phone_number_verified',
      'photos',
      'picture',
      'preferred_username',
      'profile',
      'sub',
      'updated_at',
      'urls',
      'user_id',
      'user_type',
      'zoneinfo',
    ],
  };
}
