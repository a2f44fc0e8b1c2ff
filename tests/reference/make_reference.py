#!/usr/bin/python3
"""Reference fixture for the MLP / sinusoid MAML tests.

Writes one binary file holding a fixed parameter vector, a fixed sinusoid
task and the quantities the C code must reproduce: support/query losses, the
support gradient, a Hessian-vector product, and MAML / FOMAML / Reptile
meta-gradients for K = 1 and K = 3 inner steps.

Usage:
    /usr/bin/python3 tests/reference/make_reference.py tests/reference/mlp_sinusoid.bin
    /usr/bin/python3 tests/reference/make_reference.py tests/reference/mlp_sinusoid.bin --check

--check additionally verifies the stored values numerically (finite
differences and closed forms) and prints the worst relative differences.

Model: MLP 1-40-40-1 with ReLU, loss = mean squared error.
Flat parameter layout (P = 1761), PyTorch storage order:
    fc1.weight [40,1], fc1.bias [40], fc2.weight [40,40], fc2.bias [40],
    head.weight [1,40], head.bias [1]
Weights are (out, in) row-major.

File format: a plain concatenation of records, little-endian:
    char  name[32]   ASCII, NUL-padded
    int32 count
    float32 values[count]

Records, in order:
    config        [in, hidden, out, n_support, n_query, inner_lr]
    theta [P], v [P]
    x_support, y_support, x_query, y_query  [10 each]
    loss_support [1], grad_support [P], hvp_support [P], loss_query [1]
    for K in (1, 3):
        maml_kK_loss [1]     query loss at theta_K
        maml_kK_grad [P]     exact second-order d L_query(theta_K) / d theta
        fomaml_kK_grad [P]   grad L_query(theta_K), inner gradients held constant
        reptile_kK_grad [P]  theta - theta_K

All quantities are computed in float64 from the float32-rounded inputs
(theta, v, x, y), so the stored outputs are the float64 answers for exactly
the inputs stored in the file, rounded once to float32.
"""

import argparse
import math
import struct
import sys

import numpy as np
import torch

torch.set_num_threads(1)

DTYPE = torch.float64

IN, HIDDEN, OUT = 1, 40, 1
N_SUPPORT, N_QUERY = 10, 10
INNER_LR = 0.01
KS = (1, 3)
SEED = 20170703

# (name, shape, fan_in) for every parameter tensor, in flat-vector order.
LAYOUT = [
    ("fc1.weight", (HIDDEN, IN), IN),
    ("fc1.bias", (HIDDEN,), IN),
    ("fc2.weight", (HIDDEN, HIDDEN), HIDDEN),
    ("fc2.bias", (HIDDEN,), HIDDEN),
    ("head.weight", (OUT, HIDDEN), HIDDEN),
    ("head.bias", (OUT,), HIDDEN),
]
P = sum(math.prod(shape) for _, shape, _ in LAYOUT)
assert P == 1761

NAME_LEN = 32


# ---------------------------------------------------------------------------
# Model: functional MLP on a flat parameter vector
# ---------------------------------------------------------------------------

def unflatten(theta):
    """Split a flat [P] vector into the six parameter tensors (views)."""
    out, off = [], 0
    for _, shape, _ in LAYOUT:
        n = math.prod(shape)
        out.append(theta[off:off + n].view(shape))
        off += n
    return out


def forward(theta, x):
    """x: [N] -> predictions [N]."""
    w1, b1, w2, b2, w3, b3 = unflatten(theta)
    h = torch.relu(x.unsqueeze(1) @ w1.t() + b1)
    h = torch.relu(h @ w2.t() + b2)
    return (h @ w3.t() + b3).squeeze(1)


def mse(theta, x, y):
    return ((forward(theta, x) - y) ** 2).mean()


def grad(theta, x, y, create_graph=False):
    """Gradient of the MSE w.r.t. a flat theta (theta must require grad)."""
    (g,) = torch.autograd.grad(mse(theta, x, y), theta, create_graph=create_graph)
    return g


# ---------------------------------------------------------------------------
# Reference quantities
# ---------------------------------------------------------------------------

def loss_and_grad(theta, x, y):
    t = theta.detach().clone().requires_grad_(True)
    loss = mse(t, x, y)
    (g,) = torch.autograd.grad(loss, t)
    return loss.detach(), g


def hvp(theta, x, y, v):
    """Exact H(theta) v by double backprop."""
    t = theta.detach().clone().requires_grad_(True)
    g = grad(t, x, y, create_graph=True)
    (hv,) = torch.autograd.grad(g @ v, t)
    return hv


def adapt(theta0, xs, ys, k, create_graph):
    """K steps of SGD on the support set; differentiable if create_graph."""
    t = theta0
    for _ in range(k):
        g = grad(t, xs, ys, create_graph=create_graph)
        t = t - INNER_LR * g
    return t


def maml(theta, xs, ys, xq, yq, k):
    """Query loss at theta_K and the exact second-order meta-gradient."""
    t0 = theta.detach().clone().requires_grad_(True)
    tk = adapt(t0, xs, ys, k, create_graph=True)
    loss = mse(tk, xq, yq)
    (g,) = torch.autograd.grad(loss, t0)
    return loss.detach(), g


