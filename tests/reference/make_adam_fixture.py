#!/usr/bin/python3
"""Reference fixture for mt_adam_step (src/optim.c): PyTorch's Adam, step by step.

Runs torch.optim.Adam (float32, amsgrad=False, weight_decay=0, foreach=False, maximize=False:
the single-tensor path) on one float32 parameter vector of N values for STEPS steps with a
fixed sequence of gradients, for each of the configurations in CONFIGS, and stores the
initial theta, every gradient and theta / exp_avg (m) / exp_avg_sq (v) after every step.
tests/test_reference.c replays the gradients through mt_adam_step and compares; it never
needs Python.

Usage:
    /usr/bin/python3 tests/reference/make_adam_fixture.py tests/reference/adam_steps.bin

Hyper-parameters: metatrain holds lr, beta1, beta2 and eps as float32 (mt_adam_config), so
the fixture stores those float32 values and hands exactly those numbers (as Python floats)
to torch. torch forms 1 - beta in double and rounds it to float32; for a float32 beta that
difference is exact, so it equals metatrain's 1.0f - beta. (Given the nominal decimal beta
instead, torch's 1 - beta differs from metatrain's by the rounding of beta to float32: for
beta2 = 0.99999 that is 1.4e-4 of v. The script prints that difference for each
configuration; bias correction compensates it in theta.)

Gradients (the same for every configuration), by entry:
    0        always zero (theta never moves, m = v = 0)
    1        1e-20 every step (g*g underflows to a subnormal float32)
    2        +-1e-20, sign alternating
    3        1e4 every step
    4        +-1e4, sign alternating
    5        zero for the first 10 steps, then 1
    6        1e4 at step 1, zero after
    7        1e4 at odd steps, 1e-20 at even steps
    8        magnitude 1, sign flipping every 3 steps
    9..N-1   random: normal * 10^uniform(-3, 3), random sign, zero with probability 0.15
theta0: uniform(-1, 1), with theta0[0] = 0 and theta0[3] = 100.

File format: the records of make_reference.py (little-endian):
    char name[32] (NUL-padded ASCII)   int32 count   float32 values[count]
Records, in order:
    config          [n_configs, N, STEPS]
    theta0 [N]
    grads [STEPS * N]                 gradient of step t (1-based) at [(t-1) * N]
    for each configuration c = 0, 1, ...:
        cC_hyper [4]                  lr, beta1, beta2, eps
        cC_theta [STEPS * N]          theta after step t at [(t-1) * N]
        cC_m [STEPS * N]              exp_avg after step t
        cC_v [STEPS * N]              exp_avg_sq after step t
"""

import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_reference  # noqa: E402  (the record format)

torch.set_num_threads(1)

N = 37
STEPS = 20
SEED = 20150101  # Kingma & Ba

# (label, lr, beta1, beta2, eps)
CONFIGS = [
    ("defaults", 1e-3, 0.9, 0.999, 1e-8),
    ("large lr", 0.5, 0.9, 0.999, 1e-8),
    ("beta2 near 1", 1e-3, 0.9, 0.99999, 1e-8),
    ("eps 1e-4", 1e-2, 0.8, 0.99, 1e-4),
    ("beta1 = 0", 3e-3, 0.0, 0.999, 1e-8),
]


def f32(x):
    """The float32 value nearest x, as a Python float."""
    return float(np.float32(x))


