/**
 * `fixedEgressIp`: the functions that call Salesforce run in private subnets whose only way
 * to the internet is a NAT gateway with an Elastic IP (the `EgressIps` output), so a
 * connected app's IP allowlist can name the broker. Proven on the synthesized template:
 * which functions move (the `callsSalesforce` column of `FUNCTION_ACCESS`), the routes of
 * their subnets, the endpoints, the security groups, the flow logs, cdk-nag; and that
 * without the setting there is no VPC resource at all.
 */
import { type CfnElement, Validations } from 'aws-cdk-lib';
import type { IConstruct } from 'constructs';
import { beforeAll, describe, expect, it } from 'vitest';
import { VPC_NETWORK_INTERFACE_ACTIONS } from '../../infra/broker-function.ts';
import { BROKER_ROUTES, type BrokerRoute } from '../../infra/settings.ts';
import { FUNCTION_ACCESS } from '../../infra/token-broker.ts';
import type { TokenBrokerStack } from '../../infra/token-broker-stack.ts';
import { resourcesOfType, SKIP_BUNDLING, type Synthesized, synthBroker } from './synth.ts';

type Resources = ReturnType<typeof resourcesOfType>;
type Ref = { Ref: string };

const CALLS_SALESFORCE = BROKER_ROUTES.filter((route) => FUNCTION_ACCESS[route].callsSalesforce);
const STAYS_OUTSIDE = BROKER_ROUTES.filter((route) => !FUNCTION_ACCESS[route].callsSalesforce);

const VPC_ACKNOWLEDGEMENT = 'AwsSolutions::AwsSolutions-IAM5[Resource::*]';

/** The template's view of one shape of the stack, by what the tests ask of it. */
class EgressTemplate {
  readonly resources: Record<string, { Type: string; Properties: Record<string, unknown> }>;
  readonly stack: TokenBrokerStack;

  constructor(readonly synth: Synthesized) {
    this.stack = synth.stack as TokenBrokerStack;
    this.resources = synth.template.toJSON().Resources;
  }

  of(type: string): Resources {
    return resourcesOfType(this.synth.template, type);
  }

  functionOf(route: BrokerRoute | 'notFound') {
    const fn =
      route === 'notFound'
        ? this.stack.broker.notFoundFunction.function
        : this.stack.broker.functions[route].function;
    const logicalId = this.stack.getLogicalId(fn.node.defaultChild as CfnElement);
    return this.of('AWS::Lambda::Function')[logicalId]?.Properties ?? {};
  }

  policyOf(route: BrokerRoute) {
    const role = this.stack.broker.functions[route].role;
    const roleId = this.stack.getLogicalId(role.node.defaultChild as CfnElement);
    const policy = Object.values(this.of('AWS::IAM::Policy')).find(
      (p) => JSON.stringify(p.Properties.Roles) === JSON.stringify([{ Ref: roleId }]),
    );
    if (!policy) throw new Error(`no policy for ${route}`);
    return (policy.Properties.PolicyDocument as { Statement: Record<string, unknown>[] }).Statement;
  }

  /** The route table associated with a subnet. */
  routeTableOf(subnetId: string): string {
    const association = Object.values(this.of('AWS::EC2::SubnetRouteTableAssociation')).find(
      (a) => (a.Properties.SubnetId as Ref).Ref === subnetId,
    );
    if (!association) throw new Error(`no route table for ${subnetId}`);
    return (association.Properties.RouteTableId as Ref).Ref;
  }

  routesOf(routeTableId: string): Record<string, unknown>[] {
    return Object.values(this.of('AWS::EC2::Route'))
      .map((route) => route.Properties)
      .filter((route) => (route.RouteTableId as Ref).Ref === routeTableId);
  }

  /** The subnet ids every VPC function is placed in (all the same). */
  functionSubnets(): string[] {
    const config = this.functionOf('refresh').VpcConfig as { SubnetIds: Ref[] };
    return config.SubnetIds.map((subnet) => subnet.Ref);
  }

