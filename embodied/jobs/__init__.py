"""The jobs behind `embodied JOB`: one module each, with `run(cfg, default_dir)`; configs/JOB.yaml holds its config."""

# job name on the command line -> its module
JOBS = {
    "collect": "embodied.jobs.collect",
    "rerender": "embodied.jobs.rerender",
    "rollout": "embodied.jobs.rollout",
    "corpus": "embodied.jobs.corpus",
    "train-planner": "embodied.jobs.train_planner",
    "train-policy": "embodied.jobs.train_policy",
    "simqa": "embodied.jobs.simqa",
    "train-done": "embodied.jobs.train_done",
    "train-pose": "embodied.jobs.train_pose",
    "train-detector": "embodied.jobs.train_detector",
    "eval-plan": "embodied.jobs.eval_plan",
    "eval-loop": "embodied.jobs.eval_loop",
    "pipeline": "embodied.jobs.pipeline",
    "ship": "embodied.jobs.ship",
    "model-info": "embodied.jobs.model_info",
    "report": "embodied.jobs.report",
}