def fomaml(theta, xs, ys, xq, yq, k):
    """First-order MAML: gradient of the query loss at theta_K."""
    t0 = theta.detach().clone().requires_grad_(True)
    tk = adapt(t0, xs, ys, k, create_graph=False).detach().requires_grad_(True)
    return grad(tk, xq, yq)


def reptile(theta, xs, ys, k):
    """Reptile meta-gradient: theta - theta_K (adapted on the support set)."""
    t0 = theta.detach().clone().requires_grad_(True)
    tk = adapt(t0, xs, ys, k, create_graph=False)
    return (theta - tk).detach()


# ---------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------

def f32(t):
    """Round to float32 and back, so the reference uses exactly the stored inputs."""
    return t.to(torch.float32).to(DTYPE)


def make_inputs():
    gen = torch.Generator().manual_seed(SEED)

    def uniform(shape, lo, hi):
        return lo + (hi - lo) * torch.rand(shape, generator=gen, dtype=DTYPE)

    # theta: each Linear's weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    parts = []
    for _, shape, fan_in in LAYOUT:
        bound = 1.0 / math.sqrt(fan_in)
        parts.append(uniform(shape, -bound, bound).flatten())
    theta = f32(torch.cat(parts))

    # One task: y = A sin(x - phi), A ~ U[0.1, 5], phi ~ U[0, pi], x ~ U[-5, 5].
    amp = float(uniform((), 0.1, 5.0))
    phase = float(uniform((), 0.0, math.pi))
    xs = f32(uniform((N_SUPPORT,), -5.0, 5.0))
    xq = f32(uniform((N_QUERY,), -5.0, 5.0))
    ys = f32(amp * torch.sin(xs - phase))
    yq = f32(amp * torch.sin(xq - phase))

    # Random direction for the Hessian-vector product.
    v = f32(torch.randn((P,), generator=gen, dtype=DTYPE))
    return theta, v, xs, ys, xq, yq, amp, phase


def compute_records():
    """Return the ordered list of (name, float64 tensor) records and task info."""
    theta, v, xs, ys, xq, yq, amp, phase = make_inputs()
    config = torch.tensor([IN, HIDDEN, OUT, N_SUPPORT, N_QUERY, INNER_LR], dtype=DTYPE)

    loss_s, grad_s = loss_and_grad(theta, xs, ys)
    loss_q, _ = loss_and_grad(theta, xq, yq)
    records = [
        ("config", config),
        ("theta", theta), ("v", v),
        ("x_support", xs), ("y_support", ys),
        ("x_query", xq), ("y_query", yq),
        ("loss_support", loss_s.reshape(1)),
        ("grad_support", grad_s),
        ("hvp_support", hvp(theta, xs, ys, v)),
        ("loss_query", loss_q.reshape(1)),
    ]
    for k in KS:
        loss_k, g_maml = maml(theta, xs, ys, xq, yq, k)
        records += [
            (f"maml_k{k}_loss", loss_k.reshape(1)),
            (f"maml_k{k}_grad", g_maml),
            (f"fomaml_k{k}_grad", fomaml(theta, xs, ys, xq, yq, k)),
            (f"reptile_k{k}_grad", reptile(theta, xs, ys, k)),
        ]
    return records, (amp, phase)


# ---------------------------------------------------------------------------
# File I/O
# ---------------------------------------------------------------------------

def write_records(path, records):
    with open(path, "wb") as f:
        for name, values in records:
            raw = name.encode("ascii")
            assert len(raw) < NAME_LEN, name
            arr = np.asarray(values.detach().cpu().numpy(), dtype="<f4").ravel()
            f.write(struct.pack("<32si", raw, arr.size))  # pads name with NULs
            f.write(arr.tobytes())


def read_records(path):
    """Standalone reader: returns an ordered list of (name, float32 array)."""
    out = []
    with open(path, "rb") as f:
        data = f.read()
    off = 0
    header = struct.Struct("<32si")
    while off < len(data):
        raw, count = header.unpack_from(data, off)
        off += header.size
        name = raw.split(b"\0", 1)[0].decode("ascii")
        assert count >= 0 and off + 4 * count <= len(data), f"truncated record {name}"
        out.append((name, np.frombuffer(data, dtype="<f4", count=count, offset=off).copy()))
        off += 4 * count
    return out


def check_roundtrip(path, records):
    back = read_records(path)
    assert [n for n, _ in back] == [n for n, _ in records], "record names differ"
    for (name, ref), (_, got) in zip(records, back):
        expect = ref.detach().numpy().astype(np.float32).ravel()
        assert got.shape == expect.shape, f"{name}: shape {got.shape} != {expect.shape}"
        assert np.array_equal(got, expect), f"{name}: values differ after reading back"


# ---------------------------------------------------------------------------
# Numerical verification (--check)
# ---------------------------------------------------------------------------

def rel_err(a, b):
    """(norm-relative error, max-abs error / max |b|)."""
    a = torch.as_tensor(a, dtype=DTYPE)
    b = torch.as_tensor(b, dtype=DTYPE)
    scale = b.abs().max().clamp_min(1e-300)
    return float((a - b).norm() / b.norm().clamp_min(1e-300)), float((a - b).abs().max() / scale)


