import { type Duration, type RemovalPolicy, Validations } from 'aws-cdk-lib';
import { PolicyStatement, Role, ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import { Architecture, Runtime } from 'aws-cdk-lib/aws-lambda';
import {
  type BundlingOptions,
  LogLevel,
  NodejsFunction,
  OutputFormat,
} from 'aws-cdk-lib/aws-lambda-nodejs';
import { LogGroup, type RetentionDays } from 'aws-cdk-lib/aws-logs';
import type { Construct } from 'constructs';
import { BROKER_BUNDLE } from './bundle-options.ts';
import type { FunctionNetwork } from './fixed-egress.ts';

export interface BrokerFunctionProps {
  /** Absolute path of the entry file exporting `handler`. */
  entry: string;
  /** Directory holding `package-lock.json` (esbuild resolves modules from there). */
  projectRoot: string;
  description: string;
  memorySize: number;
  timeout: Duration;
  environment: Record<string, string>;
  logRetention: RetentionDays;
  removalPolicy: RemovalPolicy;
  /** Private subnets and security group to run in (`fixedEgressIp`); default: no VPC. */
  network?: FunctionNetwork;
}

/**
 * What Lambda does with the function's role to attach it to a VPC: the EC2 statement of
 * the AWS managed `AWSLambdaVPCAccessExecutionRole`, without its logs actions (the
 * function already writes to its own log group). Lambda checks these at deploy time.
 *
 * @see https://docs.aws.amazon.com/lambda/latest/dg/configuration-vpc.html#configuration-vpc-permissions
 */
export const VPC_NETWORK_INTERFACE_ACTIONS = [
  'ec2:CreateNetworkInterface',
  'ec2:DescribeNetworkInterfaces',
  'ec2:DescribeSubnets',
  'ec2:DeleteNetworkInterface',
  'ec2:AssignPrivateIpAddresses',
  'ec2:UnassignPrivateIpAddresses',
];

export interface BrokerFunction {
  function: NodejsFunction;
  role: Role;
  logGroup: LogGroup;
  /** Adds one statement to this function's own policy. */
  allow(statement: PolicyStatement): void;
}

/**
 * A `NodejsFunction` with the broker's defaults: Node 24 on arm64, one ESM bundle with the
 * AWS SDK inside (see `bundle-options.ts`), source maps, its own log group with retention,
 * and its own role that starts with no permission but writing to that log group (no AWS
 * managed policy). Constructs are created as siblings named `<name>Function`,
 * `<name>Role` and `<name>Logs`, so `sam local invoke <name>Function` finds the function.
 */
export function brokerFunction(
  scope: Construct,
  name: string,
  props: BrokerFunctionProps,
): BrokerFunction {
  const logGroup = new LogGroup(scope, `${name}Logs`, {
    retention: props.logRetention,
    removalPolicy: props.removalPolicy,
  });
  const { role, allow } = functionRole(scope, name, props, logGroup);

  const fn = new NodejsFunction(scope, `${name}Function`, {
    description: props.description,
    entry: props.entry,
    handler: 'handler',
    projectRoot: props.projectRoot,
    depsLockFilePath: `${props.projectRoot}/package-lock.json`,
    runtime: Runtime.NODEJS_24_X,
    architecture: Architecture.ARM_64,
    memorySize: props.memorySize,
    timeout: props.timeout,
    role,
    logGroup,
    environment: { NODE_OPTIONS: '--enable-source-maps', ...props.environment },
    ...(props.network ?? {}),
    bundling: brokerBundling(),
  });
  return { function: fn, role, logGroup, allow };
}

/**
 * The function's own role: it starts with writing to its log group and, in a VPC, the
 * network interface actions Lambda needs; routes add the rest through `allow`.
 */
function functionRole(
  scope: Construct,
  name: string,
  props: BrokerFunctionProps,
  logGroup: LogGroup,
): Pick<BrokerFunction, 'role' | 'allow'> {
  const role = new Role(scope, `${name}Role`, {
    assumedBy: new ServicePrincipal('lambda.amazonaws.com'),
    description: `Runs the ${props.description}; only what this function calls.`,
  });
  const allow = (statement: PolicyStatement) => {
    role.addToPrincipalPolicy(statement);
  };
  // The log group exists before the function, so `logs:CreateLogGroup` is not needed.
  allow(
    new PolicyStatement({
      sid: 'WriteOwnLogs',
      actions: ['logs:CreateLogStream', 'logs:PutLogEvents'],
      resources: [logGroup.logGroupArn],
    }),
  );

  if (props.network) {
    allow(
      new PolicyStatement({
        sid: 'AttachToVpc',
        actions: VPC_NETWORK_INTERFACE_ACTIONS,
        resources: ['*'],
      }),
    );
    Validations.of(role).acknowledge({
      id: 'AwsSolutions::AwsSolutions-IAM5[Resource::*]',
      reason:
        'Lambda attaches the function to its private subnets with the function role: the ' +
        'Describe actions support no resource-level permission, and the network interfaces ' +
        'Lambda creates and deletes have ids unknown before deploy. These are the EC2 actions ' +
        'of AWSLambdaVPCAccessExecutionRole, nothing more.',
    });
  }
  return { role, allow };
}

/** One minified ESM bundle per function, the AWS SDK inside (see `bundle-options.ts`). */
function brokerBundling(): BundlingOptions {
  return {
    format: OutputFormat.ESM,
    target: BROKER_BUNDLE.target,
    minify: BROKER_BUNDLE.minify,
    sourceMap: BROKER_BUNDLE.sourcemap,
    sourcesContent: BROKER_BUNDLE.sourcesContent,
    mainFields: [...BROKER_BUNDLE.mainFields],
    banner: BROKER_BUNDLE.banner,
    externalModules: [...BROKER_BUNDLE.external],
    bundleAwsSDK: true,
    forceDockerBundling: false,
    // esbuild's size report on every synth is noise; warnings and errors still show.
    logLevel: LogLevel.WARNING,
  };
}
