from embodied.policies.cnn_bc.policy import CNNPolicy, CNNPolicyConfig

__all__ = ["CNNPolicy", "CNNPolicyConfig"]
