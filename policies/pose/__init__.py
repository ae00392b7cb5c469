from embodied.policies.pose.estimator import PoseEstimator, PoseEstimatorConfig, object_from_pose, pose_targets

__all__ = ["PoseEstimator", "PoseEstimatorConfig", "object_from_pose", "pose_targets"]
