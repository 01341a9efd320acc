"""OPTICAL-style token-level optimal-transport distillation (Huang, Yu, Allan, WSDM 2023).

The only module importing POT. For each bitext pair, the frozen teacher's last-layer token
states of the high-resource side and the student's token states of the other side are
L2-normalised; the cost is C_ij = 1 - cos(teacher_i, student_j). Each sentence is a uniform
distribution over its real tokens (padding and special tokens get zero mass). The entropic plan P
comes from POT's batched log-domain Sinkhorn (`ot.solve_batch`, torch backend: all pairs solved
together, no Python loop over pairs) and the loss is <P, C> averaged over pairs.

Gradient modes (`cfg.ot.grad`); both give the student the gradient P of the cost w.r.t. C:
- "detach": the Sinkhorn iterations run on a detached copy of C (no autograd bookkeeping inside
  the solver) and the loss <P, C> differentiates through C with P held constant;
- "envelope": POT's own envelope mode (C stays attached, POT detaches the plan); by the envelope
  theorem P is also the exact gradient of the entropic OT value, so the two modes differ in how
  the solve is run, not in the direction of the update.
"""

from __future__ import annotations

import ot
import torch
import torch.nn.functional as F
from torch import Tensor


def token_cost(teacher: Tensor, student: Tensor) -> Tensor:
    """1 - cos between every teacher and student token: [P,n,H] x [P,m,H] -> [P,n,m]."""
    t = F.normalize(teacher.float(), dim=-1)  # [P,n,H]
    s = F.normalize(student.float(), dim=-1)  # [P,m,H]
    return 1.0 - torch.einsum("pnh,pmh->pnm", t, s)  # [P,n,m]


def uniform_marginals(mask: Tensor) -> Tensor:
    """Uniform mass over the real tokens of each row: [P,T] bool -> [P,T] float, rows sum to 1."""
    m = mask.float()
    return m / m.sum(dim=1, keepdim=True).clamp_min(1.0)


# Mass given to padding inside the solver. Exactly zero would put log(0) = -inf into the
# log-domain iterations, and torch's logsumexp over -inf entries is several times slower on
# CPU (dozens of times under thread contention); 1e-12 keeps every value finite and changes
# the real tokens' plan by ~1e-10, far below the solver's tolerance.
PAD_MASS = 1e-12


def _solver_marginals(m: Tensor, mask: Tensor) -> Tensor:
    w = m + (~mask).float() * PAD_MASS  # [P,T]
    return w / w.sum(dim=1, keepdim=True)


def ot_distill_loss(
    teacher_states: Tensor,
    teacher_mask: Tensor,
    student_states: Tensor,
    student_mask: Tensor,
    *,
    epsilon: float = 0.05,
    max_iter: int = 100,
    tol: float = 1e-6,
    grad: str = "detach",
) -> tuple[Tensor, dict[str, Tensor | int]]:
    """Mean over pairs of <P, C>; returns (loss, {"iters": int, "marginal_err": tensor}).

    teacher_states [P,n,H] (no grad needed), teacher_mask [P,n] bool, student_states [P,m,H],
    student_mask [P,m] bool. Pairs with no real token on either side must be filtered by the
    caller (a uniform distribution over nothing is undefined).
    """
    if grad not in ("detach", "envelope"):
        raise ValueError(f"grad must be 'detach' or 'envelope', got {grad!r}")
    if teacher_states.shape[0] == 0:
        zero = student_states.sum() * 0.0  # keeps the graph so a caller can always backward
        return zero, {"iters": 0, "marginal_err": torch.zeros((), device=student_states.device)}
    cost = token_cost(teacher_states, student_states)  # [P,n,m]
    a = uniform_marginals(teacher_mask)  # [P,n]
    b = uniform_marginals(student_mask)  # [P,m]
    solve_on = cost.detach() if grad == "detach" else cost
    res = ot.solve_batch(
        solve_on, reg=epsilon, a=_solver_marginals(a, teacher_mask), b=_solver_marginals(b, student_mask),
        max_iter=max_iter, tol=tol, method="log_sinkhorn", reg_type="entropy", grad=grad,
    )
    # Padding carried PAD_MASS only; cut it so masked tokens get exactly no plan (and no gradient).
    real = teacher_mask[:, :, None] & student_mask[:, None, :]  # [P,n,m]
    plan = res.plan.detach() * real  # [P,n,m]
    per_pair = (plan * cost).sum(dim=(1, 2))  # [P]  <P, C> with P constant, C live
    loss = per_pair.mean()
    with torch.no_grad():
        # L1 violation of both marginals, worst pair: 0 means the plan is a coupling of a and b.
        err = (plan.sum(2) - a).abs().sum(1) + (plan.sum(1) - b).abs().sum(1)  # [P]
        marginal_err = err.max()
    # POT returns the index of the last iteration it ran.
    return loss, {"iters": int(res.log["n_iter"]) + 1, "marginal_err": marginal_err}


def per_pair_loss(
    teacher_states: Tensor,
    teacher_mask: Tensor,
    student_states: Tensor,
    student_mask: Tensor,
    *,
    epsilon: float = 0.05,
    max_iter: int = 100,
    tol: float = 1e-6,
) -> Tensor:
    """The same loss with one POT `ot.sinkhorn` (log domain) per pair: the benchmark's baseline."""
    values = []
    for i in range(teacher_states.shape[0]):
        cost = token_cost(teacher_states[i : i + 1, teacher_mask[i]], student_states[i : i + 1, student_mask[i]])[0]
        a = torch.full((cost.shape[0],), 1.0 / cost.shape[0], device=cost.device)
        b = torch.full((cost.shape[1],), 1.0 / cost.shape[1], device=cost.device)
        plan = ot.sinkhorn(a, b, cost.detach(), epsilon, method="sinkhorn_log", numItermax=max_iter, stopThr=tol)
        values.append((plan.detach() * cost).sum())
    return torch.stack(values).mean()
