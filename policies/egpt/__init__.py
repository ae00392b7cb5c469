from embodied.policies.egpt.policy import EGPTPolicy, EGPTPolicyConfig

__all__ = ["EGPTPolicy", "EGPTPolicyConfig"]
