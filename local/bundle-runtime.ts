/**
 * Runs the synthesized Lambda bundles (`cdk.out`) the way Lambda and API Gateway would,
 * on loopback: what ships, rather than the TypeScript entry files.
 *
 * - {@link synthesizeApp} runs the CDK app (`cdk.json`'s `app`) in a child process, with
 *   `cdk.json`'s context plus overrides, as `cdk synth` does (no AWS credentials needed).
 * - {@link readDeployedApp} finds each route's function in the template: its bundle
 *   directory, `Handler`, `Timeout`, `MemorySize` and `Environment.Variables`.
 * - {@link resolveEnvironment} gives a function the template's environment with every
 *   CloudFormation intrinsic replaced by its local equivalent, plain values kept as
 *   deployed, and only {@link LOCAL_OVERRIDES} (endpoints and credentials) changed.
 * - {@link BundleFunction} invokes a bundle like the Lambda runtime: one
 *   `node:worker_threads` Worker per concurrent invocation (no shared module state), the
 *   function timeout enforced by terminating the worker, stdout captured.
 * - {@link startBundleApi} serves the template's HTTP API routes over real HTTP.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import type { InvokeMessage, WorkerData, WorkerMessage } from './bundle-worker.ts';
import { type KeyedRoute, type LocalServer, startLocalServer } from './lambda-http.ts';
import type { SigV4Verifier } from './sigv4-verifier.ts';

// ---------------------------------------------------------------------------------------
// Synthesis

/**
 * Synthesizes the CDK app of `projectRoot` into `outdir` (a new temporary directory by
 * default) and returns that directory. Runs `cdk.json`'s `app` command in a child process
 * with the context the CDK CLI would pass (`cdk.json`'s, asset metadata on) plus
 * `context`, so several variants can be synthesized side by side. AWS variables of this
 * process are not passed on: synthesis needs no credentials and no network.
 */
export async function synthesizeApp(options: {
  projectRoot: string;
  context?: Record<string, unknown>;
  outdir?: string;
  timeoutMs?: number;
}): Promise<string> {
  const cdkJson = JSON.parse(readFileSync(join(options.projectRoot, 'cdk.json'), 'utf8')) as {
    app: string;
    context?: Record<string, unknown>;
  };
  const [command, ...args] = cdkJson.app.split(/\s+/);
  if (command !== 'node') throw new Error(`synthesizeApp: cdk.json "app" must run node`);
  const outdir = options.outdir ?? mkdtempSync(join(tmpdir(), 'token-broker-bundles-'));
  const context = {
    ...cdkJson.context,
    // The CDK CLI sets these by default: the template then names each function's bundle
    // (`aws:asset:path`) and construct path (`aws:cdk:path`).
    'aws:cdk:enable-asset-metadata': true,
    'aws:cdk:enable-path-metadata': true,
    ...options.context,
  };
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (!name.startsWith('AWS_')) env[name] = value;
  }
  env.CDK_OUTDIR = outdir;
  env.CDK_CONTEXT_JSON = JSON.stringify(context);

  await new Promise<void>((resolve, reject) => {
    const child = spawn(process.execPath, args, {
      cwd: options.projectRoot,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    const collect = (chunk: Buffer) => {
      output = (output + chunk.toString('utf8')).slice(-8000);
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 180_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve();
      else reject(new Error(`synthesis failed (${signal ?? `exit ${code}`}):\n${output}`));
    });
  });
  return outdir;
}

// ---------------------------------------------------------------------------------------
// The template

/** A value of the template: plain, or a CloudFormation intrinsic (`Ref`, `Fn::*`). */
export type TemplateValue = string | number | boolean | { [intrinsic: string]: unknown };

interface TemplateResource {
  Type: string;
  Properties?: Record<string, unknown>;
  Metadata?: Record<string, unknown>;
}

export interface CloudFormationTemplate {
  Resources: Record<string, TemplateResource>;
}

/** One `AWS::Lambda::Function` behind an HTTP API route, as the template declares it. */
export interface DeployedFunction {
  logicalId: string;
  /** The construct id (`RefreshFunction`), which `sam local invoke` also accepts. */
  name: string;
  /** The route it serves: `ANY /refresh`, `GET /connections/{connection_id}`, or `$default`. */
  routeKey: string;
  /** The route's `AuthorizationType`: `NONE`, or `AWS_IAM` (the service API). */
  authorizationType: string;
  /** Absolute directory of the bundle (`aws:asset:path`). */
  assetDir: string;
  /** `index.handler`: file `index.mjs`, export `handler`. */
  handler: string;
  runtime: string;
  timeoutSeconds: number;
  memorySizeMb: number;
  /** `Environment.Variables` as in the template. */
  environment: Readonly<Record<string, TemplateValue>>;
}

