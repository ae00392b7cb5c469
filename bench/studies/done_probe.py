"""Can the planner's features tell a finished sub-goal from one in progress, and from which camera?

A one-off study (bench/studies/): its result is in docs/BENCHMARKS.md, "A success-detection head on the ViT's
features, seen in grey" (where the "place" signal is lost).

    python bench/studies/done_probe.py FILE.hdf5 [...]    (loop demos with both cameras, e.g.
    embodied collect env=robosuite/stack n=30 seed=700000 out=runs/probe/late.hdf5 video=false expert=skill \
        loop=true env.variety=cycle oracle_lag=5 workers=2)

At every 6th step of each demo (the loop's checks) the shipped planner is asked about the steps around the
simulator's current one; labels come from the simulator's index. Per verb, on the last third of the demos (by
order), it prints F1 and AUC of the LLM's yes/no margin (the baseline, same run) and of class-balanced logistic
probes fitted on the first two thirds: on the E-former's pooled queries, on the frozen ViT's clip features
(VisionEncoder.clip_feature) of the wrist, of the third-person camera and of both, and on frame difference.
"""
import json
import sys
from collections import defaultdict

import h5py
import numpy as np
import torch

from embodied.datasets.corpus import done_question
from embodied.modeling import EmbodiedGPT


def verb(subgoal):
    return subgoal.split()[0]


torch.manual_seed(0)
model = EmbodiedGPT.from_pretrained("tiny/planner").eval()


def feat(tokens):
    return model.vision.clip_feature(tokens)[0]
rows = []  # (episode, verb, label, margin, eformer feat, vit wrist, vit agent, motion)
ep = 0
for path in sys.argv[1:]:
    with h5py.File(path, "r") as f:
        for name in sorted(f["data"], key=lambda n: int(n.split("_")[1])):
            g = f["data"][name]
            subgoals = json.loads(g.attrs["subgoals"])
            idx = g["subgoal_index"][()]
            wrist = g["obs/robot0_eye_in_hand_image"][()]
            agent = g["obs/agentview_image"][()]
            for t in range(12, len(idx), 6):
                k = int(idx[t])
                steps = np.clip(t - 3 * np.arange(7, -1, -1), 0, None)
                cw, ca = torch.as_tensor(wrist[steps])[None], torch.as_tensor(agent[steps])[None]
                js = [j for j in range(k - 2, k + 2) if 0 <= j < len(subgoals)]
                qs = [done_question(subgoals[j]) for j in js]
                with torch.no_grad():
                    lp = model.choice_logprobs(cw, qs, ["yes", "no"], eformer_text=qs)
                    q, vis = model.encode(cw.expand(len(qs), -1, -1, -1, -1), qs)
                    gw, ga = feat(model.vision(cw)), feat(model.vision(ca))
                mot = float(np.abs(wrist[t].astype(float) - wrist[max(0, t - 6)].astype(float)).mean())
                for i, j in enumerate(js):
                    rows.append((ep, verb(subgoals[j]), j < k, float(lp[i, 0] - lp[i, 1]), q[i].mean(0).numpy(),
                                 gw.numpy(), ga.numpy(), mot))
            ep += 1
            print("episode", ep, len(rows), flush=True)

n_ep = ep
def train(r):
    return r[0] < int(0.67 * n_ep)


def fit_mlp(X, y, tr, hidden=64, epochs=300):
    X = torch.tensor(X, dtype=torch.float32)
    y = torch.tensor(y, dtype=torch.float32)
    mu, sd = X[tr].mean(0), X[tr].std(0) + 1e-5
    X = (X - mu) / sd
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Dropout(0.2), torch.nn.Linear(X.shape[1], hidden), torch.nn.GELU(), torch.nn.Linear(hidden, 1)
    )
    opt = torch.optim.AdamW(net.parameters(), 1e-3, weight_decay=0.05)
    pos = y[tr].mean().clamp(0.05, 0.95)
    wt = torch.where(y[tr] > 0, 0.5 / pos, 0.5 / (1 - pos))
    for _ in range(epochs):
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(net(X[tr])[:, 0], y[tr], weight=wt)
        loss.backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        return net(X[~tr])[:, 0].numpy()


def fit_eval(X, y, tr):
    X = torch.tensor(X, dtype=torch.float32)
    y = torch.tensor(y, dtype=torch.float32)
    mu, sd = X[tr].mean(0), X[tr].std(0) + 1e-5
    X = (X - mu) / sd
    w = torch.zeros(X.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200)
    pos = y[tr].mean().clamp(0.05, 0.95)
    wt = torch.where(y[tr] > 0, 0.5 / pos, 0.5 / (1 - pos))
    def closure():
        opt.zero_grad()
        loss = (torch.nn.functional.binary_cross_entropy_with_logits(X[tr] @ w + b, y[tr], weight=wt)
                + 1e-2 * (w ** 2).sum())
        loss.backward()
        return loss
    opt.step(closure)
    with torch.no_grad():
        return (X[~tr] @ w + b).numpy()


def scores(s, y):
    p = s > 0
    tp, fp, fn = (p & y).sum(), (p & ~y).sum(), (~p & y).sum()
    f1 = 2 * tp / max(1, 2 * tp + fp + fn)
    order = np.argsort(s)
    ranks = np.empty(len(s))
    ranks[order] = np.arange(len(s))
    auc = (ranks[y].sum() - y.sum() * (y.sum() - 1) / 2) / max(1, y.sum() * (~y).sum())
    return f"F1 {f1:.2f} AUC {auc:.2f} (pos {y.sum()}, neg {(~y).sum()})"


by = defaultdict(list)
for r in rows:
    by[r[1]].append(r)
for v, rs in sorted(by.items()):
    tr = np.array([train(r) for r in rs])
    y = np.array([r[2] for r in rs])
    print(f"== {v}: test {scores(np.array([r[3] for r in rs])[~tr], y[~tr])}  [LM margin]")
    for label, X in [("eformer", [r[4] for r in rs]), ("vit wrist", [r[5] for r in rs]),
                     ("vit agent", [r[6] for r in rs]),
                     ("vit both", [np.concatenate([r[5], r[6]]) for r in rs]),
                     ("eformer+agent", [np.concatenate([r[4], r[6]]) for r in rs]),
                     ("motion", [[r[7]] for r in rs])]:
        s = fit_eval(np.array(X), y, tr)
        print(f"   {label:14s} {scores(s, y[~tr])}")
        if v == "place" and "vit" in label:
            print(f"   {label+' mlp':14s} {scores(fit_mlp(np.array(X), y, tr), y[~tr])}")
