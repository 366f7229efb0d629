/**
 * The throttling defaults: the numbers the README documents are the ones `cdk.json`
 * deploys (it no longer repeats them; `DEFAULT_THROTTLING` supplies them), they reach the
 * stage's route settings, and an override changes only what it names.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { App } from 'aws-cdk-lib';
import { beforeAll, describe, expect, it } from 'vitest';
import { readAppContext } from '../../infra/context.ts';
import {
  BROKER_ROUTES,
  type BrokerRoute,
  DEFAULT_THROTTLING,
  type RouteThrottle,
  resolveSettings,
  routeKeysOf,
} from '../../infra/settings.ts';
import {
  cdkJsonContext,
  repoRoot,
  resourcesOfType,
  SKIP_BUNDLING,
  type Synthesized,
  synthBroker,
} from './synth.ts';

type Throttling = Record<BrokerRoute | 'default', RouteThrottle>;

const readme = readFileSync(join(repoRoot, 'README.md'), 'utf8');

/** The `throttling` row of the README's settings table: `refresh 250/500, ..., other paths 5/10`. */
function readmeDefaults(): Throttling {
  const row = readme.split('\n').find((line) => line.startsWith('| `throttling` |'));
  const cell = row?.split('|')[2] ?? '';
  const entries = [...cell.matchAll(/([a-z]+(?: paths)?) (\d+)\/(\d+)/g)].map(
    ([, name, rate, burst]) => [
      name === 'other paths' ? 'default' : name,
      { rateLimit: Number(rate), burstLimit: Number(burst) },
    ],
  );
  return Object.fromEntries(entries) as Throttling;
}

/** The throttling `cdk deploy` uses with `cdk.json` as shipped, plus `context`. */
function effectiveThrottling(context: Record<string, unknown> = {}): Throttling {
  const app = new App({ context: { ...cdkJsonContext(), ...context } });
  return resolveSettings(readAppContext(app.node).broker, {
    serviceName: 'TokenBroker',
    isToken: () => false,
  }).throttling;
}

function routeSettings(synth: Synthesized) {
  const [stage] = Object.values(resourcesOfType(synth.template, 'AWS::ApiGatewayV2::Stage'));
  return {
    routes: stage?.Properties.RouteSettings as Record<
      string,
      { ThrottlingRateLimit: number; ThrottlingBurstLimit: number }
    >,
    default: stage?.Properties.DefaultRouteSettings,
  };
}

describe('Throttling defaults', () => {
  it('deploys exactly what the README documents', () => {
    // Act
    const documented = readmeDefaults();
    const deployed = effectiveThrottling();

    // Assess
    expect(Object.keys(documented).sort()).toEqual([...BROKER_ROUTES, 'default'].sort());
    expect(deployed).toEqual(documented);
    expect(deployed).toEqual(DEFAULT_THROTTLING);
  });

  it('keeps the README reasoning in step with the numbers (sums of rates and bursts)', () => {
    // Prepare: a limit per route key (the service API's applies to each of its five)
    const limits = [
      ...BROKER_ROUTES.flatMap((route) => routeKeysOf(route).map(() => DEFAULT_THROTTLING[route])),
      DEFAULT_THROTTLING.default,
    ];

    // Act
    const rate = limits.reduce((sum, limit) => sum + limit.rateLimit, 0);
    const burst = limits.reduce((sum, limit) => sum + limit.burstLimit, 0);

    // Assess: every burst at once stays under Lambda's default 1,000 concurrency, and
    // well under API Gateway's shared account limits (10,000/s, burst 5,000).
    expect(burst).toBeLessThan(1_000);
    expect(rate).toBeLessThan(10_000 / 10);
    expect(burst).toBeLessThan(5_000 / 5);
    const prose = readme.replace(/\s+/g, ' ');
    expect(prose).toContain(`add up to ${rate}/s and a burst of ${burst}`);
    expect(prose).toContain(`(${burst} requests) stays under`);
  });

  it('is not repeated in cdk.json', () => {
    expect(cdkJsonContext().throttling).toEqual({});
  });

  describe('in the template', () => {
    let defaults: Synthesized;
    let overridden: Synthesized;

    beforeAll(() => {
      defaults = synthBroker(SKIP_BUNDLING);
      overridden = synthBroker({
        ...SKIP_BUNDLING,
        throttling: '{"login":{"burstLimit":300},"default":{"rateLimit":1}}',
      });
    });

    it('sets each route and the stage default from the defaults', () => {
      // Act
      const settings = routeSettings(defaults);

      // Assess
      for (const route of BROKER_ROUTES) {
        for (const routeKey of routeKeysOf(route)) {
          expect(settings.routes[routeKey], routeKey).toEqual({
            ThrottlingRateLimit: DEFAULT_THROTTLING[route].rateLimit,
            ThrottlingBurstLimit: DEFAULT_THROTTLING[route].burstLimit,
          });
        }
      }
      expect(settings.default).toEqual({
        ThrottlingRateLimit: DEFAULT_THROTTLING.default.rateLimit,
        ThrottlingBurstLimit: DEFAULT_THROTTLING.default.burstLimit,
      });
    });

    it('changes only the limits an override names', () => {
      // Act
      const settings = routeSettings(overridden);

      // Assess
      expect(settings.routes['ANY /login']).toEqual({
        ThrottlingRateLimit: DEFAULT_THROTTLING.login.rateLimit,
        ThrottlingBurstLimit: 300,
      });
      expect(settings.default).toEqual({
        ThrottlingRateLimit: 1,
        ThrottlingBurstLimit: DEFAULT_THROTTLING.default.burstLimit,
      });
      for (const route of ['refresh', 'callback', 'logout'] as const) {
        expect(settings.routes[`ANY /${route}`]?.ThrottlingBurstLimit, route).toBe(
          DEFAULT_THROTTLING[route].burstLimit,
        );
      }
    });
  });
});