/** What EventBridge Scheduler passes as the event: the target's `Input`, parsed. */
export type ScheduleInput = Record<string, unknown>;

/** A function an `AWS::Scheduler::Schedule` invokes (the sweep), with the schedule's input. */
export interface ScheduledFunction extends DeployedFunction {
  scheduleExpression: string;
  /** The target's `Input`, parsed: the event each run gets. */
  input: ScheduleInput;
}

export interface DeployedApp {
  outdir: string;
  template: CloudFormationTemplate;
  functions: DeployedFunction[];
  /** The functions schedules invoke, one per schedule. */
  scheduled: ScheduledFunction[];
  /** The function serving `routeKey` (`ANY /refresh`, `$default`). */
  route(routeKey: string): DeployedFunction;
}

/** Reads a synthesized stack and the functions of its HTTP API routes. */
export function readDeployedApp(outdir: string, stackName = 'TokenBroker'): DeployedApp {
  const template = JSON.parse(
    readFileSync(join(outdir, `${stackName}.template.json`), 'utf8'),
  ) as CloudFormationTemplate;
  const resources = template.Resources;
  const resource = (logicalId: string, type: string): TemplateResource => {
    const found = resources[logicalId];
    if (found?.Type !== type) throw new Error(`template: ${logicalId} is not a ${type}`);
    return found;
  };

  const deployedFunction = (logicalId: string, routeKey: string, authorizationType: string) =>
    functionOf(outdir, resource(logicalId, 'AWS::Lambda::Function'), {
      logicalId,
      routeKey,
      authorizationType,
    });

  const functions: DeployedFunction[] = [];
  for (const route of Object.values(resources)) {
    if (route.Type !== 'AWS::ApiGatewayV2::Route') continue;
    const routeKey = String(route.Properties?.RouteKey);
    const integrationId = refIn(route.Properties?.Target);
    if (!integrationId) throw new Error(`template: route ${routeKey} has no integration`);
    const integration = resource(integrationId, 'AWS::ApiGatewayV2::Integration').Properties ?? {};
    if (integration.IntegrationType !== 'AWS_PROXY' || integration.PayloadFormatVersion !== '2.0') {
      throw new Error(`template: route ${routeKey} is not a Lambda proxy integration, format 2.0`);
    }
    const uri = integration.IntegrationUri as { 'Fn::GetAtt'?: [string, string] } | undefined;
    const logicalId = uri?.['Fn::GetAtt']?.[0];
    if (!logicalId) throw new Error(`template: route ${routeKey} does not invoke a function`);
    functions.push(
      deployedFunction(logicalId, routeKey, String(route.Properties?.AuthorizationType ?? 'NONE')),
    );
  }
  const scheduled = scheduledFunctions(resources, deployedFunction);
  return {
    outdir,
    template,
    functions,
    scheduled,
    route(routeKey) {
      const found = functions.find((fn) => fn.routeKey === routeKey);
      if (!found) throw new Error(`template: no function serves ${routeKey}`);
      return found;
    },
  };
}

/** A function's bundle, handler, limits and environment, as the template declares them. */
function functionOf(
  outdir: string,
  fn: TemplateResource,
  where: { logicalId: string; routeKey: string; authorizationType: string },
): DeployedFunction {
  const properties = fn.Properties ?? {};
  const assetPath = fn.Metadata?.['aws:asset:path'];
  if (typeof assetPath !== 'string') {
    throw new Error(`template: ${where.logicalId} has no aws:asset:path (asset metadata off?)`);
  }
  const cdkPath = String(fn.Metadata?.['aws:cdk:path'] ?? where.logicalId);
  return {
    ...where,
    name: cdkPath.split('/').at(-2) ?? where.logicalId,
    assetDir: join(outdir, assetPath),
    handler: String(properties.Handler),
    runtime: String(properties.Runtime),
    timeoutSeconds: Number(properties.Timeout ?? 3),
    memorySizeMb: Number(properties.MemorySize ?? 128),
    environment:
      (properties.Environment as { Variables?: Record<string, TemplateValue> } | undefined)
        ?.Variables ?? {},
  };
}

