import {
  type CallbackDependencies,
  completeLogin,
  LoginRedirectError,
} from '../broker/callback.ts';
import type { BrokerConfig } from '../broker/config.ts';
import type { Log } from '../broker/ports.ts';
import { isWellFormedHandle } from '../broker/session-handle.ts';
import {
  CLEAR_LOGIN_COOKIE,
  LOGIN_COOKIE,
  SESSION_COOKIE,
  sessionCookie,
} from '../http/cookies.ts';
import { parseQuery, singleParameter } from '../http/query.ts';
import { cookieValues, type HttpRequest } from '../http/request.ts';
import {
  type HttpResponse,
  htmlErrorPage,
  prefersHtml,
  recordError,
  redirect,
  withQuery,
} from '../http/responses.ts';
import { defineRoute, type FlushableMetrics, type HttpHandler } from '../http/route.ts';
import { requireCallbackUrl } from './login.ts';

export interface CallbackRouteDependencies extends Omit<CallbackDependencies, 'config'> {
  config: Pick<
    BrokerConfig,
    'sessionAbsoluteTtlMs' | 'sessionIdleTtlMs' | 'callbackUrl' | 'invocationDeadlineMs'
  > &
    Partial<
      Pick<BrokerConfig, 'endedConnectionRetentionMs' | 'keepAliveAfterMs' | 'introspection'>
    >;
  metrics: FlushableMetrics;
}

/**
 * `GET /callback?code=...&state=...` (README "HTTP contract (v1)"): parses the raw query
 * strictly (a duplicated `code` or `state` is refused, not joined), completes the login
 * and answers `302` to `return_to` with the `__Host-tb-session` cookie; the login cookie
 * is cleared on every answer, success or not, because the transaction is consumed either
 * way. The handle appears only in `Set-Cookie`, never in a URL.
 *
 * Failures: once the transaction is known, `302` back to its `return_to` with `error`
 * (`access_denied` or `login_failed`) and `error_description` added to the query, like an
 * authorization server's error redirect; before that (a bad `state`), a browser asking for
 * `text/html` gets a small page with the reason and a link to start again, other clients
 * the JSON error.
 *
 * A registered app's login (the handoff) answers its redirect URI instead, with `code`
 * and its `state` on success and `error`, `error_description` and `state` on failure,
 * and sets no session cookie.
 * @see https://www.rfc-editor.org/rfc/rfc6749#section-4.1.2
 * @see https://www.rfc-editor.org/rfc/rfc6749#section-4.1.2.1
 */
export function createCallbackHandler(deps: CallbackRouteDependencies): HttpHandler {
  const callbackUrl = requireCallbackUrl(deps.config);
  const domain: CallbackDependencies = {
    ...deps,
    config: {
      sessionAbsoluteTtlMs: deps.config.sessionAbsoluteTtlMs,
      sessionIdleTtlMs: deps.config.sessionIdleTtlMs,
      invocationDeadlineMs: deps.config.invocationDeadlineMs,
      callbackUrl,
      ...(deps.config.endedConnectionRetentionMs === undefined
        ? {}
        : { endedConnectionRetentionMs: deps.config.endedConnectionRetentionMs }),
      // The new session's first `sweepAt` (README "Keep-alive and expiry").
      ...(deps.config.keepAliveAfterMs === undefined
        ? {}
        : { keepAliveAfterMs: deps.config.keepAliveAfterMs }),
      ...(deps.config.introspection === undefined
        ? {}
        : { introspection: deps.config.introspection }),
    },
  };
  return defineRoute(deps, {
    name: 'callback',
    methods: ['GET'],
    // The transaction is consumed either way, so every answer clears the login cookie.
    errorCookies: [CLEAR_LOGIN_COOKIE],
    handle: async (request, log) => {
      const query = parseQuery(request.rawQueryString);
      const state = singleParameter(query, 'state');
      const code = singleParameter(query, 'code');
      const error = singleParameter(query, 'error');
      try {
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
        if (result.handoff) {
          // A registered app's login: the code goes to the app, the handle stays out of
          // the browser (no session cookie).
          const location = withQuery(result.handoff.redirectUri, {
            code: result.handoff.code,
            state: result.handoff.appState,
          });
          return redirect(location, [CLEAR_LOGIN_COOKIE]);
        }
        return redirect(result.returnTo, [sessionCookie(result.handle), CLEAR_LOGIN_COOKIE]);
      } catch (failure) {
        return failedLogin(failure, request, log);
      }
    },
  });
}

/**
 * The answer to a login that failed once the query was read: back to the app's
 * `return_to` when the transaction is known, a page for a browser when it is not, and
 * otherwise (rethrown) the frame's JSON error.
 */
function failedLogin(failure: unknown, request: HttpRequest, log: Log): HttpResponse {
  if (failure instanceof LoginRedirectError) {
    // Logged and counted like any error answer, then sent back to the app.
    recordError(failure.cause, log);
    const location = withQuery(failure.returnTo, {
      error: failure.error,
      error_description: failure.errorDescription,
      ...(failure.appState === undefined ? {} : { state: failure.appState }),
    });
    return redirect(location, [CLEAR_LOGIN_COOKIE]);
  }
  if (!prefersHtml(request.headers.accept)) throw failure;
  const answer = recordError(failure, log);
  return {
    ...htmlErrorPage(answer.status, {
      title: 'This login cannot be completed',
      message: answer.description,
      link: { href: '/login', text: 'Start the login again' },
    }),
    cookies: [CLEAR_LOGIN_COOKIE],
  };
}
