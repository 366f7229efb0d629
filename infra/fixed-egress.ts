import { Fn, type RemovalPolicy, Stack } from 'aws-cdk-lib';
import {
  CfnEIP,
  FlowLogDestination,
  FlowLogTrafficType,
  GatewayVpcEndpointAwsService,
  InterfaceVpcEndpointAwsService,
  IpAddresses,
  NatProvider,
  Peer,
  Port,
  SecurityGroup,
  type SubnetSelection,
  SubnetType,
  Vpc,
} from 'aws-cdk-lib/aws-ec2';
import { LogGroup, type RetentionDays } from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import type { FixedEgressSettings } from './settings.ts';

export interface FixedEgressProps extends FixedEgressSettings {
  logRetention: RetentionDays;
  removalPolicy: RemovalPolicy;
}

/** Where a function that calls Salesforce runs: the private subnets, behind its security group. */
export interface FunctionNetwork {
  vpc: Vpc;
  vpcSubnets: SubnetSelection;
  securityGroups: SecurityGroup[];
}

/**
 * A VPC whose only way out to the internet is its NAT gateways, each with an Elastic IP
 * the stack allocates: the functions placed in its private subnets reach Salesforce from
 * these addresses only, which the connected app can then allow-list ("Refresh Token IP
 * allowlist", trusted IP ranges). DynamoDB is reached through a gateway endpoint (free,
 * no NAT traffic); KMS and Secrets Manager through interface endpoints with private DNS,
 * or through the NAT when `interfaceEndpoints` is off. Flow logs record every accepted and
 * rejected connection; no security group admits traffic from outside the VPC.
 *
 * @see https://docs.aws.amazon.com/lambda/latest/dg/configuration-vpc-internet.html
 * @see https://help.salesforce.com/s/articleView?id=sf.connected_app_manage_oauth.htm (IP relaxation)
 */
export class FixedEgress extends Construct {
  readonly vpc: Vpc;
  /** One per NAT gateway; their `ref` is the public IPv4 address. */
  readonly elasticIps: CfnEIP[];
  /** The functions' security group: HTTPS out, nothing in. */
  readonly functionSecurityGroup: SecurityGroup;
  /** The network a function that calls Salesforce is given. */
  readonly functionNetwork: FunctionNetwork;

  // Long on purpose: the network reads top to bottom in the order it is deployed (Elastic
  // IPs, VPC and NAT gateways, endpoints, flow logs, the security group), as in the README.
  constructor(scope: Construct, id: string, props: FixedEgressProps) {
    super(scope, id);
    const { stackName } = Stack.of(this);
    // Allocated here rather than by the VPC, so the output and the tests can name them.
    this.elasticIps = Array.from({ length: props.natGateways }, (_, index) => {
      return new CfnEIP(this, `EgressIp${index + 1}`, {
        domain: 'vpc',
        tags: [{ key: 'Name', value: `${stackName} token broker egress ${index + 1}` }],
      });
    });
    this.vpc = new Vpc(this, 'Vpc', {
      // Two AZs whatever the NAT count: Lambda wants subnets in more than one AZ, and with
      // one NAT both private subnets route through it.
      maxAzs: 2,
      ipAddresses: IpAddresses.cidr('10.0.0.0/22'),
      natGateways: props.natGateways,
      natGatewayProvider: NatProvider.gateway({
        eipAllocationIds: this.elasticIps.map((eip) => eip.attrAllocationId),
      }),
      subnetConfiguration: [
        // Only the NAT gateways live here (the route to the internet gateway); nothing
        // launched here gets a public address of its own.
        { name: 'Nat', subnetType: SubnetType.PUBLIC, cidrMask: 26, mapPublicIpOnLaunch: false },
        // The functions' Hyperplane ENIs and the interface endpoints' ENIs.
        { name: 'Functions', subnetType: SubnetType.PRIVATE_WITH_EGRESS, cidrMask: 25 },
      ],
    });
    const privateSubnets: SubnetSelection = { subnetType: SubnetType.PRIVATE_WITH_EGRESS };

    const flowLogs = new LogGroup(this, 'FlowLogs', {
      retention: props.logRetention,
      removalPolicy: props.removalPolicy,
    });
    this.vpc.addFlowLog('FlowLog', {
      destination: FlowLogDestination.toCloudWatchLogs(flowLogs),
      trafficType: FlowLogTrafficType.ALL,
    });

    this.functionSecurityGroup = new SecurityGroup(this, 'FunctionSecurityGroup', {
      vpc: this.vpc,
      description:
        'Token broker functions: HTTPS out (Salesforce via NAT, AWS endpoints), no ingress',
      allowAllOutbound: false,
    });
    this.functionSecurityGroup.addEgressRule(
      Peer.anyIpv4(),
      Port.tcp(443),
      'HTTPS to Salesforce (through the NAT) and to the AWS service endpoints',
    );

    // A gateway endpoint has no charge, and DynamoDB traffic then never crosses the NAT.
    this.vpc.addGatewayEndpoint('DynamoDbEndpoint', {
      service: GatewayVpcEndpointAwsService.DYNAMODB,
      subnets: [privateSubnets],
    });
    if (props.interfaceEndpoints) this.addInterfaceEndpoints(privateSubnets);

    this.functionNetwork = {
      vpc: this.vpc,
      vpcSubnets: privateSubnets,
      securityGroups: [this.functionSecurityGroup],
    };
  }

  /** The addresses Salesforce sees, comma-separated (the `EgressIps` output). */
  get egressIps(): string {
    return Fn.join(
      ',',
      this.elasticIps.map((eip) => eip.ref),
    );
  }

  /**
   * KMS and Secrets Manager in the private subnets, private DNS on: the SDK's default
   * regional host names resolve to the endpoints, so the functions need no configuration.
   * Their security group admits HTTPS from the functions' group only.
   */
  private addInterfaceEndpoints(subnets: SubnetSelection): void {
    const endpointSecurityGroup = new SecurityGroup(this, 'EndpointSecurityGroup', {
      vpc: this.vpc,
      description: 'Token broker KMS and Secrets Manager endpoints: HTTPS from the functions only',
      allowAllOutbound: false,
    });
    endpointSecurityGroup.addIngressRule(
      this.functionSecurityGroup,
      Port.tcp(443),
      'HTTPS from the token broker functions',
    );
    for (const [name, service] of [
      ['KmsEndpoint', InterfaceVpcEndpointAwsService.KMS],
      ['SecretsManagerEndpoint', InterfaceVpcEndpointAwsService.SECRETS_MANAGER],
    ] as const) {
      this.vpc.addInterfaceEndpoint(name, {
        service,
        subnets,
        privateDnsEnabled: true,
        // `open` would admit the whole VPC CIDR; the rule above admits the functions only.
        open: false,
        securityGroups: [endpointSecurityGroup],
      });
    }
  }
}
