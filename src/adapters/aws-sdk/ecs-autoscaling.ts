// The part of the ECS and Auto Scaling SDKs ecs-gvisor calls, loaded on first use (adapters/aws.ts). Named
// imports keep the bundle's copy to what is used; one module, so the two share one copy of the SDK's core.

export {
  AutoScalingClient,
  CompleteLifecycleActionCommand,
  RecordLifecycleActionHeartbeatCommand,
  SetInstanceHealthCommand,
} from '@aws-sdk/client-auto-scaling';
export {
  DeleteAttributesCommand,
  DescribeContainerInstancesCommand,
  DescribeTasksCommand,
  ECSClient,
  PutAttributesCommand,
  UpdateContainerInstancesStateCommand,
} from '@aws-sdk/client-ecs';