  subnetType(subnetId: string): string | undefined {
    const tags = this.resources[subnetId]?.Properties.Tags as { Key: string; Value: string }[];
    return tags.find((tag) => tag.Key === 'aws-cdk:subnet-type')?.Value;
  }

  /** `Fn::Select` index of a subnet's AZ in `Fn::GetAZs`. */
  azOf(subnetId: string): number {
    const az = this.resources[subnetId]?.Properties.AvailabilityZone as {
      'Fn::Select': [number, unknown];
    };
    return az['Fn::Select'][0];
  }

  /** The NAT gateway each function subnet's default route leads to. */
  natOf(subnetId: string): string {
    const [route] = this.routesOf(this.routeTableOf(subnetId)).filter(
      (r) => r.DestinationCidrBlock === '0.0.0.0/0',
    );
    return refOf(route?.NatGatewayId);
  }

  acknowledgements(): { path: string; id: string; reason: string }[] {
    const found: { path: string; id: string; reason: string }[] = [];
    for (const construct of this.synth.app.node.findAll() as IConstruct[]) {
      for (const entry of construct.node.metadata) {
        if (entry.type !== Validations.ACKNOWLEDGED_RULES_METADATA_KEY) continue;
        for (const [id, reason] of Object.entries(entry.data as Record<string, string>)) {
          found.push({ path: construct.node.path, id, reason });
        }
      }
    }
    return found;
  }
}

describe('Stack: TokenBroker without fixedEgressIp (the default)', () => {
  let off: EgressTemplate;

  beforeAll(() => {
    off = new EgressTemplate(synthBroker(SKIP_BUNDLING));
  });

  it('creates no VPC resource at all', () => {
    const ec2Types = Object.values(off.resources)
      .map((resource) => resource.Type)
      .filter((type) => type.startsWith('AWS::EC2::') || type.startsWith('Custom::Vpc'));
    expect(ec2Types).toEqual([]);
  });

  it('runs every function outside any VPC, without EC2 permissions, and has no EgressIps output', () => {
    for (const route of [...BROKER_ROUTES, 'notFound'] as const) {
      expect(off.functionOf(route).VpcConfig, route).toBeUndefined();
    }
    for (const route of BROKER_ROUTES) {
      expect(JSON.stringify(off.policyOf(route)), route).not.toContain('ec2:');
    }
    expect(Object.keys(off.synth.template.toJSON().Outputs)).not.toContain('EgressIps');
  });
});

