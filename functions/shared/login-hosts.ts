/**
 * The login host allow-list (setting `loginHosts`, `LOGIN_HOSTS`): which Salesforce hosts a
 * login may start at with `/login?login_host=...`. Pure and without imports beyond
 * `./urls.ts`, so the stack's settings check and the functions share it.
 *
 * A pattern is a lower-case DNS name (`login.salesforce.com`) or a one-label wildcard
 * (`*.my.salesforce.com`, which matches `acme.my.salesforce.com` but neither
 * `my.salesforce.com` nor `a.b.my.salesforce.com`). A requested host is a bare host name:
 * no scheme, port, path or user info; IP literals are refused, except a loopback address
 * that is itself listed (the local run and the tests, where the fake Salesforce listens on
 * loopback). Matching ignores case and one trailing dot (`ACME.my.salesforce.com.`).
 * @see https://help.salesforce.com/s/articleView?id=sf.domain_name_overview.htm
 * @see https://www.rfc-editor.org/rfc/rfc1035#section-2.3.1
 */
import { isLoopbackUrl } from './urls.ts';

/** The default allow-list: production, sandboxes, and every My Domain (production or sandbox). */
export const DEFAULT_LOGIN_HOSTS: readonly string[] = [
  'login.salesforce.com',
  'test.salesforce.com',
  '*.my.salesforce.com',
  '*.sandbox.my.salesforce.com',
];

/** Longest DNS name (RFC 1035 s2.3.4, without the trailing dot). */
const MAX_HOST_LENGTH = 253;
/** One DNS label: letters, digits and inner hyphens, 1 to 63 characters (RFC 1123 s2.1). */
const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const IPV4 = /^\d{1,3}(?:\.\d{1,3}){3}$/;

/** A loopback IPv4 literal or `localhost`: listed only for the local run and the tests. */
function isLoopbackHost(host: string): boolean {
  return isLoopbackUrl(new URL(`http://${host}`));
}

/**
 * The host name in canonical form (lower case, no trailing dot), or `undefined` when the
 * value is not a bare DNS host name: anything with a scheme, port, path, query, user info,
 * spaces, an empty or over-long label, an IP literal (IPv4, IPv6, or a number a URL parser
 * would read as one), or non-ASCII (a look-alike in another script).
 */
export function canonicalHost(value: string): string | undefined {
  if (value.length === 0 || value.length > MAX_HOST_LENGTH + 1) return undefined;
  const host = (value.endsWith('.') ? value.slice(0, -1) : value).toLowerCase();
  if (host.length === 0 || host.length > MAX_HOST_LENGTH) return undefined;
  const labels = host.split('.');
  if (!labels.every((label) => LABEL.test(label))) return undefined;
  // A name whose last label is all digits is an IPv4 address to a URL parser (`127.1`,
  // `0x7f.1` has letters but `2130706433` does not): never a Salesforce host.
  if (/^\d+$/.test(labels[labels.length - 1] ?? '')) {
    return IPV4.test(host) && isLoopbackHost(host) ? host : undefined;
  }
  return host;
}

/** Why a pattern cannot be on the allow-list, or `undefined` when it can. */
export function loginHostPatternProblem(pattern: string): string | undefined {
  if (pattern !== pattern.toLowerCase()) return 'must be lower case';
  const name = pattern.startsWith('*.') ? pattern.slice(2) : pattern;
  if (name.includes('*')) {
    return 'may only start with "*." (a wildcard matches one DNS label)';
  }
  const host = canonicalHost(name);
  if (host === undefined || host !== name) {
    return 'must be a DNS host name such as login.salesforce.com or *.my.salesforce.com (no scheme, port, path or IP address)';
  }
  if (pattern.startsWith('*.') && name.split('.').length < 2) {
    return 'must have at least two labels after "*." (no wildcard over a top-level domain)';
  }
  if (IPV4.test(host) && pattern.startsWith('*.')) return 'must not put a wildcard on an address';
  return undefined;
}

/** Whether an allow-list entry is a loopback host (only the local run and tests list one). */
export function isLoopbackPattern(pattern: string): boolean {
  return !pattern.startsWith('*.') && isLoopbackHost(pattern);
}

/**
 * The canonical host when `requested` matches one of `patterns`, else `undefined`. A
 * wildcard matches exactly one label in its place; everything else matches exactly. A
 * loopback address matches only when it is listed itself.
 */
export function matchLoginHost(requested: string, patterns: readonly string[]): string | undefined {
  const host = canonicalHost(requested);
  if (host === undefined) return undefined;
  for (const pattern of patterns) {
    if (pattern === host) return host;
    if (!pattern.startsWith('*.')) continue;
    const suffix = pattern.slice(1);
    if (!host.endsWith(suffix)) continue;
    const label = host.slice(0, -suffix.length);
    if (LABEL.test(label) && !IPV4.test(host)) return host;
  }
  return undefined;
}

/**
 * The origin of a login host's endpoints: the scheme and port of the configured login URL
 * (`https` and the default port in a deployment; loopback http and the fake's port in the
 * local run), with the host put in.
 */
export function loginHostUrl(host: string, configuredLoginUrl: URL): URL {
  const url = new URL(configuredLoginUrl.origin);
  url.hostname = host;
  return url;
}