/** The functions EventBridge Scheduler schedules invoke, each with its schedule's input. */
function scheduledFunctions(
  resources: Record<string, TemplateResource>,
  deployedFunction: (logicalId: string, routeKey: string, auth: string) => DeployedFunction,
): ScheduledFunction[] {
  const scheduled: ScheduledFunction[] = [];
  for (const schedule of Object.values(resources)) {
    if (schedule.Type !== 'AWS::Scheduler::Schedule') continue;
    const target = (schedule.Properties?.Target ?? {}) as { Arn?: unknown; Input?: unknown };
    const logicalId = (target.Arn as { 'Fn::GetAtt'?: [string, string] } | undefined)?.[
      'Fn::GetAtt'
    ]?.[0];
    if (!logicalId) throw new Error('template: a schedule does not invoke a function');
    scheduled.push({
      ...deployedFunction(logicalId, 'schedule', 'NONE'),
      scheduleExpression: String(schedule.Properties?.ScheduleExpression),
      input: JSON.parse(typeof target.Input === 'string' ? target.Input : '{}'),
    });
  }
  return scheduled;
}

/** The logical id of the one `Ref` inside a value (e.g. `integrations/${Ref}`). */
function refIn(value: unknown): string | undefined {
  const ids = referencedIds(value);
  return ids.length === 1 ? ids[0] : undefined;
}

/** Logical ids referenced by `Ref` and `Fn::GetAtt` anywhere in a value, pseudo parameters left out. */
function referencedIds(value: unknown): string[] {
  if (Array.isArray(value)) return value.flatMap(referencedIds);
  if (typeof value !== 'object' || value === null) return [];
  const ids: string[] = [];
  for (const [key, inner] of Object.entries(value)) {
    if (key === 'Ref' && typeof inner === 'string') {
      if (!inner.startsWith('AWS::')) ids.push(inner);
    } else if (key === 'Fn::GetAtt' && Array.isArray(inner) && typeof inner[0] === 'string') {
      ids.push(inner[0]);
    } else {
      ids.push(...referencedIds(inner));
    }
  }
  return [...new Set(ids)];
}

// ---------------------------------------------------------------------------------------
// The environment

/**
 * The only variables a local run changes or adds beyond resolving intrinsics: where AWS
 * and Salesforce are, and the credentials for the emulators. Salesforce's login URL is
 * replaced because synth accepts only https login URLs and the fake is plain http.
 * Everything else (LEASE_MS, UPSTREAM_TIMEOUT_MS, WAIT_BUDGET_MS, ALLOWED_ORIGINS, ...)
 * is exactly the template's.
 */
export const LOCAL_OVERRIDES = [
  'AWS_REGION',
  'AWS_ACCESS_KEY_ID',
  'AWS_SECRET_ACCESS_KEY',
  'AWS_ENDPOINT_URL_DYNAMODB',
  'AWS_ENDPOINT_URL_KMS',
  'AWS_ENDPOINT_URL_SECRETS_MANAGER',
  'SALESFORCE_LOGIN_URL',
] as const;

export type LocalOverride = (typeof LOCAL_OVERRIDES)[number];

/** Variables the Lambda runtime itself sets in every function (not in the template). */
export const LAMBDA_RUNTIME_VARIABLES = [
  'AWS_LAMBDA_FUNCTION_NAME',
  'AWS_LAMBDA_FUNCTION_VERSION',
  'AWS_LAMBDA_FUNCTION_MEMORY_SIZE',
  'AWS_EXECUTION_ENV',
  'LAMBDA_TASK_ROOT',
  '_HANDLER',
] as const;

/** What the template's resources are, locally. */
export interface LocalResources {
  /** `Ref` of the `AWS::DynamoDB::Table`. */
  tableName: string;
  /** `Ref` or `Arn` of the `AWS::KMS::Key`. */
  keyId: string;
  /** `Ref` of the `AWS::SecretsManager::Secret`. */
  secretId: string;
  /** Base URL of the local HTTP API, standing for the `AWS::ApiGatewayV2::Api` endpoint. */
  apiUrl: string;
}

