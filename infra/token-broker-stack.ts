import { CfnOutput, Stack, type StackProps } from 'aws-cdk-lib';
import type { Construct } from 'constructs';
import { TokenBroker, type TokenBrokerProps } from './token-broker.ts';

export interface TokenBrokerStackProps extends StackProps {
  readonly broker?: TokenBrokerProps;
}

/** The deployable broker: one {@link TokenBroker} and the outputs an operator needs. */
export class TokenBrokerStack extends Stack {
  readonly broker: TokenBroker;

  constructor(scope: Construct, id: string, props: TokenBrokerStackProps = {}) {
    super(scope, id, {
      description: 'Salesforce OAuth token broker: session handles for clients, tokens stay here',
      ...props,
    });
    this.broker = new TokenBroker(this, 'Broker', props.broker);

    new CfnOutput(this, 'ApiUrl', {
      description: 'Base URL of the broker (POST {ApiUrl}refresh)',
      value: this.broker.url,
    });
    new CfnOutput(this, 'CallbackUrl', {
      description: 'Callback URL to register in the Salesforce connected app',
      value: this.broker.callbackUrl,
    });
    new CfnOutput(this, 'ClientSecretName', {
      description: 'Secrets Manager secret to fill with {"client_id","client_secret"}',
      value: this.broker.clientSecret.secretName,
    });
    new CfnOutput(this, 'AlarmTopicArn', {
      description: 'SNS topic that receives the broker alarms',
      value: this.broker.alarmTopic.topicArn,
    });
    if (this.broker.fixedEgress) {
      new CfnOutput(this, 'EgressIps', {
        description:
          'Addresses Salesforce sees from the broker: allow-list them in the connected app',
        value: this.broker.fixedEgress.egressIps,
      });
    }
    if (this.broker.domainName) {
      new CfnOutput(this, 'CustomDomainTarget', {
        description: 'Point a CNAME (or alias) for the custom domain at this name',
        value: this.broker.domainName.regionalDomainName,
      });
    }
  }
}
