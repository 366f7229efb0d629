/**
 * The connected apps of one deployment (setting `salesforceApps`; `SALESFORCE_APPS` in the
 * functions' environment): one parser for both sides, so a value the stack accepts is a
 * value the functions accept. No imports beyond `./settings-table.ts` and `./urls.ts`:
 * `infra/` and every part of `functions/` may depend on it. Errors are plain `Error`s
 * naming the problem; each side wraps them naming its own setting.
 *
 * In CDK context an app is `{"name", "secret_arn"?, "login_url"?, "scopes"?}`: without
 * `secret_arn` the stack creates the app's secret (the first app uses the single-app
 * secret: `existingClientSecretArn` or the one the stack always created), without
 * `login_url` / `scopes` the app takes `salesforceLoginUrl` / `scopes`. The stack writes
 * each app's resolved values to `SALESFORCE_APPS` as `{"name", "secret_id", "login_url",
 * "scopes"}`, and the first app's also to `CLIENT_SECRET_ID`, `SALESFORCE_LOGIN_URL` and
 * `SALESFORCE_SCOPES`, so those keep meaning "the default app".
 * @see https://help.salesforce.com/s/articleView?id=sf.connected_app_overview.htm
 */
import { jsonList } from './json-list.ts';
import { SETTINGS, SettingProblem } from './settings-table.ts';

/** The name of the one app that the single-app settings define (no `salesforceApps`). */
export const SINGLE_APP_NAME = 'default';

const APP_NAME = /^[a-z0-9][a-z0-9_-]{0,31}$/;
const MAX_APPS = 20;

/** One connected app as the functions read it. */
export interface SalesforceAppSettings {
  /** `^[a-z0-9][a-z0-9_-]{0,31}$`, unique; `/login?salesforce_app=<name>` picks it. */
  name: string;
  /** Secrets Manager id (ARN) of the app's `{"client_id","client_secret"}`. */
  secretId: string;
  /** The app's default login origin (a bare origin like `SALESFORCE_LOGIN_URL`). */
  loginUrl: string;
  /** Scopes requested at login, like `SALESFORCE_SCOPES`. */
  scopes: string;
}

/** One app in CDK context, as operators write it. */
export interface SalesforceAppContext {
  name: string;
  secret_arn?: string | undefined;
  login_url?: string | undefined;
  scopes?: string | undefined;
}

/** The app names and members of a list, checked; throws naming the first problem. */
function entries(value: unknown, members: readonly string[]): Record<string, unknown>[] {
  const parsed = jsonList(value, 'must be a JSON array of {"name", ...} objects', MAX_APPS);
  const seen = new Set<string>();
  return parsed.map((entry: unknown, index) => {
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
      throw new Error(`entry ${index} must be an object with a "name"`);
    }
    const fields = entry as Record<string, unknown>;
    const unknownMember = Object.keys(fields).find((key) => !members.includes(key));
    if (unknownMember !== undefined) {
      throw new Error(`entry ${index} has unknown member "${unknownMember}"`);
    }
    const { name } = fields;
    if (typeof name !== 'string' || !APP_NAME.test(name)) {
      throw new Error(
        `entry ${index}: "name" must be 1 to 32 lower-case letters, digits, "_" or "-"`,
      );
    }
    if (seen.has(name)) throw new Error(`"name" "${name}" is listed twice`);
    seen.add(name);
    return fields;
  });
}

/** A member checked by a row of the settings table (the same rule as its single-app setting). */
function checked(
  app: string,
  member: string,
  value: unknown,
  check: (text: string) => string,
): string {
  if (typeof value !== 'string' || value.trim() === '') {
    throw new Error(`"${app}": "${member}" must be a non-empty string`);
  }
  try {
    return check(value);
  } catch (error) {
    if (error instanceof SettingProblem) throw new Error(`"${app}": "${member}" ${error.message}`);
    throw error;
  }
}

/** `SALESFORCE_APPS`: the apps with their resolved secret, login URL and scopes. */
export function parseSalesforceApps(value: unknown): SalesforceAppSettings[] {
  return entries(value, ['name', 'secret_id', 'login_url', 'scopes']).map((fields) => {
    const name = fields.name as string;
    return {
      name,
      secretId: checked(name, 'secret_id', fields.secret_id, (text) => text),
      loginUrl: checked(name, 'login_url', fields.login_url, SETTINGS.salesforceLoginUrl.parse),
      scopes: checked(name, 'scopes', fields.scopes, SETTINGS.scopes.parse),
    };
  });
}

/** The `salesforceApps` context value, checked; members left out stay `undefined`. */
export function parseSalesforceAppsContext(value: unknown): SalesforceAppContext[] {
  return entries(value, ['name', 'secret_arn', 'login_url', 'scopes']).map((fields) => {
    const name = fields.name as string;
    const optional = (member: string, check: (text: string) => string) =>
      fields[member] === undefined ? undefined : checked(name, member, fields[member], check);
    return {
      name,
      secret_arn: optional('secret_arn', (text) => {
        if (
          !/^arn:aws[\w-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[\w/+=.@-]+-[A-Za-z0-9]{6}$/.test(
            text,
          )
        ) {
          throw new SettingProblem(
            'must be the complete secret ARN (ending in the 6-character suffix)',
          );
        }
        return text;
      }),
      login_url: optional('login_url', SETTINGS.salesforceLoginUrl.parse),
      scopes: optional('scopes', SETTINGS.scopes.parse),
    };
  });
}

/** The apps as `SALESFORCE_APPS` holds them. */
export function serializeSalesforceApps(apps: readonly SalesforceAppSettings[]): string {
  return JSON.stringify(
    apps.map((app) => ({
      name: app.name,
      secret_id: app.secretId,
      login_url: app.loginUrl,
      scopes: app.scopes,
    })),
  );
}