/**
 * The environment a function runs with locally: the template's variables, each intrinsic
 * replaced by its local equivalent (a value with no known equivalent fails loudly, so a
 * new resource in the template cannot slip through unresolved), plus the Lambda runtime's
 * own variables, with exactly {@link LOCAL_OVERRIDES} taken from `overrides`.
 */
export function resolveEnvironment(
  fn: DeployedFunction,
  template: CloudFormationTemplate,
  local: LocalResources,
  overrides: Readonly<Record<LocalOverride, string>>,
): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(fn.environment)) {
    env[name] =
      typeof value === 'object' ? resolveIntrinsic(name, value, template, local) : String(value);
  }
  for (const name of LOCAL_OVERRIDES) {
    const value = overrides[name];
    if (value === undefined) throw new Error(`resolveEnvironment: no local value for ${name}`);
    env[name] = value;
  }
  const runtime: Record<(typeof LAMBDA_RUNTIME_VARIABLES)[number], string> = {
    AWS_LAMBDA_FUNCTION_NAME: fn.name,
    AWS_LAMBDA_FUNCTION_VERSION: '$LATEST',
    AWS_LAMBDA_FUNCTION_MEMORY_SIZE: String(fn.memorySizeMb),
    AWS_EXECUTION_ENV: `AWS_Lambda_${fn.runtime}`,
    LAMBDA_TASK_ROOT: fn.assetDir,
    _HANDLER: fn.handler,
  };
  return { ...env, ...runtime };
}

function resolveIntrinsic(
  name: string,
  value: { [intrinsic: string]: unknown },
  template: CloudFormationTemplate,
  local: LocalResources,
): string {
  const ids = referencedIds(value);
  const types = ids.map((id) => template.Resources[id]?.Type);
  const unresolvable = () =>
    new Error(`${name}: no local equivalent for ${JSON.stringify(value)} (${types.join(', ')})`);
  if (ids.length !== 1) throw unresolvable();
  const [intrinsic] = Object.keys(value);
  switch (types[0]) {
    case 'AWS::DynamoDB::Table':
      if (intrinsic === 'Ref') return local.tableName;
      break;
    case 'AWS::KMS::Key':
      if (intrinsic === 'Ref' || intrinsic === 'Fn::GetAtt') return local.keyId;
      break;
    case 'AWS::SecretsManager::Secret':
      if (intrinsic === 'Ref') return local.secretId;
      break;
    case 'AWS::ApiGatewayV2::Api': {
      // `https://${Api}.execute-api.${Region}.${URLSuffix}/callback`: the endpoint is the
      // local API; the literal path after the last intrinsic part is kept.
      const join = value['Fn::Join'] as [string, unknown[]] | undefined;
      if (intrinsic !== 'Fn::Join' || !join || join[0] !== '') break;
      const parts = join[1];
      const lastIntrinsic = parts.findLastIndex((part) => typeof part !== 'string');
      const tail = parts.slice(lastIntrinsic + 1).join('');
      const path = tail.slice(Math.max(0, tail.indexOf('/')));
      return `${local.apiUrl.replace(/\/$/, '')}${path.startsWith('/') ? path : `/${path}`}`;
    }
  }
  throw unresolvable();
}

// ---------------------------------------------------------------------------------------
// Invocations

/** API Gateway's answer when the function fails or times out. */
export const FUNCTION_ERROR_RESULT: APIGatewayProxyStructuredResultV2 = {
  statusCode: 500,
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify({ message: 'Internal Server Error' }),
};

/**
 * A safety net for the init phase (importing the bundle), not Lambda's 10 s limit: that
 * limit assumes a CPU of the environment's own, while here every environment shares the
 * machine's cores, and twenty cold starts at once take a while.
 */
const INIT_TIMEOUT_MS = 60_000;

export interface Invocation {
  functionName: string;
  requestId: string;
  /** The execution environment (worker) that ran it. */
  workerId: number;
  /** The worker was started for this invocation. */
  coldStart: boolean;
  /** Killed at the function timeout. */
  timedOut: boolean;
  /** The handler threw, the worker died, or init failed. */
  failed: boolean;
  /** Why it failed (the thrown error's name and message, or what happened to the worker). */
  error?: string;
  statusCode: number;
}

/** One line a function wrote to stdout or stderr (its JSON logs and EMF metrics). */
export interface LogLine {
  functionName: string;
  workerId: number;
  stream: 'stdout' | 'stderr';
  line: string;
}