describe('Stack: TokenBroker with fixedEgressIp (one NAT gateway, interface endpoints)', () => {
  let on: EgressTemplate;

  beforeAll(() => {
    on = new EgressTemplate(synthBroker({ ...SKIP_BUNDLING, fixedEgressIp: true }));
  });

  it('leaves no cdk-nag finding, acknowledging only the ENI statement of each VPC function', () => {
    expect(on.synth.violations).toEqual([]);
    // The same rule id is acknowledged for other reasons too (the publisher's
    // dynamodb:ListStreams); the ENI statement's acknowledgement is told by its reason.
    const added = on
      .acknowledgements()
      .filter(
        (a) => a.id === VPC_ACKNOWLEDGEMENT && a.reason.includes('AWSLambdaVPCAccessExecutionRole'),
      );
    expect(added.map((a) => a.path).sort()).toEqual(
      [...CALLS_SALESFORCE, 'sweep']
        .map((route) => `TokenBroker/Broker/${capitalize(route)}Role`)
        .sort(),
    );
    // No other cdk-nag rule is acknowledged than the default shape's (the VPC construct
    // acknowledges some CloudFormation-Validate warnings of its own).
    const ids = new Set(
      on
        .acknowledgements()
        .map((a) => a.id)
        .filter((id) => id.startsWith('AwsSolutions::')),
    );
    expect([...ids].sort()).toEqual([
      'AwsSolutions::AwsSolutions-APIG4',
      'AwsSolutions::AwsSolutions-IAM5[Resource::*]',
      'AwsSolutions::AwsSolutions-SMG4',
      'AwsSolutions::AwsSolutions-SQS3',
    ]);
  });

  it('places exactly the functions that call Salesforce in the private subnets, behind one security group', () => {
    // Today's routes, read from their code; a route added later only sets the flag.
    expect(CALLS_SALESFORCE).toEqual(
      expect.arrayContaining(['callback', 'logout', 'refresh', 'token']),
    );
    expect(STAYS_OUTSIDE).toEqual(expect.arrayContaining(['login', 'session']));
    const reference = on.functionOf('refresh').VpcConfig;
    for (const route of CALLS_SALESFORCE) {
      expect(on.functionOf(route).VpcConfig, route).toEqual(reference);
    }
    // The sweep refreshes and revokes: behind the same IPs.
    const sweep = on.stack.getLogicalId(
      on.stack.broker.sweepFunction.function.node.defaultChild as CfnElement,
    );
    expect(on.of('AWS::Lambda::Function')[sweep]?.Properties.VpcConfig).toEqual(reference);
    for (const route of [...STAYS_OUTSIDE, 'notFound'] as const) {
      expect(on.functionOf(route).VpcConfig, route).toBeUndefined();
    }
    const subnets = on.functionSubnets();
    expect(subnets).toHaveLength(2);
    for (const subnet of subnets) {
      expect(on.subnetType(subnet)).toBe('Private');
      expect(on.resources[subnet]?.Properties.MapPublicIpOnLaunch).toBe(false);
    }
    expect(new Set(subnets.map((subnet) => on.azOf(subnet))).size).toBe(2);
  });

  it('routes the functions’ subnets to the internet through the NAT gateway only', () => {
    const nats = on.of('AWS::EC2::NatGateway');
    for (const subnet of on.functionSubnets()) {
      const routes = on.routesOf(on.routeTableOf(subnet));
      // One route, the default one, to a NAT gateway: no internet gateway, no IPv6, no peer.
      expect(routes, subnet).toHaveLength(1);
      expect(Object.keys(routes[0] ?? {}).sort()).toEqual([
        'DestinationCidrBlock',
        'NatGatewayId',
        'RouteTableId',
      ]);
      expect(routes[0]?.DestinationCidrBlock).toBe('0.0.0.0/0');
      expect(Object.keys(nats)).toContain(on.natOf(subnet));
    }
    // No IPv6 on the VPC: an egress-only or internet gateway route for ::/0 cannot exist.
    expect(Object.keys(on.of('AWS::EC2::VPCCidrBlock'))).toEqual([]);
    expect(Object.keys(on.of('AWS::EC2::EgressOnlyInternetGateway'))).toEqual([]);
  });

  it('gives the one NAT gateway an Elastic IP, in a public subnet, and outputs that address', () => {
    const nats = Object.values(on.of('AWS::EC2::NatGateway'));
    const eips = on.of('AWS::EC2::EIP');
    expect(nats).toHaveLength(1);
    expect(Object.keys(eips)).toHaveLength(1);
    const [eipId] = Object.keys(eips);
    expect(nats[0]?.Properties.AllocationId).toEqual({ 'Fn::GetAtt': [eipId, 'AllocationId'] });
    expect(on.subnetType(refOf(nats[0]?.Properties.SubnetId))).toBe('Public');
    // With one NAT, both AZs' functions leave through it.
    const [first, second] = on.functionSubnets().map((subnet) => on.natOf(subnet));
    expect(first).toBe(second);
    // Fn.join of a single address is the address itself.
    expect(on.synth.template.toJSON().Outputs.EgressIps.Value).toEqual({ Ref: eipId });
  });

  it('reaches DynamoDB through a gateway endpoint and KMS and Secrets Manager through private-DNS interface endpoints', () => {
    const endpoints = Object.values(on.of('AWS::EC2::VPCEndpoint')).map((e) => e.Properties);
    const service = (e: Record<string, unknown>) =>
      (e.ServiceName as { 'Fn::Join': [string, string[]] })['Fn::Join'][1][2];
    const privateRouteTables = on.functionSubnets().map((subnet) => ({
      Ref: on.routeTableOf(subnet),
    }));
    expect(endpoints.map(service).sort()).toEqual(['.dynamodb', '.kms', '.secretsmanager']);
    const dynamodb = endpoints.find((e) => service(e) === '.dynamodb');
    expect(dynamodb).toMatchObject({
      VpcEndpointType: 'Gateway',
      RouteTableIds: privateRouteTables,
    });
    const functionSubnets = on.functionSubnets().map((subnet) => ({ Ref: subnet }));
    for (const name of ['.kms', '.secretsmanager']) {
      expect(
        endpoints.find((e) => service(e) === name),
        name,
      ).toMatchObject({
        VpcEndpointType: 'Interface',
        PrivateDnsEnabled: true,
        SubnetIds: functionSubnets,
      });
    }
  });

  it('admits no traffic from outside the VPC, and lets the functions out on HTTPS only', () => {
    const groups = on.of('AWS::EC2::SecurityGroup');
    const ingress = [
      ...Object.values(groups).flatMap(
        (g) => (g.Properties.SecurityGroupIngress as Record<string, unknown>[] | undefined) ?? [],
      ),
      ...Object.values(on.of('AWS::EC2::SecurityGroupIngress')).map((i) => i.Properties),
    ];
    for (const rule of ingress) {
      expect(rule.CidrIp, JSON.stringify(rule)).toBeUndefined();
      expect(rule.CidrIpv6, JSON.stringify(rule)).toBeUndefined();
      expect(rule.SourcePrefixListId, JSON.stringify(rule)).toBeUndefined();
    }
    // The endpoints' one ingress rule: HTTPS from the functions' group.
    const functionGroup = (on.functionOf('refresh').VpcConfig as { SecurityGroupIds: unknown[] })
      .SecurityGroupIds;
    expect(functionGroup).toHaveLength(1);
    expect(ingress).toEqual([
      expect.objectContaining({
        IpProtocol: 'tcp',
        FromPort: 443,
        ToPort: 443,
        SourceSecurityGroupId: functionGroup[0],
      }),
    ]);
    const functionGroupId = (functionGroup[0] as { 'Fn::GetAtt': [string, string] })[
      'Fn::GetAtt'
    ][0];
    expect(groups[functionGroupId]?.Properties.SecurityGroupEgress).toEqual([
      expect.objectContaining({
        CidrIp: '0.0.0.0/0',
        IpProtocol: 'tcp',
        FromPort: 443,
        ToPort: 443,
      }),
    ]);
    expect(Object.keys(on.of('AWS::EC2::SecurityGroupEgress'))).toEqual([]);
  });

  it('logs every flow of the VPC to a log group with the retention of the other logs', () => {
    const [flowLog] = Object.values(on.of('AWS::EC2::FlowLog'));
    const [vpcId] = Object.keys(on.of('AWS::EC2::VPC'));
    expect(flowLog?.Properties).toMatchObject({
      ResourceType: 'VPC',
      ResourceId: { Ref: vpcId },
      TrafficType: 'ALL',
      LogDestinationType: 'cloud-watch-logs',
    });
    const logGroupId = refOf(flowLog?.Properties.LogGroupName);
    expect(on.of('AWS::Logs::LogGroup')[logGroupId]?.Properties.RetentionInDays).toBe(90);
  });

  it('adds no managed policy but CDK’s own, on the role that empties the default security group', () => {
    const withManaged = Object.entries(on.of('AWS::IAM::Role')).filter(
      ([, role]) => role.Properties.ManagedPolicyArns !== undefined,
    );
    expect(withManaged.map(([id]) => id)).toEqual([
      expect.stringMatching(/^CustomVpcRestrictDefaultSGCustomResourceProviderRole/),
    ]);
    const [, provider] = withManaged[0] ?? [];
    const [vpcId] = Object.keys(on.of('AWS::EC2::VPC'));
    expect(JSON.stringify(provider?.Properties.Policies)).toContain(
      JSON.stringify({ 'Fn::GetAtt': [vpcId, 'DefaultSecurityGroup'] }),
    );
  });

  it('lets only the VPC functions manage network interfaces, with the EC2 actions Lambda needs', () => {
    for (const route of CALLS_SALESFORCE) {
      const ec2 = on.policyOf(route).filter((s) => JSON.stringify(s.Action).includes('ec2:'));
      expect(ec2, route).toEqual([
        {
          Sid: 'AttachToVpc',
          Effect: 'Allow',
          Action: [...VPC_NETWORK_INTERFACE_ACTIONS].sort(),
          Resource: '*',
        },
      ]);
    }
    for (const route of STAYS_OUTSIDE) {
      expect(JSON.stringify(on.policyOf(route)), route).not.toContain('ec2:');
    }
  });
});

