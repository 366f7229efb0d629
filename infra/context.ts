import type { Node } from 'constructs';
import {
  SETTING_CONTEXT_TYPES,
  type SettingContextType,
  type ThrottlingSettings,
  type TokenBrokerSettings,
} from './settings.ts';

/** App-level context: where and how the stack is synthesized. */
export interface AppContext {
  /** CloudFormation stack name (default `TokenBroker`). */
  stackName: string;
  /** Pin the stack to an account/region; by default it is environment-agnostic. */
  account: string | undefined;
  region: string | undefined;
  /** Run cdk-nag's AwsSolutions checks during synth (default true). */
  nag: boolean;
  broker: TokenBrokerSettings;
}

/** A context value cannot be used; the message names the key. */
export class ContextError extends Error {
  readonly key: string;
  constructor(key: string, problem: string) {
    super(`Invalid context "${key}": ${problem}`);
    this.name = 'ContextError';
    this.key = key;
  }
}

/**
 * Reads the broker's settings from CDK context. Keys are the {@link TokenBrokerSettings}
 * names, each read as the type its row in the settings tables gives it. Values come typed
 * from `cdk.json` or as strings from `-c key=value`, so each reader accepts both (`-c allowedOrigins=https://a.example,https://b.example`,
 * `-c retainData=false`, `-c throttling='{"refresh":{"rateLimit":100}}'`).
 * An empty string means "not set", which lets `cdk.json` list every key.
 */
export function readAppContext(node: Pick<Node, 'tryGetContext'>): AppContext {
  const get = (key: string): unknown => {
    const value: unknown = node.tryGetContext(key);
    return value === '' || value === null ? undefined : value;
  };
  const broker: Record<string, unknown> = {};
  for (const [key, type] of Object.entries(SETTING_CONTEXT_TYPES)) {
    broker[key] = READERS[type](get, key);
  }
  // A JSON list, checked by resolveSettings with the functions' own parser.
  broker.clientApps = get('clientApps');
  broker.salesforceApps = get('salesforceApps');
  const stackName = str(get, 'stackName') ?? 'TokenBroker';
  if (!/^[A-Za-z][A-Za-z0-9-]{0,127}$/.test(stackName)) {
    throw new ContextError('stackName', `must be a CloudFormation stack name, got "${stackName}"`);
  }
  const account = str(get, 'account');
  if (account !== undefined && !/^\d{12}$/.test(account)) {
    throw new ContextError('account', `must be a 12-digit AWS account id, got "${account}"`);
  }
  const region = str(get, 'region');
  if (region !== undefined && !/^[a-z]{2}(-[a-z]+)+-\d$/.test(region)) {
    throw new ContextError('region', `must be an AWS region such as eu-west-1, got "${region}"`);
  }
  return {
    stackName,
    account,
    region,
    nag: bool(get, 'nag') ?? true,
    broker: broker as TokenBrokerSettings,
  };
}

type Get = (key: string) => unknown;

/** The reader of each context type the settings tables name. */
const READERS: Record<SettingContextType, (get: Get, key: string) => unknown> = {
  text: str,
  integer: int,
  list,
  boolean: bool,
  throttling,
};

function str(get: Get, key: string): string | undefined {
  const value = get(key);
  if (value === undefined) return undefined;
  if (typeof value !== 'string') {
    throw new ContextError(key, `must be a string, got ${JSON.stringify(value)}`);
  }
  return value.trim() || undefined;
}

function int(get: Get, key: string): number | undefined {
  const value = get(key);
  if (value === undefined) return undefined;
  if (typeof value === 'number' && Number.isInteger(value)) return value;
  if (typeof value === 'string' && /^\d+$/.test(value.trim())) return Number(value.trim());
  throw new ContextError(key, `must be a whole number, got ${JSON.stringify(value)}`);
}

function bool(get: Get, key: string): boolean | undefined {
  const value = get(key);
  if (value === undefined || typeof value === 'boolean') return value;
  if (value === 'true' || value === 'false') return value === 'true';
  throw new ContextError(key, `must be true or false, got ${JSON.stringify(value)}`);
}

function list(get: Get, key: string): string[] | undefined {
  const value = get(key);
  if (value === undefined) return undefined;
  if (typeof value === 'string') {
    const text = value.trim();
    const items: unknown = text.startsWith('[') ? parseJson(key, text) : text.split(',');
    return list(() => items, key);
  }
  if (Array.isArray(value) && value.every((item) => typeof item === 'string')) {
    return value.map((item) => item.trim()).filter(Boolean);
  }
  throw new ContextError(
    key,
    `must be a list of strings (JSON array or comma-separated), got ${JSON.stringify(value)}`,
  );
}

function throttling(get: Get, key: string): ThrottlingSettings | undefined {
  let value = get(key);
  if (value === undefined) return undefined;
  if (typeof value === 'string') value = parseJson(key, value);
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ContextError(
      key,
      'must be an object such as {"refresh":{"rateLimit":500,"burstLimit":1000}}',
    );
  }
  const result: Record<string, { rateLimit?: number; burstLimit?: number }> = {};
  for (const [route, limits] of Object.entries(value)) {
    if (typeof limits !== 'object' || limits === null) {
      throw new ContextError(`${key}.${route}`, 'must be an object {"rateLimit","burstLimit"}');
    }
    const entry: { rateLimit?: number; burstLimit?: number } = {};
    for (const [name, limit] of Object.entries(limits)) {
      if (name !== 'rateLimit' && name !== 'burstLimit') {
        throw new ContextError(`${key}.${route}`, `has unknown member "${name}"`);
      }
      const parsed = int(() => limit, `${key}.${route}.${name}`);
      if (parsed !== undefined) entry[name] = parsed;
    }
    result[route] = entry;
  }
  return result;
}

function parseJson(key: string, text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new ContextError(key, `is not valid JSON: ${text}`);
  }
}
