/**
 * Which connected app and which login host a login, a session or a revocation talks to
 * (README "Login hosts and several connected apps"). A login picks them (validated here);
 * the login transaction and then the session record carry them, so every later call for
 * that connection uses the same app's credentials at the same host's endpoints. Records
 * written before they were stored use the first app at its configured host.
 */
import { loginHostUrl, matchLoginHost } from '../shared/login-hosts.ts';
import { InvalidRequestError, UpstreamMisconfiguredError } from './errors.ts';
import type { AlertStore, ClientCredentialsSource, SalesforceApp } from './ports.ts';

/** What the domain needs to pick an app: the apps (the first is the default). */
export interface AppDependencies {
  /**
   * The deployment's connected apps, the first being the default. Absent (unit tests of a
   * single app): one app made of `credentials` at the client's own login URL.
   */
  apps?: readonly SalesforceApp[] | undefined;
  credentials: ClientCredentialsSource;
  /** Where `Upstream Misconfigured` is raised; absent: not raised (unit tests). */
  alerts?: AlertStore | undefined;
}

/** The app and the endpoints' origin for one connection. */
export interface Upstream {
  appName: string;
  credentials: ClientCredentialsSource;
  /** The login host's origin; `undefined`: the Salesforce client's configured one. */
  loginUrl: URL | undefined;
  /** The canonical login host, as stored; `undefined` when none is known. */
  loginHost: string | undefined;
  scopes: string | undefined;
}

/** The upstream of a stored transaction or session. */
export function upstreamOf(
  deps: AppDependencies,
  stored: { salesforceApp?: string | undefined; loginHost?: string | undefined },
): Upstream {
  const apps = deps.apps;
  if (apps === undefined || apps.length === 0) {
    return {
      appName: stored.salesforceApp ?? 'default',
      credentials: deps.credentials,
      loginUrl: undefined,
      loginHost: stored.loginHost,
      scopes: undefined,
    };
  }
  const app =
    stored.salesforceApp === undefined
      ? apps[0]
      : apps.find((candidate) => candidate.name === stored.salesforceApp);
  if (app === undefined) {
    // The operator removed the app this connection was made with: its grant is unusable
    // until the app is configured again. An operator's problem, not the caller's.
    throw new UpstreamMisconfiguredError(
      `The connected app "${stored.salesforceApp}" of this connection is not configured.`,
    );
  }
  const loginHost = stored.loginHost ?? app.loginUrl.hostname;
  return {
    appName: app.name,
    credentials: app.credentials,
    loginUrl: loginHostUrl(loginHost, app.loginUrl),
    loginHost,
    scopes: app.scopes,
  };
}

/**
 * The upstream of a new login from its `salesforce_app` and `login_host` parameters:
 * `400 invalid_request` (before any redirect) for an app that is not configured or a host
 * that is not on the allow-list (`loginHosts`, plus each app's own login host).
 */
export function chooseUpstream(
  deps: AppDependencies & { config: { loginHosts: readonly string[] } },
  request: { salesforceApp?: string | undefined; loginHost?: string | undefined },
): Upstream {
  const apps = deps.apps ?? [];
  if (request.salesforceApp !== undefined && !apps.some((a) => a.name === request.salesforceApp)) {
    throw new InvalidRequestError('The "salesforce_app" parameter names no configured app.');
  }
  if (request.loginHost === undefined) {
    return upstreamOf(deps, { salesforceApp: request.salesforceApp });
  }
  const allowed = [...deps.config.loginHosts, ...apps.map((app) => app.loginUrl.hostname)];
  const host = matchLoginHost(request.loginHost, allowed);
  if (host === undefined) {
    throw new InvalidRequestError('The "login_host" parameter is not an allowed login host.');
  }
  return upstreamOf(deps, { salesforceApp: request.salesforceApp, loginHost: host });
}
