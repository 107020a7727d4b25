"""Reading and writing the memory matrix."""

import torch
from torch.autograd import gradcheck

from ntm.models.ntm import memory

B, H, N, M = 3, 2, 6, 4


def test_read_is_weights_times_memory() -> None:
    gen = torch.Generator().manual_seed(1)
    mem = torch.randn(B, N, M, generator=gen)
    w = torch.softmax(torch.randn(B, H, N, generator=gen), -1)
    expected = torch.stack([w[b] @ mem[b] for b in range(B)])
    torch.testing.assert_close(memory.read(mem, w), expected)


def test_full_erase_on_one_hot_zeroes_exactly_that_row() -> None:
    mem = torch.randn(B, N, M, generator=torch.Generator().manual_seed(2))
    w = torch.zeros(B, 1, N)
    w[..., 3] = 1.0
    out = memory.write(mem, w, torch.ones(B, 1, M), torch.zeros(B, 1, M))
    assert torch.equal(out[:, 3], torch.zeros(B, M))
    others = [i for i in range(N) if i != 3]
    torch.testing.assert_close(out[:, others], mem[:, others])


def test_add_on_one_hot_writes_the_vector() -> None:
    mem = torch.zeros(B, N, M)
    w = torch.zeros(B, 1, N)
    w[..., 5] = 1.0
    add = torch.randn(B, 1, M, generator=torch.Generator().manual_seed(3))
    out = memory.write(mem, w, torch.ones(B, 1, M), add)
    torch.testing.assert_close(out[:, 5], add[:, 0])


def test_all_erases_before_all_adds() -> None:
    """Head 1 erases the row head 0 adds to: the add survives, whatever the head order."""
    mem = torch.full((1, N, M), 2.0)
    w = torch.zeros(1, 2, N)
    w[..., 1] = 1.0
    erase = torch.stack([torch.zeros(1, M), torch.ones(1, M)], 1)
    add = torch.stack([torch.full((1, M), 5.0), torch.zeros(1, M)], 1)
    out = memory.write(mem, w, erase, add)
    torch.testing.assert_close(out[0, 1], torch.full((M,), 5.0))
    swapped = memory.write(mem, w.flip(1), erase.flip(1), add.flip(1))
    torch.testing.assert_close(out, swapped)


def test_gradcheck_read_and_write() -> None:
    gen = torch.Generator().manual_seed(4)
    mem = torch.randn(B, N, M, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.softmax(torch.randn(B, H, N, generator=gen, dtype=torch.float64), -1).requires_grad_()
    erase = torch.rand(B, H, M, generator=gen, dtype=torch.float64, requires_grad=True)
    add = torch.randn(B, H, M, generator=gen, dtype=torch.float64, requires_grad=True)
    assert gradcheck(memory.read, (mem, w))
    assert gradcheck(memory.write, (mem, w, erase, add))
    w1 = w[:, :1].detach().requires_grad_()
    assert gradcheck(memory.write, (mem, w1, erase[:, :1], add[:, :1]))


def test_zero_weights_change_nothing_and_stay_finite() -> None:
    mem = torch.zeros(B, N, M, requires_grad=True)
    w = torch.zeros(B, H, N, requires_grad=True)
    erase = torch.ones(B, H, M, requires_grad=True)
    add = torch.ones(B, H, M, requires_grad=True)
    out = memory.write(mem, w, erase, add)
    assert torch.equal(out, torch.zeros(B, N, M))
    (out.sum() + memory.read(out, w).sum()).backward()
    for t in (mem, w, erase, add):
        assert t.grad is not None and torch.isfinite(t.grad).all()
