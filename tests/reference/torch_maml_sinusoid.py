#!/usr/bin/python3
"""PyTorch MAML baseline for the sinusoid regression workload (Finn et al. 2017).

Used only for comparison numbers (meta-test MSE and training throughput)
against metatrain; the C build and tests never need it.

Workload: task y = A sin(x - phi), A ~ U[0.1, 5], phi ~ U[0, pi],
x ~ U[-5, 5]; 10 support and 10 query points per task. Model: MLP 1-40-40-1
with ReLU, MSE loss. Inner loop: plain SGD on the support set with step
--inner-lr; outer loop: Adam on the mean query loss over the meta-batch.

Two implementations of the same math:
  loop     per-task Python loop with functional forward passes and
           torch.autograd.grad(create_graph=True) for the inner step
           (the structure of the original MAML / learn2learn examples)
  batched  the whole meta-batch at once: parameters expanded to [B, ...] so
           every task has its own fast weights, forward passes with torch.bmm,
           one autograd graph per meta-batch

Examples:
  /usr/bin/python3 tests/reference/torch_maml_sinusoid.py --mode batched --algo maml
  /usr/bin/python3 tests/reference/torch_maml_sinusoid.py --mode loop --time-only --iterations 300
  /usr/bin/python3 tests/reference/torch_maml_sinusoid.py --selfcheck

The last line of output is one JSON object with the results.
Runs single-threaded (torch.set_num_threads(1)) unless --threads N says otherwise.
"""

import argparse
import json
import math
import resource
import sys
import time

import numpy as np
import torch

torch.set_num_threads(1)
torch.set_num_interop_threads(1)

HIDDEN = 40
N_SUPPORT = 10
N_QUERY = 10


# ---------------------------------------------------------------------------
# Tasks
# ---------------------------------------------------------------------------

def sample_tasks(rng, n_tasks, dtype=torch.float32):
    """Return (xs, ys, xq, yq), each [n_tasks, n_points, 1]."""
    amp = rng.uniform(0.1, 5.0, size=(n_tasks, 1))
    phase = rng.uniform(0.0, math.pi, size=(n_tasks, 1))
    x = rng.uniform(-5.0, 5.0, size=(n_tasks, N_SUPPORT + N_QUERY))
    y = amp * np.sin(x - phase)
    x = torch.as_tensor(x, dtype=dtype).unsqueeze(-1)
    y = torch.as_tensor(y, dtype=dtype).unsqueeze(-1)
    return x[:, :N_SUPPORT], y[:, :N_SUPPORT], x[:, N_SUPPORT:], y[:, N_SUPPORT:]


# ---------------------------------------------------------------------------
# Model: functional MLP 1-40-40-1, parameters [W1, b1, W2, b2, W3, b3]
# with PyTorch Linear layout (weights are [out, in]).
# ---------------------------------------------------------------------------

