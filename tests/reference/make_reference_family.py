#!/usr/bin/python3
"""Reference fixture for the rest of the MAML family on Conv4: ANIL and the
multi-step loss (MAML++).

Reads the inputs of the Conv4 fixture (theta, the 5-way 1-shot task, inner_lr)
from tests/reference/conv4_fewshot.bin and writes:

  ANIL, for K = 1 and 2 inner steps (the inner loop adapts only the head):
    theta_{k+1} = theta_k - inner_lr * M * grad L_S(theta_k),  M = mask of head.*
    anil_kK_loss [1]   L_Q(theta_K)
    anil_kK_grad [P]   d L_Q(theta_K) / d theta   (body and head)

  The multi-step loss, K = 2, weights MSL_W = (0.3, 0.7):
    F = 0.3 L_Q(theta_1) + 0.7 L_Q(theta_2)
    msl_k2_maml_grad [P]    d F / d theta, exact second order
    msl_k2_fomaml_grad [P]  0.3 grad L_Q(theta_1) + 0.7 grad L_Q(theta_2)

  Meta-SGD, K = 1 and 2: the meta-parameters are (theta, alpha), alpha a rate per
  parameter, all equal to inner_lr here (so the passes are the Conv4 fixture's and keep its
  margins; rates that differ per parameter are covered by test_meta's finite differences):
    theta_{k+1} = theta_k - alpha * grad L_S(theta_k)
    metasgd_kK_grad [2P]    d L_Q(theta_K) / d(theta, alpha), theta's part first

  LSLR (MAML++), K = 2: a rate per inner step and parameter tensor, all inner_lr (same
  reason), after theta as one [2, 18] block (step-major, tensors in theta order):
    lslr_k2_maml_grad [P + 36]   d L_Q(theta_2) / d(theta, rates), exact second order

All by autograd through the inner loop (create_graph) in float64.

Usage:
    /usr/bin/python3 tests/reference/make_reference_family.py tests/reference/conv4_family.bin
    /usr/bin/python3 tests/reference/make_reference_family.py tests/reference/conv4_family.bin --check

Margins: ANIL never moves the body, so every ReLU input and max-pool window
of every pass behind its records is one of the Conv4 fixture's passes at
theta_0; the multi-step loss uses the support passes at theta_0, theta_1 and
the query passes at theta_1, theta_2, which are the Conv4 fixture's own. That
fixture guarantees their margins (>= 1e-4); the head is linear.

--check verifies the gradients against the reverse recursion
lambda <- lambda - H_S(theta_k)(inner_lr * M * lambda) written with explicit
Hessian-vector products, and the directional derivative along a random unit
vector against central differences of the adapted query loss. The file
format is make_reference.py's.
"""

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_reference import check_roundtrip, read_records, rel_err, write_records  # noqa: E402
import make_reference_conv4 as c4  # noqa: E402

torch.set_num_threads(1)
DTYPE = torch.float64
KS = (1, 2)
MSL_W = (0.3, 0.7)


def head_mask():
    """1.0 on head.weight and head.bias, 0.0 on the body, [P]."""
    mask, off = torch.zeros(c4.P, dtype=DTYPE), 0
    for name, shape, _ in c4.LAYOUT:
        n = 1
        for s in shape:
            n *= s
        if name.startswith("head."):
            mask[off:off + n] = 1.0
        off += n
    return mask


def adapt(theta0, xs, ys, k, lr, mask, create_graph):
    t = theta0
    for _ in range(k):
        t = t - lr * mask * c4.grad(t, xs, ys, create_graph=create_graph)
    return t


def anil(theta, xs, ys, xq, yq, k, lr, mask):
    t0 = theta.detach().clone().requires_grad_(True)
    loss = c4.xent(adapt(t0, xs, ys, k, lr, mask, True), xq, yq)
    (g,) = torch.autograd.grad(loss, t0)
    return loss.detach(), g


