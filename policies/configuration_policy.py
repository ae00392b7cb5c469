"""What every learned policy's config holds (the policy is in policies/base.py); each type's config adds its own
fields in the configuration file beside its model. Saved as config.json with the weights."""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class PolicyConfig:
    """Args:
        type: the policy type (egpt | global | cnn | state | pose): which class loads the checkpoint.
        camera: the view it reads (a key of obs["rgb"]); "" for a policy that reads no camera.
        image_size: frames are resized to this square.
        proprio_dim: size of obs["proprio"] (set by train-policy from the demos).
        action_dim: size of an action (set by train-policy from the demos).
        chunk: actions predicted per observation, executed in turn.
        ensemble: temporal ensembling (ACT): None runs each chunk open loop; m >= 0 predicts every step and
            averages the live chunks' actions for this step with weights exp(-m * i), i = 0 the oldest chunk. A
            test-time choice: `embodied rollout policy.ensemble=M` overrides the saved value.
        hidden: width of the action head's MLP.
        lr: Adam's learning rate.
        shift: random-shift augmentation: frames are padded by this many pixels and cropped back at random.
        env: the env it was trained for (rollouts and checks use it).
        train_info: how it was made (demos file, number of demos, seed).
    """

    type: str = ""
    camera: str = ""
    image_size: int = 128
    proprio_dim: int = 0
    action_dim: int = 0
    chunk: int = 1
    ensemble: float | None = None
    hidden: int = 256
    lr: float = 1e-3
    shift: int = 8
    env: dict = dataclasses.field(default_factory=dict)
    train_info: dict = dataclasses.field(default_factory=dict)