def run_checks(rec64, file_recs):
    r = dict(rec64)
    f = {n: torch.as_tensor(a, dtype=DTYPE) for n, a in file_recs}
    theta, v = r["theta"], r["v"]
    xs, ys, xq, yq = r["x_support"], r["y_support"], r["x_query"], r["y_query"]
    results = []

    # 1. HVP vs central differences of the support gradient along v.
    best = None
    for eps in (1e-4, 1e-5, 1e-6, 1e-7):
        _, gp = loss_and_grad(theta + eps * v, xs, ys)
        _, gm = loss_and_grad(theta - eps * v, xs, ys)
        fd = (gp - gm) / (2 * eps)
        e = rel_err(r["hvp_support"], fd)
        if best is None or e[0] < best[1][0]:
            best = (eps, e)
    results.append((f"hvp vs central FD of grad (eps={best[0]:g})", best[1]))

    # 2. MAML K=1 vs closed form (I - alpha H_S(theta)) grad L_Q(theta_1).
    theta1 = theta - INNER_LR * r["grad_support"]
    _, gq1 = loss_and_grad(theta1, xq, yq)
    closed = gq1 - INNER_LR * hvp(theta, xs, ys, gq1)
    results.append(("maml_k1_grad vs (I - a H_S) gQ(theta_1)", rel_err(r["maml_k1_grad"], closed)))

    # 3. FOMAML K=1 is grad L_Q(theta_1); Reptile K=1 is alpha * grad L_S(theta).
    results.append(("fomaml_k1_grad vs gQ(theta_1)", rel_err(r["fomaml_k1_grad"], gq1)))
    results.append(("reptile_k1_grad vs a*grad_support",
                    rel_err(r["reptile_k1_grad"], INNER_LR * r["grad_support"])))

    # 4. Directional derivative of the K-step query loss vs central differences.
    def post_loss(t, k):
        t = t.detach().clone().requires_grad_(True)
        return float(mse(adapt(t, xs, ys, k, create_graph=False), xq, yq))

    u = v / v.norm()
    for k in KS:
        best = None
        for eps in (1e-3, 1e-4, 1e-5, 1e-6):
            fd = (post_loss(theta + eps * u, k) - post_loss(theta - eps * u, k)) / (2 * eps)
            an = float(r[f"maml_k{k}_grad"] @ u)
            e = abs(an - fd) / max(abs(fd), 1e-300)
            if best is None or e < best[1]:
                best = (eps, e, an, fd)
        results.append((f"maml_k{k}_grad . u vs FD of L_Q(theta_K) (eps={best[0]:g})",
                        (best[1], best[1])))

    # 5. Distance of every ReLU pre-activation from the kink, at theta_0..theta_K
    #    on both sets. A float32 implementation only matches if no unit flips
    #    sign under rounding, so this margin should stay well above ~1e-6.
    def min_preact(t, x):
        w1, b1, w2, b2, _, _ = unflatten(t)
        z1 = x.unsqueeze(1) @ w1.t() + b1
        z2 = torch.relu(z1) @ w2.t() + b2
        return min(float(z1.abs().min()), float(z2.abs().min()))

    t, margin = theta, math.inf
    for _ in range(max(KS) + 1):
        margin = min(margin, min_preact(t, xs), min_preact(t, xq))
        t = t - INNER_LR * loss_and_grad(t, xs, ys)[1]
    print(f"\nmin |ReLU pre-activation| over theta_0..theta_{max(KS)}: {margin:.3e}")

    # 6. Stored float32 values vs the float64 answers (rounding only).
    worst = max(rel_err(f[n], r[n])[1] for n, _ in rec64)
    results.append(("float32 file vs float64 (max over records)", (worst, worst)))

    print("\nchecks (norm-relative, max-abs / max|ref|):")
    for name, (a, b) in results:
        print(f"  {name:58s} {a:.3e}  {b:.3e}")
    tol = 1e-6
    bad = [n for n, (a, b) in results if not n.startswith("float32") and a > tol]
    if bad:
        print(f"FAILED (> {tol:g}): {bad}")
        return False
    print(f"all checks within {tol:g}")
    return True


# ---------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("output", help="path of the .bin fixture to write")
    ap.add_argument("--check", action="store_true", help="verify the values numerically")
    args = ap.parse_args()

    records, (amp, phase) = compute_records()
    write_records(args.output, records)
    check_roundtrip(args.output, records)

    print(f"wrote {args.output}: {len(records)} records, P={P}")
    print(f"task: A={amp:.6f} phase={phase:.6f}")
    for name, val in records:
        if val.numel() <= 6:
            vals = " ".join(f"{x:.9g}" for x in val.tolist())
            print(f"  {name:20s} [{val.numel():4d}]  {vals}")
        else:
            print(f"  {name:20s} [{val.numel():4d}]  norm={float(val.norm()):.9g}")

    if args.check:
        ok = run_checks(records, read_records(args.output))
        return 0 if ok else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
