"""OT distillation loss against POT's single-problem solver, masking, identity and gradients."""

from __future__ import annotations

import ot
import pytest
import torch

from engine.ot_loss import ot_distill_loss, token_cost, uniform_marginals

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def random_case(seed: int, p: int = 5, n: int = 9, m: int = 11, h: int = 24):
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(p, n, h, generator=g)
    s = torch.randn(p, m, h, generator=g)
    tm = torch.ones(p, n, dtype=torch.bool)
    sm = torch.ones(p, m, dtype=torch.bool)
    # Ragged lengths plus "special token" holes at the first position, as real batches have.
    for i in range(p):
        tm[i, int(torch.randint(2, n, (1,), generator=g)) :] = False
        sm[i, int(torch.randint(2, m, (1,), generator=g)) :] = False
    tm[0, 0] = False
    sm[-1, 0] = False
    return t, tm, s, sm


def reference(t, tm, s, sm, eps: float) -> torch.Tensor:
    """Per-pair POT `ot.sinkhorn` (log domain, float64) on the real tokens only, then the mean."""
    vals = []
    for i in range(t.shape[0]):
        c = token_cost(t[i : i + 1, tm[i]], s[i : i + 1, sm[i]])[0].double()
        a = torch.full((c.shape[0],), 1.0 / c.shape[0], dtype=torch.float64)
        b = torch.full((c.shape[1],), 1.0 / c.shape[1], dtype=torch.float64)
        plan = ot.sinkhorn(a, b, c, eps, method="sinkhorn_log", numItermax=20000, stopThr=1e-12)
        vals.append((plan * c).sum())
    return torch.stack(vals).mean()


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("grad", ["detach", "envelope"])
def test_matches_pot_single_problem_sinkhorn(seed: int, grad: str) -> None:
    t, tm, s, sm = random_case(seed)
    loss, stats = ot_distill_loss(t, tm, s, sm, epsilon=0.1, max_iter=2000, tol=1e-7, grad=grad)
    ref = reference(t, tm, s, sm, 0.1)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-4, abs=1e-5)
    assert 1 <= stats["iters"] <= 2000
    assert float(stats["marginal_err"]) < 1e-4


def test_padding_changes_nothing() -> None:
    t, tm, s, sm = random_case(4, p=1)
    loss, _ = ot_distill_loss(t, tm, s, sm, epsilon=0.1, max_iter=2000, tol=1e-7)
    # Extra padded positions with arbitrary states must carry no mass.
    t2 = torch.cat([t, 5 * torch.randn(1, 6, t.shape[2])], 1)
    tm2 = torch.cat([tm, torch.zeros(1, 6, dtype=torch.bool)], 1)
    loss2, _ = ot_distill_loss(t2, tm2, s, sm, epsilon=0.1, max_iter=2000, tol=1e-7)
    assert loss2.item() == pytest.approx(loss.item(), rel=1e-5)


def test_near_zero_for_identical_inputs() -> None:
    t, tm, _, _ = random_case(5, h=64)
    loss, _ = ot_distill_loss(t, tm, t.clone(), tm.clone(), epsilon=0.01, max_iter=500, tol=1e-7)
    assert abs(loss.item()) < 1e-4
    other, _ = ot_distill_loss(t, tm, torch.randn_like(t), tm, epsilon=0.01, max_iter=500, tol=1e-7)
    assert other.item() > 0.5  # unrelated random tokens: cosine ~0, cost ~1


@pytest.mark.parametrize("grad", ["detach", "envelope"])
def test_gradients_reach_student_never_teacher(grad: str) -> None:
    t, tm, s, sm = random_case(6)
    teacher = torch.nn.Linear(t.shape[2], t.shape[2])
    teacher.requires_grad_(False)
    student = torch.nn.Linear(s.shape[2], s.shape[2])
    with torch.no_grad():
        t_states = teacher(t)
    loss, _ = ot_distill_loss(t_states, tm, student(s), sm, epsilon=0.05, grad=grad)
    loss.backward()
    assert student.weight.grad is not None and student.weight.grad.abs().sum() > 0
    assert torch.isfinite(student.weight.grad).all()
    assert teacher.weight.grad is None


def test_gradient_is_the_plan() -> None:
    # d<P, C>/dC = P: a step along -grad must lower the cost of the same plan.
    t, tm, s, sm = random_case(7)
    s = s.clone().requires_grad_(True)
    loss, _ = ot_distill_loss(t, tm, s, sm, epsilon=0.05, max_iter=500)
    loss.backward()
    assert s.grad[~sm].abs().max() == 0  # masked tokens receive no gradient
    with torch.no_grad():
        lower, _ = ot_distill_loss(t, tm, s - 0.5 * s.grad / s.grad.norm(), sm, epsilon=0.05,
                                   max_iter=500)
    assert lower.item() < loss.item()


def test_empty_pair_set_is_a_zero_with_graph() -> None:
    s = torch.randn(0, 4, 8, requires_grad=True)
    loss, stats = ot_distill_loss(torch.randn(0, 3, 8), torch.ones(0, 3, dtype=torch.bool), s,
                                  torch.ones(0, 4, dtype=torch.bool))
    assert loss.item() == 0.0 and stats["iters"] == 0
    loss.backward()


def test_uniform_marginals() -> None:
    m = torch.tensor([[True, True, False, True], [False, True, False, False]])
    u = uniform_marginals(m)
    assert torch.allclose(u, torch.tensor([[1 / 3, 1 / 3, 0, 1 / 3], [0, 1.0, 0, 0]]))
