import type { BrokerConfig } from '../broker/config.ts';
import { ConfigError } from '../broker/config.ts';
import {
  type LoginDependencies,
  startLogin,
  validateLoginHint,
  validatePrompt,
  validateReturnTo,
} from '../broker/login.ts';
import { isWellFormedHandle, sessionKeyOf } from '../broker/session-handle.ts';
import { loginCookie, SESSION_COOKIE } from '../http/cookies.ts';
import { parseQuery, singleParameter } from '../http/query.ts';
import { cookieValues } from '../http/request.ts';
import { redirect } from '../http/responses.ts';
import { defineRoute, type FlushableMetrics, type HttpHandler } from '../http/route.ts';

export interface LoginRouteDependencies extends Omit<LoginDependencies, 'config'> {
  config: Pick<BrokerConfig, 'scopes' | 'returnToPrefixes' | 'callbackUrl' | 'allowedOrigins'>;
  metrics: FlushableMetrics;
}

/**
 * `GET /login?return_to=/path[&prompt=...][&login_hint=...]` (README "HTTP contract (v1)";
 * `return_to` may also be a URL on an allowed origin, README "Browser apps"):
 * validates the parameters, starts the Web Server Flow and answers `302` to Salesforce's
 * authorize endpoint with the `__Host-tb-login` cookie. Throws {@link ConfigError} at
 * construction (cold start) when `CALLBACK_URL` is not configured.
 * @see https://www.rfc-editor.org/rfc/rfc6749#section-4.1.1
 */
export function createLoginHandler(deps: LoginRouteDependencies): HttpHandler {
  const callbackUrl = requireCallbackUrl(deps.config);
  const domain: LoginDependencies = {
    ...deps,
    config: { scopes: deps.config.scopes, callbackUrl },
  };
  return defineRoute(deps, {
    name: 'login',
    methods: ['GET'],
    handle: async (request, log) => {
      const query = parseQuery(request.rawQueryString);
      // Without return_to: `/`, or the first allowed prefix when `/` is not allowed.
      const returnTo = validateReturnTo(
        singleParameter(query, 'return_to') ?? defaultReturnTo(deps.config.returnToPrefixes),
        deps.config.returnToPrefixes,
        deps.config.allowedOrigins,
      );
      const prompt = validatePrompt(singleParameter(query, 'prompt'));
      const loginHint = validateLoginHint(singleParameter(query, 'login_hint'));
      // A browser that already holds a session replaces it; the key is remembered here
      // because the SameSite=Strict cookie is not sent on Salesforce's redirect back.
      const handles = cookieValues(request, SESSION_COOKIE).filter(isWellFormedHandle);
      const currentSessionKey =
        handles.length === 1 && handles[0] ? sessionKeyOf(handles[0]) : undefined;
      const started = await startLogin(
        { ...domain, log },
        { returnTo, prompt, loginHint, currentSessionKey },
      );
      return redirect(started.authorizeUrl.toString(), [loginCookie(started.loginCookieValue)]);
    },
  });
}

function defaultReturnTo(prefixes: readonly string[]): string {
  return prefixes.includes('/') ? '/' : (prefixes[0] ?? '/');
}

/** `/login` and `/callback` cannot work without the registered callback URL. */
export function requireCallbackUrl(config: Pick<BrokerConfig, 'callbackUrl'>): URL {
  if (!config.callbackUrl) {
    throw new ConfigError('CALLBACK_URL', 'is required by /login and /callback');
  }
  return config.callbackUrl;
}