def load_inputs(path):
    recs = {n: torch.as_tensor(v, dtype=DTYPE) for n, v in read_records(path)}
    config = recs["config"]
    C, H, W, F, ways, ns, nq = (int(x) for x in config[:7])
    assert (C, H, W, F, ways) == (c4.C, c4.H, c4.W, c4.FILTERS, c4.WAYS), "not the Conv4 fixture"
    lr = float(config[7])
    xs = recs["x_support"].reshape(ns, C, H, W)
    xq = recs["x_query"].reshape(nq, C, H, W)
    return recs["theta"], xs, recs["y_support"], xq, recs["y_query"], lr


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("output", help="path of the .bin fixture to write")
    ap.add_argument("--check", action="store_true", help="verify the values numerically")
    ap.add_argument("--conv4", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "conv4_fewshot.bin"),
                    help="the Conv4 fixture whose inputs are used")
    args = ap.parse_args()

    theta, xs, ys, xq, yq, lr = load_inputs(args.conv4)
    mask = head_mask()
    records = []
    for k in KS:
        loss, g = anil(theta, xs, ys, xq, yq, k, lr, mask)
        records += [(f"anil_k{k}_loss", loss.reshape(1)), (f"anil_k{k}_grad", g)]
    full = torch.ones(c4.P, dtype=DTYPE)
    t0 = theta.detach().clone().requires_grad_(True)
    t1 = adapt(t0, xs, ys, 1, lr, full, True)
    t2 = adapt(t1, xs, ys, 1, lr, full, True)
    (g_msl,) = torch.autograd.grad(MSL_W[0] * c4.xent(t1, xq, yq) + MSL_W[1] * c4.xent(t2, xq, yq), t0)
    _, gq1 = c4.loss_and_grad(t1.detach(), xq, yq)
    _, gq2 = c4.loss_and_grad(t2.detach(), xq, yq)
    records += [("msl_k2_maml_grad", g_msl), ("msl_k2_fomaml_grad", MSL_W[0] * gq1 + MSL_W[1] * gq2)]
    for k in KS:
        t0 = theta.detach().clone().requires_grad_(True)
        a0 = torch.full((c4.P,), lr, dtype=DTYPE, requires_grad=True)
        t = t0
        for _ in range(k):
            t = t - a0 * c4.grad(t, xs, ys, create_graph=True)
        g_t, g_a = torch.autograd.grad(c4.xent(t, xq, yq), (t0, a0))
        records.append((f"metasgd_k{k}_grad", torch.cat([g_t, g_a])))
    sizes = []
    for _, shape, _ in c4.LAYOUT:
        n = 1
        for d in shape:
            n *= d
        sizes.append(n)
    rates = torch.full((2, len(sizes)), lr, dtype=DTYPE, requires_grad=True)
    t0 = theta.detach().clone().requires_grad_(True)
    t = t0
    for k in range(2):
        per_param = torch.cat([rates[k, j].expand(n) for j, n in enumerate(sizes)])
        t = t - per_param * c4.grad(t, xs, ys, create_graph=True)
    g_t, g_r = torch.autograd.grad(c4.xent(t, xq, yq), (t0, rates))
    records.append(("lslr_k2_maml_grad", torch.cat([g_t, g_r.flatten()])))
    write_records(args.output, records)
    check_roundtrip(args.output, records)
    print(f"wrote {args.output}: {len(records)} records, P={c4.P}, inner_lr={lr:g}, head {int(mask.sum())} parameters")
    for name, val in records:
        print(f"  {name:16s} [{val.numel():5d}]  norm={float(val.norm()):.9g}")
    if not args.check:
        return 0

    r = dict(records)
    results = []
    for k in KS:
        thetas = [theta]
        for _ in range(k):
            t = thetas[-1].detach().clone().requires_grad_(True)
            thetas.append((thetas[-1] - lr * mask * c4.grad(t, xs, ys)).detach())
        _, lam = c4.loss_and_grad(thetas[-1], xq, yq)
        for j in reversed(range(k)):
            lam = lam - c4.hvp(thetas[j], xs, ys, lr * mask * lam)
        results.append((f"anil_k{k}_grad vs reverse recursion with HVPs", rel_err(r[f"anil_k{k}_grad"], lam)))
        gen = torch.Generator().manual_seed(7 + k)
        u = torch.randn(c4.P, generator=gen, dtype=DTYPE)
        u /= u.norm()

        def post(t):
            return float(c4.xent(adapt(t.detach().clone().requires_grad_(True), xs, ys, k, lr, mask, False), xq, yq))

        eps = 1e-5
        fd = (post(theta + eps * u) - post(theta - eps * u)) / (2 * eps)
        an = float(r[f"anil_k{k}_grad"] @ u)
        e = abs(an - fd) / abs(fd)
        results.append((f"anil_k{k}_grad . u vs FD of L_Q(theta_K) (eps={eps:g})", (e, e)))
        _, g_maml = c4.maml(theta, xs, ys, xq, yq, k)
        results.append((f"anil_k{k}_grad differs from maml_k{k}_grad", rel_err(r[f"anil_k{k}_grad"], g_maml)))
    # The multi-step loss: the reverse recursion with the query gradient of theta_1 joining
    # the adjoint at step 1, and a directional derivative against central differences.
    th = [theta]
    for _ in range(2):
        t = th[-1].detach().clone().requires_grad_(True)
        th.append((th[-1] - lr * c4.grad(t, xs, ys)).detach())
    _, lam = c4.loss_and_grad(th[2], xq, yq)
    lam = MSL_W[1] * lam
    lam = lam - c4.hvp(th[1], xs, ys, lr * lam)
    lam = lam + MSL_W[0] * c4.loss_and_grad(th[1], xq, yq)[1]
    lam = lam - c4.hvp(th[0], xs, ys, lr * lam)
    results.append(("msl_k2_maml_grad vs reverse recursion", rel_err(r["msl_k2_maml_grad"], lam)))
    full = torch.ones(c4.P, dtype=DTYPE)

    def msl_value(t):
        t = t.detach().clone().requires_grad_(True)
        a = adapt(t, xs, ys, 1, lr, full, False)
        b = adapt(a, xs, ys, 1, lr, full, False)
        return float(MSL_W[0] * c4.xent(a, xq, yq) + MSL_W[1] * c4.xent(b, xq, yq))

    gen = torch.Generator().manual_seed(11)
    u = torch.randn(c4.P, generator=gen, dtype=DTYPE)
    u /= u.norm()
    fd = (msl_value(theta + 1e-5 * u) - msl_value(theta - 1e-5 * u)) / 2e-5
    e = abs(float(r["msl_k2_maml_grad"] @ u) - fd) / abs(fd)
    results.append(("msl_k2_maml_grad . u vs FD of F (eps=1e-05)", (e, e)))
    # Meta-SGD at rates all equal to inner_lr: theta's part is MAML's; alpha's part by the
    # reverse recursion d alpha -= grad L_S(theta_k) * lambda_{k+1}.
    for k in KS:
        g = r[f"metasgd_k{k}_grad"]
        _, g_maml = c4.maml(theta, xs, ys, xq, yq, k)
        results.append((f"metasgd_k{k}_grad theta part vs maml_k{k}_grad", rel_err(g[:c4.P], g_maml)))
        th = [theta]
        for _ in range(k):
            t = th[-1].detach().clone().requires_grad_(True)
            th.append((th[-1] - lr * c4.grad(t, xs, ys)).detach())
        _, lam = c4.loss_and_grad(th[k], xq, yq)
        da = torch.zeros(c4.P, dtype=DTYPE)
        for j in reversed(range(k)):
            da = da - c4.loss_and_grad(th[j], xs, ys)[1] * lam
            lam = lam - c4.hvp(th[j], xs, ys, lr * lam)
        results.append((f"metasgd_k{k}_grad alpha part vs reverse recursion", rel_err(g[c4.P:], da)))
    # LSLR at rates all inner_lr: theta's part is MAML's; a rate's part is the metasgd rates'
    # part summed over its tensor.
    g = r["lslr_k2_maml_grad"]
    _, g_maml = c4.maml(theta, xs, ys, xq, yq, 2)
    results.append(("lslr_k2_maml_grad theta part vs maml_k2_grad", rel_err(g[:c4.P], g_maml)))
    th = [theta]
    for _ in range(2):
        t = th[-1].detach().clone().requires_grad_(True)
        th.append((th[-1] - lr * c4.grad(t, xs, ys)).detach())
    _, lam = c4.loss_and_grad(th[2], xq, yq)
    want = torch.zeros(2, len(c4.LAYOUT), dtype=DTYPE)
    for j in reversed(range(2)):
        gs = c4.loss_and_grad(th[j], xs, ys)[1] * lam
        off = 0
        for tau, (_, shape, _) in enumerate(c4.LAYOUT):
            n = 1
            for d in shape:
                n *= d
            want[j, tau] = -gs[off:off + n].sum()
            off += n
        lam = lam - c4.hvp(th[j], xs, ys, lr * lam)
    results.append(("lslr_k2_maml_grad rates part vs reverse recursion", rel_err(g[c4.P:], want.flatten())))
    stored = dict(read_records(args.output))
    worst = max(rel_err(stored[n], v)[1] for n, v in records)
    results.append(("float32 file vs float64 (max over records)", (worst, worst)))
    print("\nchecks (norm-relative, max-abs / max|ref|):")
    for name, (a, b) in results:
        print(f"  {name:52s} {a:.3e}  {b:.3e}")
    bad = [n for n, (a, _) in results if not n.startswith("float32") and "differs" not in n and a > 1e-6]
    bad += [n for n, (a, _) in results if "differs" in n and a < 1e-2]
    if bad:
        print(f"FAILED: {bad}")
        return 1
    print("all checks within 1e-6; ANIL's gradients differ from MAML's by more than 1e-2")
    return 0


if __name__ == "__main__":
    sys.exit(main())