def init_params(seed, dtype=torch.float32):
    """nn.Linear-style init: weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    gen = torch.Generator().manual_seed(seed)
    params = []
    for fan_in, fan_out in ((1, HIDDEN), (HIDDEN, HIDDEN), (HIDDEN, 1)):
        bound = 1.0 / math.sqrt(fan_in)
        for shape in ((fan_out, fan_in), (fan_out,)):
            p = (torch.rand(shape, generator=gen, dtype=dtype) * 2 - 1) * bound
            params.append(p.requires_grad_(True))
    return params


def forward(params, x):
    """One task. x: [N, 1] -> [N, 1]."""
    w1, b1, w2, b2, w3, b3 = params
    h = torch.relu(torch.addmm(b1, x, w1.t()))
    h = torch.relu(torch.addmm(b2, h, w2.t()))
    return torch.addmm(b3, h, w3.t())


def forward_batched(params, x):
    """B tasks with their own weights. params [B, ...], x: [B, N, 1] -> [B, N, 1]."""
    w1, b1, w2, b2, w3, b3 = params
    h = torch.relu(torch.baddbmm(b1.unsqueeze(1), x, w1.transpose(1, 2)))
    h = torch.relu(torch.baddbmm(b2.unsqueeze(1), h, w2.transpose(1, 2)))
    return torch.baddbmm(b3.unsqueeze(1), h, w3.transpose(1, 2))


def mse(pred, y):
    return ((pred - y) ** 2).mean()


def mse_per_task(pred, y):
    """[B, N, 1] -> [B]."""
    return ((pred - y) ** 2).mean(dim=(1, 2))


# ---------------------------------------------------------------------------
# Meta-loss: mean over tasks of the query loss after the inner loop.
# For algo == "maml" the inner gradients are part of the graph (exact
# second order); for "fomaml" they are constants.
# ---------------------------------------------------------------------------

def meta_loss_loop(params, batch, inner_steps, inner_lr, algo):
    xs, ys, xq, yq = batch
    second_order = algo == "maml"
    total = 0.0
    for t in range(xs.shape[0]):
        fast = params
        for _ in range(inner_steps):
            loss_s = mse(forward(fast, xs[t]), ys[t])
            grads = torch.autograd.grad(loss_s, fast, create_graph=second_order)
            fast = [w - inner_lr * g for w, g in zip(fast, grads)]
        total = total + mse(forward(fast, xq[t]), yq[t])
    return total / xs.shape[0]


def meta_loss_batched(params, batch, inner_steps, inner_lr, algo):
    xs, ys, xq, yq = batch
    n_tasks = xs.shape[0]
    second_order = algo == "maml"
    fast = [p.unsqueeze(0).expand(n_tasks, *p.shape) for p in params]
    for _ in range(inner_steps):
        # Summing per-task losses makes d/d fast[t] the gradient of task t alone.
        loss_s = mse_per_task(forward_batched(fast, xs), ys).sum()
        grads = torch.autograd.grad(loss_s, fast, create_graph=second_order)
        fast = [w - inner_lr * g for w, g in zip(fast, grads)]
    return mse_per_task(forward_batched(fast, xq), yq).mean()


META_LOSS = {"loop": meta_loss_loop, "batched": meta_loss_batched}


# ---------------------------------------------------------------------------
# Evaluation: adapt from theta on each task's support set with plain SGD,
# then measure the query MSE.
# ---------------------------------------------------------------------------

def adapt_and_eval(params, batch, steps, inner_lr):
    """Return per-task query MSE [B] after `steps` SGD steps (no meta-graph)."""
    xs, ys, xq, yq = batch
    n_tasks = xs.shape[0]
    fast = [p.detach().unsqueeze(0).expand(n_tasks, *p.shape).clone().requires_grad_(True)
            for p in params]
    for _ in range(steps):
        loss_s = mse_per_task(forward_batched(fast, xs), ys).sum()
        grads = torch.autograd.grad(loss_s, fast)
        fast = [(w - inner_lr * g).detach().requires_grad_(True) for w, g in zip(fast, grads)]
    with torch.no_grad():
        return mse_per_task(forward_batched(fast, xq), yq)


def evaluate(params, rng, n_tasks, steps, inner_lr, chunk=250):
    errs = []
    for start in range(0, n_tasks, chunk):
        batch = sample_tasks(rng, min(chunk, n_tasks - start))
        errs.append(adapt_and_eval(params, batch, steps, inner_lr).double())
    errs = torch.cat(errs)
    mean = float(errs.mean())
    ci95 = 1.96 * float(errs.std()) / math.sqrt(n_tasks) if n_tasks > 1 else float("nan")
    return mean, ci95


# ---------------------------------------------------------------------------
# Self-check: loop and batched give the same meta-gradient.
# ---------------------------------------------------------------------------

def selfcheck(args):
    ok = True
    for dtype, tol in ((torch.float64, 1e-10), (torch.float32, 1e-4)):
        for algo in ("maml", "fomaml"):
            rng = np.random.default_rng(args.seed)
            batch = sample_tasks(rng, args.meta_batch, dtype)
            grads = {}
            for mode, fn in META_LOSS.items():
                params = init_params(args.seed, dtype)
                loss = fn(params, batch, args.inner_steps, args.inner_lr, algo)
                grads[mode] = (float(loss), torch.cat([g.flatten() for g in
                                                       torch.autograd.grad(loss, params)]))
            (l_loop, g_loop), (l_bat, g_bat) = grads["loop"], grads["batched"]
            max_abs = float((g_loop - g_bat).abs().max())
            rel = max_abs / float(g_loop.abs().max())
            good = rel < tol and abs(l_loop - l_bat) <= tol * abs(l_loop)
            ok &= good
            print(f"selfcheck {str(dtype).split('.')[1]:7s} {algo:6s} K={args.inner_steps}: "
                  f"meta-loss {l_loop:.9g} vs {l_bat:.9g}, grad max|diff| {max_abs:.3e} "
                  f"(relative {rel:.3e}) {'ok' if good else 'MISMATCH'}")
    print(json.dumps({"selfcheck": "ok" if ok else "mismatch"}))
    return 0 if ok else 1


# ---------------------------------------------------------------------------

def train(args):
    train_rng, eval_rng = (np.random.default_rng(s)
                           for s in np.random.SeedSequence(args.seed).spawn(2))
    params = init_params(args.seed)
    opt = torch.optim.Adam(params, lr=args.outer_lr)
    meta_loss_fn = META_LOSS[args.mode]

    train_time = 0.0
    for it in range(1, args.iterations + 1):
        t0 = time.perf_counter()
        batch = sample_tasks(train_rng, args.meta_batch)
        opt.zero_grad(set_to_none=True)
        loss = meta_loss_fn(params, batch, args.inner_steps, args.inner_lr, args.algo)
        loss.backward()
        opt.step()
        train_time += time.perf_counter() - t0

        if args.log_every and (it % args.log_every == 0 or it == args.iterations):
            with torch.no_grad():
                xs, ys, xq, yq = batch
                fast = [p.unsqueeze(0).expand(xq.shape[0], *p.shape) for p in params]
                pre = float(mse_per_task(forward_batched(fast, xq), yq).mean())
            print(f"iter {it:6d}  query loss pre-adapt {pre:.4f}  post-adapt {float(loss):.4f}  "
                  f"({it * args.meta_batch / train_time:.1f} tasks/s)", flush=True)

    result = {
        "mode": args.mode,
        "algo": args.algo,
        "iterations": args.iterations,
        "meta_batch": args.meta_batch,
        "inner_steps": args.inner_steps,
        "train_seconds": round(train_time, 3),
        "tasks_per_s": args.iterations * args.meta_batch / train_time,
        "eval_mse_mean": None,
        "eval_mse_ci95": None,
        "eval_tasks": 0 if args.time_only else args.eval_tasks,
        "threads": torch.get_num_threads(),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,  # Linux: KiB
        "eval_steps": args.eval_steps,
    }
    if not args.time_only:
        mean, ci95 = evaluate(params, eval_rng, args.eval_tasks, args.eval_steps, args.inner_lr)
        result["eval_mse_mean"] = mean
        result["eval_mse_ci95"] = ci95
    print(json.dumps(result))
    return 0


def main():
    ap = argparse.ArgumentParser(description="PyTorch MAML baseline on sinusoid regression")
    ap.add_argument("--mode", choices=("loop", "batched"), default="batched")
    ap.add_argument("--algo", choices=("maml", "fomaml"), default="maml")
    ap.add_argument("--iterations", type=int, default=20000)
    ap.add_argument("--meta-batch", type=int, default=25)
    ap.add_argument("--inner-steps", type=int, default=1)
    ap.add_argument("--inner-lr", type=float, default=0.01)
    ap.add_argument("--outer-lr", type=float, default=1e-3)
    ap.add_argument("--eval-tasks", type=int, default=1000)
    ap.add_argument("--eval-steps", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--time-only", action="store_true",
                    help="skip evaluation; only run the iterations and report speed")
    ap.add_argument("--log-every", type=int, default=1000, help="0 disables progress lines")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    ap.add_argument("--selfcheck", action="store_true",
                    help="compare loop and batched meta-gradients on one meta-batch and exit")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    return selfcheck(args) if args.selfcheck else train(args)


if __name__ == "__main__":
    sys.exit(main())
