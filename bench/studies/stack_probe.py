"""Where a Stack `egpt` policy's perception breaks: does it go for the cube its sub-goal names, on the scenes it

A one-off study (bench/studies/): its result is in docs/BENCHMARKS.md, "Stack: which cube, and how close?".
trained on and on new ones, and (with `policy.aux_object`) how far off is its estimate of the cubes?

robosuite's Stack always puts cube A (the smaller one) on cube B; the instruction names them by colour. Three
probes, each on frames 5 steps into an episode (the demos' own frames; on fresh seeds, after 5 steps of the
reactive expert, as in the demos):
  - heading: does the mean xy action of the first chunk under "reach the <A's colour> cube" point more towards
    cube A than towards cube B (cosine to each, from the hand)? Chance is about one half.
  - swapped: the same with B's colour named instead. A policy that reads the colour word should now head for B,
    so its "towards A" count should fall; if it stays, the word is ignored.
  - object error: |estimated - true| position of each cube, in cm (policies with an object head only).
`--track N` then lets each policy drive N fresh episodes itself and prints, every 15 steps, the hand's xy
distance to cube A and to cube B and its height above cube A (cm), and the sub-goal reached at the end.

    python bench/studies/stack_probe.py --demos stack200.hdf5 POLICY_DIR [POLICY_DIR ...]
        [--seeds 20 --every 5 --track 6]
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from embodied.datasets.demos import open_demo_file
from embodied.envs.runner import GuardedEnv
from embodied.policies import load_policy, make_expert


def probe(pol, rgb: np.ndarray, proprio: np.ndarray, obj: np.ndarray, colours: tuple[str, str]) -> dict:
    """Heads-for-A under A's and B's colour, and the cube position errors (cm) where the policy estimates them."""
    out, hand = {}, proprio[:3]
    rgb_t, pro_t = torch.as_tensor(rgb)[None], torch.as_tensor(proprio)[None]
    to_a, to_b = obj[:2] - hand[:2], obj[7:9] - hand[:2]
    for key, colour in zip(("heading", "swapped"), colours):
        with torch.no_grad():
            feats = pol.encode(rgb_t, [f"reach the {colour} cube"])
            actions, est = pol.heads(feats, pro_t)
        a = actions[0].mean(0).numpy()[:2]
        cos = [a @ v / (np.linalg.norm(a) * np.linalg.norm(v) + 1e-9) for v in (to_a, to_b)]
        out[key] = float(cos[0] > cos[1])
        if key == "heading" and est is not None:
            est = (est[0] * pol.object_std + pol.object_mean).numpy()
            out["error_a_cm"] = 100 * float(np.linalg.norm(est[:3] - obj[:3]))
            out["error_b_cm"] = 100 * float(np.linalg.norm(est[7:10] - obj[7:10]))
    return out


def colours_of(subgoals: list[str]) -> tuple[str, str]:
    """(A's colour, B's colour) from the 'place the <A> cube on the <B> cube' sub-goal."""
    words = next(s for s in subgoals if s.startswith("place ")).split()
    return words[2], words[6]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("policies", nargs="+")
    ap.add_argument("--demos", required=True, help="the Stack demo file the policies trained on")
    ap.add_argument("--every", type=int, default=5, help="probe every N-th demo")
    ap.add_argument("--seeds", type=int, default=20, help="fresh scenes, seeds 300000 on")
    ap.add_argument("--t", type=int, default=5, help="step of the episode to probe")
    ap.add_argument("--track", type=int, default=0, help="then N episodes driven by each policy, seeds 300000 on")
    ap.add_argument("--track-steps", type=int, default=150)
    args = ap.parse_args()
    pols = [load_policy(p) for p in args.policies]
    rows: dict[str, dict[str, list]] = {p: {"train": [], "fresh": []} for p in args.policies}

    f = open_demo_file(args.demos)
    names = sorted(f["data"].keys(), key=lambda k: int(k.split("_")[-1]))[:: args.every]
    for name in names:
        d = f["data"][name]
        colours = colours_of(json.loads(d.attrs["subgoals"]))
        for path, pol in zip(args.policies, pols):
            o = d["obs"]
            rows[path]["train"].append(probe(pol, o[f"{pol.cfg.camera}_image"][args.t], o["proprio"][args.t],
                                             o["object"][args.t], colours))

    env_cfg = dict(pols[0].cfg.env, cameras=sorted({p.cfg.camera for p in pols}))
    env = GuardedEnv(env_cfg)
    for seed in range(300000, 300000 + args.seeds):
        expert = make_expert("robosuite", "Stack", noise=0.1, seed=seed, kind="reactive")
        obs, info = env.reset(seed=seed)
        for _ in range(args.t):
            obs, _, _, _, info = env.step(np.asarray(expert.act(obs, info["subgoal"]), np.float32))
        colours = colours_of(info["subgoals"])
        for path, pol in zip(args.policies, pols):
            rows[path]["fresh"].append(probe(pol, obs["rgb"][pol.cfg.camera], obs["proprio"], obs["object"], colours))

    print("| policy | scenes | heads for A, A named | heads for A, B named | cube A error (cm) | cube B error (cm) |")
    print("|---|---|---|---|---|---|")
    for path in args.policies:
        for split, r in rows[path].items():
            k = len(r)
            err = {
                c: f"{np.mean([x[c] for x in r]):.1f}" if "error_a_cm" in r[0] else ""
                for c in ("error_a_cm", "error_b_cm")
            }
            print(f"| {path} | {split} ({k}) | {sum(x['heading'] for x in r):.0f}/{k} | "
                  f"{sum(x['swapped'] for x in r):.0f}/{k} | {err['error_a_cm']} | {err['error_b_cm']} |")
    for path, pol in zip(args.policies, pols):
        for seed in range(300000, 300000 + args.track):
            print(path, seed, track(env, pol, seed, args.track_steps))
    env.close()


def track(env, pol, seed: int, steps: int) -> str:
    """'xyA/xyB/zA' in cm every 15 steps of one episode the policy drives, and its last sub-goal index."""
    obs, info = env.reset(seed=seed)
    pol.reset()
    log = []
    for t in range(steps):
        obs, _, term, trunc, info = env.step(pol.act(obs, info["subgoal"]))
        hand, o = obs["proprio"][:3], obs["object"]
        if t % 15 == 14:
            log.append(f"{100 * np.linalg.norm(hand[:2] - o[:2]):.0f}/{100 * np.linalg.norm(hand[:2] - o[7:9]):.0f}/"
                       f"{100 * (hand[2] - o[2]):.0f}")
        if term or trunc:
            break
    return f"sub-goal {info['subgoal_index']} of {len(info['subgoals'])}, xyA/xyB/zA cm: " + " ".join(log)


if __name__ == "__main__":
    main()