def make_inputs():
    rng = np.random.RandomState(SEED)
    theta0 = rng.uniform(-1.0, 1.0, size=N).astype(np.float32)
    theta0[0] = 0.0
    theta0[3] = 100.0
    g = np.zeros((STEPS, N), dtype=np.float64)
    for t in range(STEPS):  # t = step - 1
        g[t, 0] = 0.0
        g[t, 1] = 1e-20
        g[t, 2] = 1e-20 if t % 2 == 0 else -1e-20
        g[t, 3] = 1e4
        g[t, 4] = 1e4 if t % 2 == 0 else -1e4
        g[t, 5] = 0.0 if t < 10 else 1.0
        g[t, 6] = 1e4 if t == 0 else 0.0
        g[t, 7] = 1e4 if t % 2 == 0 else 1e-20
        g[t, 8] = 1.0 if (t // 3) % 2 == 0 else -1.0
    rest = N - 9
    mag = rng.standard_normal((STEPS, rest)) * 10.0 ** rng.uniform(-3.0, 3.0, size=(STEPS, rest))
    zero = rng.uniform(size=(STEPS, rest)) < 0.15
    g[:, 9:] = np.where(zero, 0.0, mag)
    return theta0, g.astype(np.float32)


def run_torch(theta0, grads, lr, beta1, beta2, eps):
    """theta, m, v after every step, each [STEPS, N] float32."""
    p = torch.nn.Parameter(torch.from_numpy(theta0.copy()))
    opt = torch.optim.Adam([p], lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=0.0,
                           amsgrad=False, foreach=False, maximize=False)
    out = {k: np.zeros((STEPS, N), dtype=np.float32) for k in ("theta", "m", "v")}
    for t in range(STEPS):
        p.grad = torch.from_numpy(grads[t].copy())
        opt.step()
        st = opt.state[p]
        out["theta"][t] = p.detach().numpy()
        out["m"][t] = st["exp_avg"].numpy()
        out["v"][t] = st["exp_avg_sq"].numpy()
    return out


def run_float64(theta0, grads, lr, beta1, beta2, eps):
    """The same steps in float64 (the formulas of torch's _single_tensor_adam)."""
    th = theta0.astype(np.float64)
    m = np.zeros(N)
    v = np.zeros(N)
    out = {k: np.zeros((STEPS, N)) for k in ("theta", "m", "v")}
    for t in range(1, STEPS + 1):
        g = grads[t - 1].astype(np.float64)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        step_size = lr / (1 - beta1 ** t)
        denom = np.sqrt(v) / np.sqrt(1 - beta2 ** t) + eps
        th = th - step_size * m / denom
        out["theta"][t - 1], out["m"][t - 1], out["v"][t - 1] = th, m, v
    return out


def rel(a, b):
    """Worst elementwise |a - b| / |b| over entries with b != 0."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    nz = b != 0
    return float(np.max(np.abs(a[nz] - b[nz]) / np.abs(b[nz]))) if nz.any() else 0.0


def write_records(path, records):
    """make_reference's record format (a name, a count, float32 values) for numpy arrays."""
    for name, values in records:
        assert np.all(np.isfinite(np.asarray(values, dtype=np.float32))), name
    make_reference.write_records(path, [(n, torch.as_tensor(np.asarray(v, dtype=np.float32))) for n, v in records])


read_records = make_reference.read_records


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("output")
    args = ap.parse_args()

    theta0, grads = make_inputs()
    records = [("config", [len(CONFIGS), N, STEPS]), ("theta0", theta0), ("grads", grads)]
    print(f"torch {torch.__version__}, N={N}, STEPS={STEPS}")
    print(f"{'configuration':14s} {'f32 vs f64: theta':>18s} {'m':>9s} {'v':>9s}"
          f"   {'nominal beta: theta':>20s} {'m':>9s} {'v':>9s}")
    for c, (label, lr, b1, b2, eps) in enumerate(CONFIGS):
        hyper = [f32(lr), f32(b1), f32(b2), f32(eps)]
        ref = run_torch(theta0, grads, *hyper)
        d64 = run_float64(theta0, grads, *hyper)
        nominal = run_torch(theta0, grads, lr, b1, b2, eps)
        print(f"{label:14s} {rel(ref['theta'], d64['theta']):18.2e} {rel(ref['m'], d64['m']):9.2e} "
              f"{rel(ref['v'], d64['v']):9.2e}   {rel(nominal['theta'], ref['theta']):20.2e} "
              f"{rel(nominal['m'], ref['m']):9.2e} {rel(nominal['v'], ref['v']):9.2e}")
        records += [(f"c{c}_hyper", hyper), (f"c{c}_theta", ref["theta"]), (f"c{c}_m", ref["m"]),
                    (f"c{c}_v", ref["v"])]
    write_records(args.output, records)
    back = read_records(args.output)
    assert [n for n, _ in back] == [n for n, _ in records]
    for (name, want), (_, got) in zip(records, back):
        assert np.array_equal(got, np.asarray(want, dtype=np.float32).ravel()), name
    print(f"wrote {args.output}: {len(records)} records")
    return 0


if __name__ == "__main__":
    sys.exit(main())
