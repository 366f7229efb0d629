import { type CallbackDependencies, completeLogin } from '../broker/callback.ts';
import type { BrokerConfig } from '../broker/config.ts';
import { isWellFormedHandle } from '../broker/session-handle.ts';
import { SESSION_COOKIE } from '../http/caller.ts';
import { CLEAR_LOGIN_COOKIE, LOGIN_COOKIE, sessionCookie } from '../http/cookies.ts';
import { parseQuery, singleParameter } from '../http/query.ts';
import { cookieValues, parseEvent } from '../http/request.ts';
import { redirect } from '../http/responses.ts';
import { type HttpHandler, httpRoute } from '../http/route.ts';
import { requireCallbackUrl } from './login.ts';

export interface CallbackRouteDependencies extends Omit<CallbackDependencies, 'config'> {
  config: Pick<BrokerConfig, 'sessionAbsoluteTtlMs' | 'sessionIdleTtlMs' | 'callbackUrl'>;
  metrics: CallbackDependencies['metrics'] & { flush?(): void };
}

/**
 * `GET /callback?code=...&state=...` (README "HTTP contract (v1)"): parses the raw query
 * strictly (a duplicated `code` or `state` is refused, not joined), completes the login
 * and answers `302` to `return_to` with the `__Host-tb-session` cookie; the login cookie
 * is cleared on every answer, success or not, because the transaction is consumed either
 * way. The handle appears only in `Set-Cookie`, never in a URL.
 * @see https://www.rfc-editor.org/rfc/rfc6749#section-4.1.2
 */
export function createCallbackHandler(deps: CallbackRouteDependencies): HttpHandler {
  const callbackUrl = requireCallbackUrl(deps.config);
  const domain: CallbackDependencies = {
    ...deps,
    config: {
      sessionAbsoluteTtlMs: deps.config.sessionAbsoluteTtlMs,
      sessionIdleTtlMs: deps.config.sessionIdleTtlMs,
      callbackUrl,
    },
  };
  return httpRoute(
    'callback',
    deps,
    async (event, log) => {
      const request = parseEvent(event, ['GET']);
      const query = parseQuery(request.rawQueryString);
      const state = singleParameter(query, 'state');
      const code = singleParameter(query, 'code');
      const error = singleParameter(query, 'error');
      const result = await completeLogin(
        { ...domain, log },
        {
          state,
          code,
          error,
          loginCookies: cookieValues(request, LOGIN_COOKIE),
          sessionHandles: cookieValues(request, SESSION_COOKIE).filter(isWellFormedHandle),
        },
      );
      return redirect(result.returnTo, [sessionCookie(result.handle), CLEAR_LOGIN_COOKIE]);
    },
    (response) => ({ ...response, cookies: [CLEAR_LOGIN_COOKIE] }),
  );
}