export interface BundleFunctionOptions {
  /**
   * Reuse an idle worker for the next invocation, like a warm execution environment
   * (default true). A busy worker is never shared: concurrent invocations each get one.
   */
  keepWarm?: boolean;
  /** Receives every completed invocation. */
  onInvocation?: (invocation: Invocation) => void;
  /** Receives every line the function writes. */
  onLog?: (line: LogLine) => void;
}

let nextWorkerId = 1;

interface ExecutionEnvironment {
  id: number;
  worker: Worker;
  ready: Promise<void>;
  /** Settles when the worker exits, for any reason. */
  exited: Promise<void>;
  alive: boolean;
}

/** A synthesized function, invoked like Lambda invokes it. */
export class BundleFunction {
  readonly fn: DeployedFunction;
  readonly env: Readonly<Record<string, string>>;
  readonly #options: BundleFunctionOptions;
  readonly #idle: ExecutionEnvironment[] = [];
  readonly #all = new Set<ExecutionEnvironment>();

  constructor(
    fn: DeployedFunction,
    env: Readonly<Record<string, string>>,
    options: BundleFunctionOptions = {},
  ) {
    this.fn = fn;
    this.env = env;
    this.#options = options;
  }

  /**
   * Runs one invocation in a worker of its own; never rejects. The event is an HTTP API
   * event, or a schedule's input (which has no request context).
   */
  async invoke(event: APIGatewayProxyEventV2 | ScheduleInput): Promise<{
    result: APIGatewayProxyStructuredResultV2;
    invocation: Invocation;
  }> {
    const warm = this.#options.keepWarm === false ? undefined : this.#takeIdle();
    const environment = warm ?? this.#start();
    const requestId =
      (event as Partial<APIGatewayProxyEventV2>).requestContext?.requestId || randomUUID();
    const outcome = await this.#run(environment, event, requestId);
    const invocation: Invocation = {
      functionName: this.fn.name,
      requestId,
      workerId: environment.id,
      coldStart: warm === undefined,
      timedOut: outcome.kind === 'timed-out',
      failed: outcome.kind !== 'result',
      ...(outcome.error === undefined ? {} : { error: outcome.error }),
      statusCode: outcome.result.statusCode ?? 200,
    };
    if (environment.alive && this.#options.keepWarm !== false) this.#idle.push(environment);
    else if (environment.alive) await this.#stop(environment);
    this.#options.onInvocation?.(invocation);
    return { result: outcome.result, invocation };
  }

  /**
   * Starts `count` execution environments and waits until each has run its init, like
   * provisioned concurrency: the next `count` concurrent invocations start at once.
   */
  async prewarm(count: number): Promise<void> {
    const started = Array.from({ length: count }, () => this.#start());
    await Promise.all(started.map((environment) => environment.ready));
    this.#idle.push(...started);
  }

  /** Terminates every worker. */
  async close(): Promise<void> {
    this.#idle.length = 0;
    await Promise.all([...this.#all].map((environment) => this.#stop(environment)));
  }

  #takeIdle(): ExecutionEnvironment | undefined {
    for (let environment = this.#idle.pop(); environment; environment = this.#idle.pop()) {
      if (environment.alive) return environment;
    }
    return undefined;
  }

  #start(): ExecutionEnvironment {
    const [file, exportName] = splitHandler(this.fn.handler);
    const id = nextWorkerId++;
    const workerData: WorkerData = {
      bundleUrl: pathToFileURL(join(this.fn.assetDir, file)).href,
      exportName,
      functionName: this.fn.name,
      memorySizeMb: this.fn.memorySizeMb,
    };
    const worker = new Worker(new URL('./bundle-worker.ts', import.meta.url), {
      env: { ...this.env },
      workerData,
      stdout: true,
      stderr: true,
      execArgv: [],
      resourceLimits: { maxOldGenerationSizeMb: this.fn.memorySizeMb },
    });
    for (const stream of ['stdout', 'stderr'] as const) {
      let pending = '';
      worker[stream].on('data', (chunk: Buffer) => {
        const lines = (pending + chunk.toString('utf8')).split('\n');
        pending = lines.pop() ?? '';
        for (const line of lines) {
          if (line)
            this.#options.onLog?.({ functionName: this.fn.name, workerId: id, stream, line });
        }
      });
      worker[stream].on('end', () => {
        if (pending) {
          this.#options.onLog?.({
            functionName: this.fn.name,
            workerId: id,
            stream,
            line: pending,
          });
        }
      });
    }
    const environment: ExecutionEnvironment = {
      id,
      worker,
      alive: true,
      ready: new Promise<void>((resolve, reject) => {
        const onMessage = (message: WorkerMessage) => {
          if (message.type === 'ready') resolve();
          if (message.type === 'init-failed') reject(new Error(message.error));
          if (message.type === 'ready' || message.type === 'init-failed') {
            worker.off('message', onMessage);
          }
        };
        worker.on('message', onMessage);
        worker.once('error', reject);
        worker.once('exit', () => reject(new Error('the worker exited during init')));
      }),
      exited: new Promise<void>((resolve) => worker.once('exit', () => resolve())),
    };
    // A worker that dies is never reused; its invocation (if any) sees the exit itself.
    worker.on('error', () => {
      environment.alive = false;
    });
    void environment.exited.then(() => {
      environment.alive = false;
      this.#all.delete(environment);
    });
    environment.ready.catch(() => {});
    this.#all.add(environment);
    return environment;
  }

