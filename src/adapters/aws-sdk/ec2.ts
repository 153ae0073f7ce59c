// The part of the EC2 SDK ecs-gvisor calls, loaded on first use (adapters/aws.ts): DescribeTags, needed
// only when neither the configuration nor IMDS names the Auto Scaling group. Its own module, as EC2's
// model is larger than the rest of the bundle.
export { DescribeTagsCommand, EC2Client } from '@aws-sdk/client-ec2';
