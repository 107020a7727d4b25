"""A model and a task from outside the ntm package, as a user's own package holds them."""

import torch
from torch import nn

import ntm


class GRUModel(nn.Module):
    """A GRU and a linear read-out: logits only, no state, no trace, no recipes."""

    def __init__(self, input_size: int, output_size: int, hidden_size: int = 16) -> None:
        super().__init__()
        self.gru = nn.GRU(input_size, hidden_size)
        self.readout = nn.Linear(hidden_size, output_size)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.gru(inputs)  # (T, B, H)
        return self.readout(hidden)  # (T, B, O)


class Echo:
    """Random bit vectors, each to be output one step after it came in."""

    def __init__(self, bits: int = 3, length: int = 4) -> None:
        if length < 2:
            raise ValueError(f"Echo.length = {length}: expected an integer >= 2")
        self.bits = bits
        self.length = length

    @property
    def input_size(self) -> int:
        return self.bits

    @property
    def output_size(self) -> int:
        return self.bits

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> ntm.Batch:
        shape = (self.length, batch_size, self.bits)
        inputs = torch.randint(0, 2, shape, generator=generator).float()
        targets = torch.zeros(shape)
        targets[1:] = inputs[:-1]
        mask = torch.ones(self.length, batch_size, dtype=torch.bool)
        mask[0] = False
        return ntm.Batch(inputs, targets, mask)