  async #stop(environment: ExecutionEnvironment): Promise<void> {
    environment.alive = false;
    await environment.worker.terminate();
    await environment.exited;
  }

  async #run(
    environment: ExecutionEnvironment,
    event: APIGatewayProxyEventV2 | ScheduleInput,
    requestId: string,
  ): Promise<RunOutcome> {
    const failed = (error: string): RunOutcome => ({
      kind: 'failed',
      result: FUNCTION_ERROR_RESULT,
      error,
    });
    const initTimer = setTimeout(() => void this.#stop(environment), INIT_TIMEOUT_MS);
    try {
      await environment.ready;
    } catch (error) {
      await this.#stop(environment);
      return failed(`init failed: ${error instanceof Error ? error.message : String(error)}`);
    } finally {
      clearTimeout(initTimer);
    }
    const { worker } = environment;
    // Lambda's timeout counts from the invoke, not from init.
    const timeoutMs = this.fn.timeoutSeconds * 1000;
    const deadline = Date.now() + timeoutMs;
    return new Promise<RunOutcome>((resolve) => {
      let settled = false;
      const settle = (outcome: RunOutcome) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        worker.off('message', onMessage);
        worker.off('exit', onExit);
        resolve(outcome);
      };
      const onMessage = (message: WorkerMessage) => {
        if (message.type === 'result' && message.requestId === requestId) {
          settle({ kind: 'result', result: asHttpResult(message.result) });
        } else if (message.type === 'failed' && message.requestId === requestId) {
          settle(failed(message.error));
        }
      };
      let killed = false;
      const onExit = () =>
        settle(
          killed
            ? { kind: 'timed-out', result: FUNCTION_ERROR_RESULT, error: 'function timeout' }
            : failed('the worker exited'),
        );
      // The function timeout: the execution environment is killed, whatever it was doing.
      const timer = setTimeout(() => {
        killed = true;
        void this.#stop(environment);
      }, timeoutMs);
      worker.on('message', onMessage);
      worker.once('exit', onExit);
      const message: InvokeMessage = { type: 'invoke', event, requestId, deadline };
      worker.postMessage(message);
    });
  }
}

interface RunOutcome {
  kind: 'result' | 'failed' | 'timed-out';
  result: APIGatewayProxyStructuredResultV2;
  error?: string;
}

function splitHandler(handler: string): [file: string, exportName: string] {
  const dot = handler.lastIndexOf('.');
  if (dot <= 0) throw new Error(`unsupported Handler "${handler}"`);
  // ESM bundles: NodejsFunction writes `index.mjs` for `index.handler`.
  return [`${handler.slice(0, dot)}.mjs`, handler.slice(dot + 1)];
}

/**
 * A structured result passes through; anything else is what API Gateway makes of a
 * payload format 2.0 answer without `statusCode`: 200 with the value as JSON.
 */
function asHttpResult(value: unknown): APIGatewayProxyStructuredResultV2 {
  if (typeof value === 'object' && value !== null && 'statusCode' in value) {
    return value as APIGatewayProxyStructuredResultV2;
  }
  return {
    statusCode: 200,
    headers: { 'content-type': 'application/json' },
    body: typeof value === 'string' ? value : JSON.stringify(value ?? null),
  };
}

