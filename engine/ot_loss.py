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

The embedding half (`distill_loss`) turns one micro-batch's translation pairs into those token
states: it takes any `Encoder` (engine.models.encoders.Encoder is the real one).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import ot
import torch
import torch.nn.functional as F
from torch import Tensor

if TYPE_CHECKING:
    from engine.batching import OTPair
    from engine.config import Config
    from engine.data.loaders import BitextPair


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
        solve_on, reg=epsilon, a=_solver_marginals(a, teacher_mask),
        b=_solver_marginals(b, student_mask),
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


# ---------------------------------------------------------------- the embedding half


class Encoder(Protocol):
    """What the loss and the evaluation need of an encoder (engine.models.encoders.Encoder)."""

    def tokenize(self, texts: Sequence[str], kind: str,
                 max_length: int | None = None) -> dict[str, Tensor]: ...
    def token_states(self, batch: dict[str, Tensor]) -> Tensor: ...
    def content_mask(self, batch: dict[str, Tensor]) -> Tensor: ...
    def embed(self, texts: Sequence[str], kind: str, batch_size: int = 64,
              max_length: int | None = None,
              progress: Callable[[int, int], None] | None = None) -> Tensor: ...


def _pad_time(x: Tensor, t: int) -> Tensor:
    """Right-pad dim 1 (tokens) of [P,T,...] to length t (zeros / False)."""
    pad = [0, 0] * (x.dim() - 2) + [0, t - x.shape[1]]
    return F.pad(x, pad)


def _stack_groups(groups: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    """Concatenate (states [P_i,T_i,H], mask [P_i,T_i]) groups of different lengths into one
    batch."""
    t = max(s.shape[1] for s, _ in groups)
    states = torch.cat([_pad_time(s, t) for s, _ in groups])  # [P,T,H]
    mask = torch.cat([_pad_time(m, t) for _, m in groups])  # [P,T]
    return states, mask


def distill_loss(student: Encoder, teacher: Encoder, pairs: Sequence[OTPair],
                 q: tuple[Tensor, dict[str, Tensor]], a: tuple[Tensor, dict[str, Tensor]],
                 tatoeba: Sequence[BitextPair], cfg: Config,
                 amp: Any = None) -> tuple[Tensor, dict[str, Tensor | int]]:
    """OT term for one micro-batch: batch pairs reuse the task forward's student states
    (q = (states [B,Tq,H], tokens), a likewise); Tatoeba pairs get their own student forward."""
    oc = cfg.ot
    amp = amp or contextlib.nullcontext()
    student_groups, teacher_batches = [], []
    for side, (states, tok), kind in (("question", q, "query"), ("answer", a, "passage")):
        rows = [p.row for p in pairs if p.side == side]
        if rows:
            idx = torch.tensor(rows, device=states.device)
            # [p,T,H], [p,T]
            student_groups.append((states[idx], student.content_mask(tok)[idx]))
            texts = [p.teacher_text for p in pairs if p.side == side]
            teacher_batches.append(teacher.tokenize(texts, kind))
    if tatoeba:
        sb = student.tokenize([p.tgt for p in tatoeba], "plain")
        with amp:  # [n,T,H], [n,T]
            student_groups.append((student.token_states(sb), student.content_mask(sb)))
        teacher_batches.append(teacher.tokenize([p.src for p in tatoeba], "plain"))
    if not student_groups:  # e.g. a monolingual batch in the teacher language: nothing to distil
        zero = q[0].sum() * 0.0
        # + 0.0: no "-0.0" in logs
        return zero + 0.0, {"iters": 0, "marginal_err": torch.zeros(())}
    with torch.no_grad(), amp:
        teacher_groups = [(teacher.token_states(tb), teacher.content_mask(tb))
                          for tb in teacher_batches]
    s_states, s_mask = _stack_groups(student_groups)  # [P,Ts,H], [P,Ts]
    t_states, t_mask = _stack_groups(teacher_groups)  # [P,Tt,H], [P,Tt]
    keep = s_mask.any(1) & t_mask.any(1)  # a sentence with no real token has no distribution
    return ot_distill_loss(t_states[keep], t_mask[keep], s_states[keep], s_mask[keep],
                           epsilon=oc.epsilon, max_iter=oc.max_iter, tol=oc.tol, grad=oc.grad)
