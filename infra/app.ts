/**
 * CDK entry (`cdk.json` runs `node infra/app.ts`). Reads the broker's settings from
 * context, fails synth with a message naming the key when one is invalid, and runs
 * cdk-nag's AwsSolutions checks (`-c nag=false` to skip them).
 */
import { App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { ContextError, readAppContext } from './context.ts';
import { SettingError } from './settings.ts';
import { TokenBrokerStack } from './token-broker-stack.ts';

export function buildApp(app: App = new App()): { app: App; stack: TokenBrokerStack } {
  const context = readAppContext(app.node);
  let stack: TokenBrokerStack;
  try {
    stack = new TokenBrokerStack(app, context.stackName, {
      stackName: context.stackName,
      ...(context.account || context.region
        ? { env: { account: context.account, region: context.region } }
        : {}),
      broker: context.broker,
    });
  } catch (error) {
    // Settings and context keys share their names: report it as the context key.
    if (error instanceof SettingError) {
      throw new ContextError(error.setting, error.message.replace(/^.*?": /, ''));
    }
    throw error;
  }
  if (context.nag) Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
  return { app, stack };
}

if (import.meta.main) {
  try {
    buildApp().app.synth();
  } catch (error) {
    if (error instanceof ContextError) {
      console.error(error.message);
      process.exit(1);
    }
    throw error;
  }
}