// ---------------------------------------------------------------------------------------
// The HTTP API

export interface BundleApi {
  readonly url: string;
  readonly server: LocalServer;
  /** By route key (`ANY /refresh`, `$default`). */
  readonly functions: ReadonlyMap<string, BundleFunction>;
  /** Completed invocations, in completion order. */
  readonly invocations: Invocation[];
  /** Lines the functions wrote, in arrival order (never printed). */
  readonly logs: LogLine[];
  close(): Promise<void>;
}

/**
 * Serves the template's HTTP API routes on loopback, each by its synthesized function
 * with its resolved environment: `ANY /<path>`, `$default`, and `<METHOD> /<path>` keys
 * with `{parameters}` (the service API), whose `AWS_IAM` authorization `iamVerifier`
 * stands in for. A function behind several route keys is one function (one pool of
 * execution environments). Any other route key shape fails loudly.
 */
export async function startBundleApi(options: {
  app: DeployedApp;
  resources: Omit<LocalResources, 'apiUrl'>;
  overrides: Readonly<Record<LocalOverride, string>>;
  host?: string;
  port?: number;
  keepWarm?: boolean;
  /** Verifies SigV4 on `AWS_IAM` routes; without it, every such request is `403`. */
  iamVerifier?: SigV4Verifier;
}): Promise<BundleApi> {
  const invocations: Invocation[] = [];
  const logs: LogLine[] = [];
  const functions = new Map<string, BundleFunction>();
  const handlerFor = (routeKey: string) => async (event: APIGatewayProxyEventV2) => {
    const fn = functions.get(routeKey);
    if (!fn) throw new Error(`no function for ${routeKey}`);
    const routed = { ...event, routeKey, requestContext: { ...event.requestContext, routeKey } };
    return (await fn.invoke(routed)).result;
  };

  const routes: Record<string, ReturnType<typeof handlerFor>> = {};
  const keyedRoutes: KeyedRoute[] = [];
  let defaultRoute: ReturnType<typeof handlerFor> | undefined;
  for (const fn of options.app.functions) {
    if (fn.routeKey === '$default') {
      defaultRoute = handlerFor(fn.routeKey);
      continue;
    }
    const any = /^ANY (\/[^\s{}]*)$/.exec(fn.routeKey);
    if (any?.[1] && fn.authorizationType === 'NONE') {
      routes[any[1]] = handlerFor(fn.routeKey);
      continue;
    }
    if (!/^(GET|POST|PUT|PATCH|DELETE) \/[\w/{}-]*$/.test(fn.routeKey)) {
      throw new Error(`startBundleApi: unsupported route key ${fn.routeKey}`);
    }
    if (fn.authorizationType !== 'NONE' && fn.authorizationType !== 'AWS_IAM') {
      throw new Error(`startBundleApi: unsupported authorization ${fn.authorizationType}`);
    }
    keyedRoutes.push({
      routeKey: fn.routeKey,
      handler: handlerFor(fn.routeKey),
      iam: fn.authorizationType === 'AWS_IAM',
    });
  }
  const verifier = options.iamVerifier;
  const server = await startLocalServer({
    routes,
    keyedRoutes,
    iamAuthorizer: async (request) => verifier?.verify(request),
    ...(defaultRoute ? { defaultRoute } : {}),
    host: options.host ?? '127.0.0.1',
    port: options.port ?? 0,
  });
  const resources: LocalResources = { ...options.resources, apiUrl: server.url };
  const byLogicalId = new Map<string, BundleFunction>();
  for (const fn of options.app.functions) {
    let bundle = byLogicalId.get(fn.logicalId);
    if (bundle === undefined) {
      const env = resolveEnvironment(fn, options.app.template, resources, options.overrides);
      bundle = new BundleFunction(fn, env, {
        ...(options.keepWarm === undefined ? {} : { keepWarm: options.keepWarm }),
        onInvocation: (invocation) => invocations.push(invocation),
        onLog: (line) => logs.push(line),
      });
      byLogicalId.set(fn.logicalId, bundle);
    }
    functions.set(fn.routeKey, bundle);
  }
  return {
    url: server.url,
    server,
    functions,
    invocations,
    logs,
    async close() {
      await server.close();
      await Promise.all([...new Set(functions.values())].map((fn) => fn.close()));
    },
  };
}