describe('Stack: TokenBroker with fixedEgressIp, natGateways 2 and interfaceEndpoints false', () => {
  let two: EgressTemplate;

  beforeAll(() => {
    two = new EgressTemplate(
      synthBroker({
        ...SKIP_BUNDLING,
        fixedEgressIp: 'true',
        natGateways: '2',
        interfaceEndpoints: 'false',
      }),
    );
  });

  it('leaves no cdk-nag finding', () => {
    expect(two.synth.violations).toEqual([]);
  });

  it('has two NAT gateways with an Elastic IP each, one per AZ, each AZ’s functions leaving through their own', () => {
    const nats = two.of('AWS::EC2::NatGateway');
    const eips = Object.keys(two.of('AWS::EC2::EIP'));
    expect(Object.keys(nats)).toHaveLength(2);
    expect(eips).toHaveLength(2);
    expect(
      Object.values(nats)
        .map(
          (nat) =>
            (nat.Properties.AllocationId as { 'Fn::GetAtt': [string, string] })['Fn::GetAtt'][0],
        )
        .sort(),
    ).toEqual([...eips].sort());
    const natAz = (natId: string) => two.azOf(refOf(nats[natId]?.Properties.SubnetId));
    expect(new Set(Object.keys(nats).map(natAz))).toEqual(new Set([0, 1]));
    for (const subnet of two.functionSubnets()) {
      expect(natAz(two.natOf(subnet)), subnet).toBe(two.azOf(subnet));
      expect(two.routesOf(two.routeTableOf(subnet)), subnet).toHaveLength(1);
    }
    const output = two.synth.template.toJSON().Outputs.EgressIps.Value as {
      'Fn::Join': [string, Ref[]];
    };
    expect(output['Fn::Join'][0]).toBe(',');
    expect(output['Fn::Join'][1].map((ref) => ref.Ref).sort()).toEqual([...eips].sort());
  });

  it('keeps the free DynamoDB gateway endpoint and creates no interface endpoint', () => {
    const endpoints = Object.values(two.of('AWS::EC2::VPCEndpoint')).map((e) => e.Properties);
    expect(endpoints.map((e) => e.VpcEndpointType)).toEqual(['Gateway']);
    // Without endpoints, the functions' group is the only one (HTTPS out, no ingress).
    expect(Object.keys(two.of('AWS::EC2::SecurityGroup'))).toHaveLength(1);
    expect(Object.keys(two.of('AWS::EC2::SecurityGroupIngress'))).toEqual([]);
  });
});

/** The logical id a `{ Ref }` names ('' when the value is not one). */
function refOf(value: unknown): string {
  return (value as Ref | undefined)?.Ref ?? '';
}

function capitalize(word: string): string {
  return word.charAt(0).toUpperCase() + word.slice(1);
}
