import type { BrokerConfig } from '../broker/config.ts';
import { ConfigError } from '../broker/config.ts';
import { InvalidRequestError } from '../broker/errors.ts';
import { validateHandoff } from '../broker/handoff.ts';
import {
  type LoginDependencies,
  startLogin,
  validateLoginHint,
  validatePrompt,
  validateReturnTo,
} from '../broker/login.ts';
import type { HandoffRequest, Log } from '../broker/ports.ts';
import { isWellFormedHandle, sessionKeyOf } from '../broker/session-handle.ts';
import { loginCookie, SESSION_COOKIE } from '../http/cookies.ts';
import { parseQuery, type QueryParameters, singleParameter } from '../http/query.ts';
import { cookieValues, type HttpRequest } from '../http/request.ts';
import {
  type HttpResponse,
  htmlErrorPage,
  prefersHtml,
  recordError,
  redirect,
} from '../http/responses.ts';
import { defineRoute, type FlushableMetrics, type HttpHandler } from '../http/route.ts';

export interface LoginRouteDependencies extends Omit<LoginDependencies, 'config'> {
  config: Pick<
    BrokerConfig,
    | 'scopes'
    | 'returnToPrefixes'
    | 'callbackUrl'
    | 'allowedOrigins'
    | 'clientApps'
    | 'invocationDeadlineMs'
  > &
    Partial<Pick<BrokerConfig, 'loginHosts'>>;
  metrics: FlushableMetrics;
}

/**
 * `GET /login?return_to=/path[&prompt=...][&login_hint=...][&login_host=...][&salesforce_app=...]`
 * (README "HTTP contract (v1)";
 * `return_to` may also be a URL on an allowed origin, README "Browser apps"):
 * validates the parameters, starts the Web Server Flow and answers `302` to Salesforce's
 * authorize endpoint with the `__Host-tb-login` cookie.
 *
 * With `client_id` it is a registered app's login (the one-time handoff, README "Native,
 * desktop and server-side apps"): `redirect_uri`, `state`, `code_challenge` and
 * `code_challenge_method=S256` are then required and `return_to` is refused. A bad handoff
 * request never redirects: a browser gets a `400 invalid_request` page, other clients the
 * JSON error. Throws {@link ConfigError} at
 * construction (cold start) when `CALLBACK_URL` is not configured.
 * @see https://www.rfc-editor.org/rfc/rfc6749#section-4.1.1
 */
export function createLoginHandler(deps: LoginRouteDependencies): HttpHandler {
  const callbackUrl = requireCallbackUrl(deps.config);
  const domain: LoginDependencies = {
    ...deps,
    config: {
      scopes: deps.config.scopes,
      invocationDeadlineMs: deps.config.invocationDeadlineMs,
      callbackUrl,
      loginHosts: deps.config.loginHosts,
    },
  };
  return defineRoute(deps, {
    name: 'login',
    methods: ['GET'],
    handle: async (request, log) => {
      const query = parseQuery(request.rawQueryString);
      if (query.has('client_id')) {
        let handoff: HandoffRequest;
        try {
          handoff = handoffOf(query, deps.config.clientApps);
        } catch (failure) {
          return refusedHandoff(failure, request, log);
        }
        const started = await startLogin(
          { ...domain, log },
          {
            returnTo: handoff.redirectUri,
            prompt: validatePrompt(singleParameter(query, 'prompt')),
            loginHint: validateLoginHint(singleParameter(query, 'login_hint')),
            // The system browser's own session (another app's) is not the app's to replace.
            currentSessionKey: undefined,
            handoff,
            ...upstreamParameters(query),
          },
        );
        return redirect(started.authorizeUrl.toString(), [loginCookie(started.loginCookieValue)]);
      }
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
        { returnTo, prompt, loginHint, currentSessionKey, ...upstreamParameters(query) },
      );
      return redirect(started.authorizeUrl.toString(), [loginCookie(started.loginCookieValue)]);
    },
  });
}

/**
 * `salesforce_app` and `login_host` (README "Login hosts and several connected apps"),
 * checked by the domain against the configured apps and the allow-list.
 */
function upstreamParameters(query: QueryParameters): {
  salesforceApp: string | undefined;
  loginHost: string | undefined;
} {
  return {
    salesforceApp: singleParameter(query, 'salesforce_app'),
    loginHost: singleParameter(query, 'login_host'),
  };
}

function handoffOf(
  query: QueryParameters,
  clientApps: LoginRouteDependencies['config']['clientApps'],
): HandoffRequest {
  if (query.has('return_to')) {
    throw new InvalidRequestError(
      '"return_to" is for browser apps on this site; a registered app uses "redirect_uri".',
    );
  }
  return validateHandoff(
    {
      clientId: singleParameter(query, 'client_id') ?? '',
      redirectUri: singleParameter(query, 'redirect_uri'),
      state: singleParameter(query, 'state'),
      codeChallenge: singleParameter(query, 'code_challenge'),
      codeChallengeMethod: singleParameter(query, 'code_challenge_method'),
    },
    clientApps,
  );
}

/**
 * A handoff request the broker refuses: never a redirect (the redirect URI is not known to
 * be the app's), but a page for a browser, as `/callback` answers an unknown state.
 */
function refusedHandoff(failure: unknown, request: HttpRequest, log: Log): HttpResponse {
  if (!prefersHtml(request.headers.accept)) throw failure;
  const answer = recordError(failure, log);
  return htmlErrorPage(answer.status, {
    title: 'This app cannot sign in here',
    message: `${answer.description} Ask the app's developer to register it with the broker.`,
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
