#!/usr/bin/python3
"""PyTorch MAML baseline for few-shot image classification with Conv4.

Used only for comparison numbers (meta-test accuracy and training
throughput) against metatrain; the C build and tests never need it.

Data: a metatrain dataset HDF5 file (`metatrain data import ...`, or
tests/reference/make_fewshot_h5.py): /<split>/images uint8 [N,C,H,W],
/<split>/labels int32 [N] sorted by class, /<split>/class_offsets int64
[n_classes+1], root attribute format = "metatrain-dataset". With --rotations
every class also appears rotated by 90, 180 and 270 degrees as three new
classes (the Omniglot convention).

Task: --ways classes drawn without replacement from the split, --shots
support and --query query images per class (all distinct), labels 0..ways-1
in random class order. Images are uint8 / 255.

Model (MAML's Conv4): 4 x [conv 3x3 --filters (padding 1, bias), batch norm
with the statistics of the current batch (no running statistics), ReLU,
max-pool 2x2], flatten, linear -> ways; softmax cross-entropy. Support and
query sets are separate forward passes. Inner loop: plain SGD on the support
set with step --inner-lr; outer loop: Adam on the mean query loss over the
meta-batch. --algo maml differentiates through the inner steps (exact second
order), fomaml holds the inner gradients constant.

Two implementations of the same math (--selfcheck compares them):
  loop     per-task Python loop with functional forward passes and
           torch.autograd.grad(create_graph=True) for the inner step; each
           task's query loss is backpropagated at once (memory of one task).
           The default: on one CPU thread it is the faster of the two
           (Conv4-64, 5-way 1-shot, 15 query, meta-batch 32: ~6-8 tasks/s
           vs ~4-5 for batched)
  batched  --chunk tasks at a time with their own fast weights: grouped
           convolutions (groups = tasks), batch norm over task x filter
           channels, torch.baddbmm for the head

Evaluation: --eval-tasks tasks from the test split; starting from the
meta-learned parameters, --eval-steps SGD steps on the support set, then
accuracy on the query set (batch statistics of the query set, as in
training), one task at a time. Prints the mean and the 95% confidence
interval 1.96 std / sqrt(n).

Examples (data files from make_fewshot_h5.py, see its docstring):
  /usr/bin/python3 tests/reference/torch_maml_fewshot.py --data /tmp/fmnist.h5 --rotations \\
      --iterations 200 --eval-tasks 600 --log-every 20
  /usr/bin/python3 tests/reference/torch_maml_fewshot.py --data /tmp/synth28.h5 --rotations \\
      --time-only --iterations 3
  /usr/bin/python3 tests/reference/torch_maml_fewshot.py --selfcheck

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
import torch.nn.functional as F

torch.set_num_threads(1)
torch.set_num_interop_threads(1)

BN_EPS = 1e-5


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------

class Split:
    """The images of one split in memory, and its (class, rotation) list."""

    def __init__(self, images, class_offsets, rotations):
        self.images = images                          # uint8 [N, C, H, W]
        self.offsets = np.asarray(class_offsets, dtype=np.int64)
        n_base = len(self.offsets) - 1
        if rotations and images.shape[2] != images.shape[3]:
            raise SystemExit("--rotations needs square images")
        rots = (0, 1, 2, 3) if rotations else (0,)
        self.classes = [(c, r) for c in range(n_base) for r in rots]
        self.shape = images.shape[1:]

    def class_size(self, cls):
        c, _ = self.classes[cls]
        return int(self.offsets[c + 1] - self.offsets[c])

    def take(self, cls, idx):
        """Images idx (within the class) of class cls, rotated, as uint8 [n, C, H, W]."""
        c, r = self.classes[cls]
        img = self.images[self.offsets[c] + np.asarray(idx)]
        return np.rot90(img, r, axes=(2, 3)) if r else img


def load_split(path, name, rotations):
    import h5py

    with h5py.File(path, "r") as f:
        fmt = f.attrs.get("format")
        if isinstance(fmt, bytes):
            fmt = fmt.decode()
        if fmt != "metatrain-dataset":
            raise SystemExit(f"{path}: not a metatrain dataset (format = {fmt!r})")
        if name not in f:
            raise SystemExit(f"{path}: no split '{name}' (have {', '.join(f.keys())})")
        g = f[name]
        images = g["images"][...]
        labels = g["labels"][...]
        offsets = g["class_offsets"][...]
    if images.dtype != np.uint8 or images.ndim != 4:
        raise SystemExit(f"{path}:/{name}/images must be uint8 [N,C,H,W]")
    if offsets[0] != 0 or offsets[-1] != len(images) or np.any(np.diff(offsets) < 0):
        raise SystemExit(f"{path}:/{name}/class_offsets does not partition the images")
    expect = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    if not np.array_equal(labels, expect):
        raise SystemExit(f"{path}:/{name}/labels are not sorted by class / offsets")
    return Split(images, offsets, rotations)


def synthetic_split(rng, n_classes, per_class, shape=(1, 28, 28), rotations=False):
    images = rng.integers(0, 256, size=(n_classes * per_class, *shape), dtype=np.uint8)
    return Split(images, np.arange(n_classes + 1) * per_class, rotations)


def sample_tasks(rng, split, n_tasks, ways, shots, query, dtype=torch.float32):
    """Return (xs, ys, xq, yq): xs [T, ways*shots, C, H, W], ys [T, ways*shots] (long), ...

    Both sets are class-major (all images of label 0 first).
    """
    if ways > len(split.classes):
        raise SystemExit(f"{ways}-way tasks need {ways} classes, the split has "
                         f"{len(split.classes)}")
    xs = np.empty((n_tasks, ways, shots, *split.shape), dtype=np.uint8)
    xq = np.empty((n_tasks, ways, query, *split.shape), dtype=np.uint8)
    for t in range(n_tasks):
        classes = rng.choice(len(split.classes), size=ways, replace=False)
        for label, cls in enumerate(classes):
            n = split.class_size(cls)
            if shots + query > n:
                raise SystemExit(f"class {cls} has {n} images, tasks need {shots + query}")
            img = split.take(cls, rng.choice(n, size=shots + query, replace=False))
            xs[t, label], xq[t, label] = img[:shots], img[shots:]
    labels = torch.arange(ways)

    def conv(x, per):
        x = torch.from_numpy(x.reshape(n_tasks, ways * per, *split.shape)).to(dtype) / 255.0
        return x, labels.repeat_interleave(per).expand(n_tasks, ways * per)

    (xs, ys), (xq, yq) = conv(xs, shots), conv(xq, query)
    return xs, ys, xq, yq


# ---------------------------------------------------------------------------
# Model: functional Conv4, parameters
# [conv1.w, conv1.b, bn1.gamma, bn1.beta, ..., conv4..., bn4..., head.w, head.b]
# in PyTorch layout (the same order as metatrain's flat parameter vector).
# ---------------------------------------------------------------------------

def feature_size(filters, h, w):
    for _ in range(4):
        h, w = h // 2, w // 2
    return filters * h * w


def init_params(seed, in_shape, filters, ways, dtype=torch.float32):
    """nn.Conv2d / nn.Linear-style U(+-1/sqrt(fan_in)) weights and biases; gamma 1, beta 0."""
    gen = torch.Generator().manual_seed(seed)
    cin, h, w = in_shape

    def uniform(shape, fan_in):
        bound = 1.0 / math.sqrt(fan_in)
        return (torch.rand(shape, generator=gen, dtype=dtype) * 2 - 1) * bound

    params = []
    for _ in range(4):
        params += [uniform((filters, cin, 3, 3), cin * 9), uniform((filters,), cin * 9),
                   torch.ones(filters, dtype=dtype), torch.zeros(filters, dtype=dtype)]
        cin = filters
    feat = feature_size(filters, h, w)
    params += [uniform((ways, feat), feat), uniform((ways,), feat)]
    return [p.requires_grad_(True) for p in params]


def forward(params, x):
    """One task. x: [N, C, H, W] -> logits [N, ways]."""
    h = x
    for b in range(4):
        w, bias, gamma, beta = params[4 * b:4 * b + 4]
        h = F.conv2d(h, w, bias, padding=1)
        h = F.batch_norm(h, None, None, gamma, beta, training=True, eps=BN_EPS)
        h = F.max_pool2d(torch.relu(h), 2)
    return F.linear(h.flatten(1), params[16], params[17])


def forward_batched(params, x):
    """T tasks with their own weights. params [T, ...], x [T, N, C, H, W] -> [T, N, ways].

    The tasks become channel groups: activations are [N, T*F, H, W], so grouped
    convolutions apply each task's filters to its own images and batch norm's
    per-channel statistics are exactly per task and filter.
    """
    n_tasks, n = x.shape[:2]
    h = x.transpose(0, 1).reshape(n, n_tasks * x.shape[2], *x.shape[3:])
    for b in range(4):
        w, bias, gamma, beta = params[4 * b:4 * b + 4]
        h = F.conv2d(h, w.reshape(-1, *w.shape[2:]), bias.reshape(-1), padding=1, groups=n_tasks)
        h = F.batch_norm(h, None, None, gamma.reshape(-1), beta.reshape(-1),
                         training=True, eps=BN_EPS)
        h = F.max_pool2d(torch.relu(h), 2)
    feat = h.reshape(n, n_tasks, -1).transpose(0, 1)          # (c, h, w) order per image
    return torch.baddbmm(params[17].unsqueeze(1), feat, params[16].transpose(1, 2))


def xent_per_task(logits, y):
    """[T, N, ways], [T, N] -> [T] mean cross-entropy per task."""
    t, n, ways = logits.shape
    return F.cross_entropy(logits.reshape(t * n, ways), y.reshape(-1),
                           reduction="none").view(t, n).mean(1)


# ---------------------------------------------------------------------------
# Meta-gradient of the mean query loss over the meta-batch. Gradients are
# accumulated into params[i].grad; returns the post-adaptation mean query loss. For algo == "maml" the inner gradients are part of the
# graph (exact second order); for "fomaml" they are constants.
# ---------------------------------------------------------------------------

def meta_step_loop(params, batch, inner_steps, inner_lr, algo, chunk=None):
    xs, ys, xq, yq = batch
    n_tasks = xs.shape[0]
    second_order = algo == "maml"
    post = 0.0
    for t in range(n_tasks):
        fast = params
        for _ in range(inner_steps):
            loss_s = F.cross_entropy(forward(fast, xs[t]), ys[t])
            grads = torch.autograd.grad(loss_s, fast, create_graph=second_order)
            fast = [w - inner_lr * g for w, g in zip(fast, grads)]
        loss_q = F.cross_entropy(forward(fast, xq[t]), yq[t])
        (loss_q / n_tasks).backward()
        post += float(loss_q) / n_tasks
    return post


def meta_step_batched(params, batch, inner_steps, inner_lr, algo, chunk=None):
    xs, ys, xq, yq = batch
    n_tasks = xs.shape[0]
    chunk = chunk or n_tasks
    second_order = algo == "maml"
    post = 0.0
    for lo in range(0, n_tasks, chunk):
        sl = slice(lo, min(lo + chunk, n_tasks))
        m = sl.stop - sl.start
        fast = [p.unsqueeze(0).expand(m, *p.shape) for p in params]
        for _ in range(inner_steps):
            # Summing per-task losses makes d/d fast[t] the gradient of task t alone.
            loss_s = xent_per_task(forward_batched(fast, xs[sl]), ys[sl]).sum()
            grads = torch.autograd.grad(loss_s, fast, create_graph=second_order)
            fast = [w - inner_lr * g for w, g in zip(fast, grads)]
        loss_q = xent_per_task(forward_batched(fast, xq[sl]), yq[sl]).sum()
        (loss_q / n_tasks).backward()
        post += float(loss_q) / n_tasks
    return post


def query_loss_pre(params, batch):
    """Mean query loss at theta itself (no adaptation), for the progress lines."""
    _, _, xq, yq = batch
    with torch.no_grad():
        return sum(float(F.cross_entropy(forward(params, xq[t]), yq[t]))
                   for t in range(xq.shape[0])) / xq.shape[0]


META_STEP = {"loop": meta_step_loop, "batched": meta_step_batched}


# ---------------------------------------------------------------------------
# Evaluation: adapt from theta on each task's support set with plain SGD,
# then measure the query accuracy.
# ---------------------------------------------------------------------------

def adapt_and_eval(params, batch, steps, inner_lr):
    """Return per-task query accuracy [T] after `steps` SGD steps (no meta-graph).

    One task at a time: per-task convolutions are faster on CPU than grouped ones.
    """
    xs, ys, xq, yq = batch
    acc = torch.empty(xs.shape[0], dtype=torch.float64)
    for t in range(xs.shape[0]):
        fast = [p.detach().requires_grad_(True) for p in params]
        for _ in range(steps):
            grads = torch.autograd.grad(F.cross_entropy(forward(fast, xs[t]), ys[t]), fast)
            fast = [(w - inner_lr * g).detach().requires_grad_(True)
                    for w, g in zip(fast, grads)]
        with torch.no_grad():
            acc[t] = float((forward(fast, xq[t]).argmax(-1) == yq[t]).double().mean())
    return acc


def evaluate(params, rng, split, args, chunk=16):
    accs = []
    for start in range(0, args.eval_tasks, chunk):
        batch = sample_tasks(rng, split, min(chunk, args.eval_tasks - start),
                             args.ways, args.shots, args.query)
        accs.append(adapt_and_eval(params, batch, args.eval_steps, args.inner_lr))
    accs = torch.cat(accs)
    n = len(accs)
    mean = float(accs.mean())
    ci95 = 1.96 * float(accs.std()) / math.sqrt(n) if n > 1 else float("nan")
    return mean, ci95


# ---------------------------------------------------------------------------
# Self-check: loop and batched give the same meta-gradient (synthetic data).
# ---------------------------------------------------------------------------

def selfcheck(args):
    ok = True
    shape = (1, 28, 28)
    split = synthetic_split(np.random.default_rng(args.seed), 8, 6, shape, rotations=True)
    filters, n_tasks = 8, 3
    for dtype, tol in ((torch.float64, 1e-10), (torch.float32, 1e-4)):
        for algo in ("maml", "fomaml"):
            rng = np.random.default_rng(args.seed)
            batch = sample_tasks(rng, split, n_tasks, args.ways, args.shots,
                                 min(args.query, 6 - args.shots), dtype)
            grads = {}
            for mode, fn in META_STEP.items():
                params = init_params(args.seed, shape, filters, args.ways, dtype)
                gen = torch.Generator().manual_seed(args.seed)
                with torch.no_grad():        # non-trivial batch-norm affine parameters
                    for b in range(4):
                        params[4 * b + 2].uniform_(0.5, 1.5, generator=gen)
                        params[4 * b + 3].uniform_(-0.5, 0.5, generator=gen)
                loss = fn(params, batch, args.inner_steps, args.inner_lr, algo, chunk=2)
                grads[mode] = (loss, torch.cat([p.grad.flatten() for p in params]))
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
    if not args.data:
        raise SystemExit("--data FILE is required (or --selfcheck)")
    train_split = load_split(args.data, args.train_split, args.rotations)
    test_split = None if args.time_only else load_split(args.data, args.test_split,
                                                        args.rotations)
    print(f"{args.data}: {args.train_split} {len(train_split.classes)} classes, "
          + (f"{args.test_split} {len(test_split.classes)} classes, " if test_split else "")
          + f"images {'x'.join(map(str, train_split.shape))}", flush=True)

    train_rng, eval_rng = (np.random.default_rng(s)
                           for s in np.random.SeedSequence(args.seed).spawn(2))
    params = init_params(args.seed, train_split.shape, args.filters, args.ways)
    opt = torch.optim.Adam(params, lr=args.outer_lr)
    meta_step = META_STEP[args.mode]

    train_time = 0.0
    for it in range(1, args.iterations + 1):
        t0 = time.perf_counter()
        batch = sample_tasks(train_rng, train_split, args.meta_batch,
                             args.ways, args.shots, args.query)
        opt.zero_grad(set_to_none=True)
        post = meta_step(params, batch, args.inner_steps, args.inner_lr, args.algo, args.chunk)
        if args.log_every and (it % args.log_every == 0 or it == args.iterations):
            t1 = time.perf_counter()
            pre = query_loss_pre(params, batch)     # theta before this step's update
            t0 += time.perf_counter() - t1          # not counted as training time
        opt.step()
        train_time += time.perf_counter() - t0

        if args.log_every and (it % args.log_every == 0 or it == args.iterations):
            print(f"iter {it:6d}  query loss pre-adapt {pre:.4f}  post-adapt {post:.4f}  "
                  f"({it * args.meta_batch / train_time:.2f} tasks/s)", flush=True)

    result = {
        "algo": args.algo,
        "iterations": args.iterations,
        "meta_batch": args.meta_batch,
        "ways": args.ways,
        "shots": args.shots,
        "tasks_per_s": args.iterations * args.meta_batch / train_time if train_time else None,
        "train_seconds": round(train_time, 3),
        "eval_accuracy_mean": None,
        "eval_accuracy_ci95": None,
        "eval_tasks": 0 if args.time_only else args.eval_tasks,
        "threads": torch.get_num_threads(),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,  # Linux: KiB
        "eval_steps": args.eval_steps,
        "mode": args.mode,
        "query": args.query,
        "filters": args.filters,
        "inner_steps": args.inner_steps,
    }
    if not args.time_only:
        t0 = time.perf_counter()
        mean, ci95 = evaluate(params, eval_rng, test_split, args)
        print(f"eval: {args.eval_tasks} tasks, {args.eval_steps} steps: accuracy "
              f"{100 * mean:.2f}% +- {100 * ci95:.2f}% ({time.perf_counter() - t0:.1f} s)",
              flush=True)
        result["eval_accuracy_mean"] = mean
        result["eval_accuracy_ci95"] = ci95
    print(json.dumps(result))
    return 0


def main():
    ap = argparse.ArgumentParser(description="PyTorch MAML baseline: Conv4 few-shot classification")
    ap.add_argument("--data", help="metatrain dataset HDF5 file")
    ap.add_argument("--train-split", default="train")
    ap.add_argument("--test-split", default="test")
    ap.add_argument("--ways", type=int, default=5)
    ap.add_argument("--shots", type=int, default=1)
    ap.add_argument("--query", type=int, default=15)
    ap.add_argument("--rotations", action="store_true",
                    help="add every class rotated by 90/180/270 degrees as 3 new classes")
    ap.add_argument("--filters", type=int, default=64)
    ap.add_argument("--mode", choices=("loop", "batched"), default="loop")
    ap.add_argument("--chunk", type=int, default=0,
                    help="batched mode: tasks per forward/backward (0 = whole meta-batch)")
    ap.add_argument("--algo", choices=("maml", "fomaml"), default="maml")
    ap.add_argument("--iterations", type=int, default=1000)
    ap.add_argument("--meta-batch", type=int, default=32)
    ap.add_argument("--inner-steps", type=int, default=1)
    ap.add_argument("--inner-lr", type=float, default=0.4)
    ap.add_argument("--outer-lr", type=float, default=1e-3)
    ap.add_argument("--eval-tasks", type=int, default=600)
    ap.add_argument("--eval-steps", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--time-only", action="store_true",
                    help="skip evaluation; only run the iterations and report speed")
    ap.add_argument("--log-every", type=int, default=50, help="0 disables progress lines")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    ap.add_argument("--selfcheck", action="store_true",
                    help="compare loop and batched meta-gradients on synthetic tasks and exit")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    return selfcheck(args) if args.selfcheck else train(args)


if __name__ == "__main__":
    sys.exit(main())
