from embodied.policies.state_bc.policy import StatePolicy, StatePolicyConfig

__all__ = ["StatePolicy", "StatePolicyConfig"]
