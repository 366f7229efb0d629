/**
 * The registered native, desktop and server-side apps of the one-time handoff (setting
 * `clientApps` in CDK context, `CLIENT_APPS` in the functions' environment): one parser for
 * both sides, so a value the stack accepts is a value the functions accept. No imports but
 * the import-free `json-list.ts`: `infra/` and every part of `functions/` may depend on it. Errors are plain `Error`s whose
 * message names the problem; each side wraps them in its own error naming its setting.
 * @see https://www.rfc-editor.org/rfc/rfc8252
 */
import { jsonList } from './json-list.ts';

export interface ClientApp {
  /** `^[A-Za-z0-9._-]{1,64}$`, unique among the apps. */
  clientId: string;
  /** Exact redirect URIs, except that loopback `http` ones match any port. */
  redirectUris: readonly string[];
}

/** The shape of one entry on the wire (JSON), as operators write it. */
export interface ClientAppJson {
  client_id: string;
  redirect_uris: readonly string[];
}

const CLIENT_ID = /^[A-Za-z0-9._-]{1,64}$/;
/** A URI scheme (RFC 3986 s3.1), with at least one dot: reverse-DNS (RFC 8252 s7.1). */
const REVERSE_DNS_SCHEME = /^[a-z][a-z0-9+-]*(?:\.[a-z0-9+-]+)+$/;
/** Longest redirect URI accepted (registered or presented). */
export const MAX_REDIRECT_URI_LENGTH = 2048;
const MAX_APPS = 100;
const MAX_URIS_PER_APP = 20;

/** Whether a value has the shape of a client id (registered or not). */
export function isWellFormedClientId(value: string): boolean {
  return CLIENT_ID.test(value);
}

/**
 * Parses and checks the registered apps: JSON text (the environment variable, a `-c`
 * context value) or the already parsed array (`cdk.json`). Empty or absent is no apps.
 * Throws an `Error` naming the first problem.
 */
export function parseClientApps(value: unknown): ClientApp[] {
  const parsed = jsonList(value, 'must be a JSON array of {"client_id","redirect_uris"}', MAX_APPS);
  const seen = new Set<string>();
  return parsed.map((entry: unknown, index) => {
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
      throw new Error(`entry ${index} must be an object {"client_id","redirect_uris"}`);
    }
    const {
      client_id: clientId,
      redirect_uris: redirectUris,
      ...rest
    } = entry as Record<string, unknown>;
    const unknownMember = Object.keys(rest)[0];
    if (unknownMember !== undefined) {
      throw new Error(`entry ${index} has unknown member "${unknownMember}"`);
    }
    if (typeof clientId !== 'string' || !CLIENT_ID.test(clientId)) {
      throw new Error(
        `entry ${index}: "client_id" must be 1 to 64 letters, digits, ".", "_" or "-"`,
      );
    }
    if (seen.has(clientId)) throw new Error(`"client_id" "${clientId}" is listed twice`);
    seen.add(clientId);
    if (
      !Array.isArray(redirectUris) ||
      redirectUris.length === 0 ||
      redirectUris.length > MAX_URIS_PER_APP
    ) {
      throw new Error(
        `"${clientId}": "redirect_uris" must list 1 to ${MAX_URIS_PER_APP} redirect URIs`,
      );
    }
    for (const uri of redirectUris) {
      if (typeof uri !== 'string') {
        throw new Error(`"${clientId}": "redirect_uris" must hold strings`);
      }
      const problem = redirectUriProblem(uri);
      if (problem !== undefined) throw new Error(`"${clientId}": "${uri}" ${problem}`);
    }
    return { clientId, redirectUris: [...(redirectUris as string[])] };
  });
}

/** The registered apps as `CLIENT_APPS` holds them (the operators' JSON shape). */
export function serializeClientApps(apps: readonly ClientApp[]): string {
  return JSON.stringify(
    apps.map(
      (app): ClientAppJson => ({ client_id: app.clientId, redirect_uris: app.redirectUris }),
    ),
  );
}

/**
 * Why a redirect URI cannot be registered, or `undefined` when it can:
 * - a private-use scheme in reverse-DNS form (`com.example.app:/oauth2redirect`, RFC 8252
 *   s7.1), so two apps cannot claim the same scheme by accident;
 * - `https` (claimed https links, RFC 8252 s7.2, or a server-side app's own endpoint);
 * - `http` only on the loopback IP literals `127.0.0.1` and `[::1]` (RFC 8252 s7.3), which
 *   then match any port; not `localhost`, which a resolver or firewall may send elsewhere
 *   (RFC 8252 s8.3);
 * - never a fragment (RFC 6749 s3.1.2), user info, or characters a URL parser repairs.
 */
export function redirectUriProblem(uri: string): string | undefined {
  if (uri.length === 0 || uri.length > MAX_REDIRECT_URI_LENGTH) {
    return `must be 1 to ${MAX_REDIRECT_URI_LENGTH} characters`;
  }
  if (!/^[\x21-\x7E]+$/.test(uri)) return 'must be printable ASCII without spaces';
  if (uri.includes('#')) return 'must not have a fragment';
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    return 'is not an absolute URI';
  }
  if (url.username || url.password) return 'must not carry user information';
  const scheme = url.protocol.slice(0, -1);
  if (scheme === 'https') {
    return url.hostname === '' ? 'must name a host' : undefined;
  }
  if (scheme === 'http') {
    if (url.hostname !== '127.0.0.1' && url.hostname !== '[::1]') {
      return 'uses http, which only the loopback IP literals 127.0.0.1 and [::1] may use';
    }
    return undefined;
  }
  if (!REVERSE_DNS_SCHEME.test(scheme)) {
    return 'must use https, loopback http, or a reverse-DNS private-use scheme such as com.example.app';
  }
  // A private-use scheme carries a path only (RFC 8252 s7.1 "com.example.app:/oauth2redirect").
  if (uri.startsWith(`${scheme}://`)) return 'must be scheme:/path, without an authority';
  return undefined;
}

/** The registered app with this client id, or `undefined`. */
export function findClientApp(apps: readonly ClientApp[], clientId: string): ClientApp | undefined {
  return apps.find((app) => app.clientId === clientId);
}

/**
 * Whether `presented` is one of the app's redirect URIs: exactly as registered, or, for a
 * loopback `http` URI, the same but for the port (RFC 8252 s7.3: the app picks a free
 * port at the moment of the request). The presented URI is checked with the same rules as
 * a registered one first.
 * @see https://www.rfc-editor.org/rfc/rfc8252#section-7.3
 */
export function isRegisteredRedirectUri(app: ClientApp, presented: string): boolean {
  if (redirectUriProblem(presented) !== undefined) return false;
  return app.redirectUris.some((registered) => {
    if (registered === presented) return true;
    const a = new URL(registered);
    if (a.protocol !== 'http:') return false;
    const b = new URL(presented);
    if (b.protocol !== 'http:' || a.hostname !== b.hostname) return false;
    // The rest must be character for character the registered one, the port aside: the
    // parser normalises nothing else away (both passed redirectUriProblem).
    return withoutPort(registered) === withoutPort(presented);
  });
}

/** A loopback http URI with its port (if any) removed: `http://127.0.0.1:8080/x` -> `http://127.0.0.1/x`. */
function withoutPort(uri: string): string {
  return uri.replace(/^(http:\/\/(?:127\.0\.0\.1|\[::1\]))(?::\d{1,5})?(?=[/?]|$)/, '$1');
}
