"""The NTM's rivals on the same contract: the Transformer (each position encoding), Mamba,
the MQAR token task and its scoring. The contract itself (shapes, resume, two processes,
``--init-from``, eval) is tested for every registered model in test_contract.py."""

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import ntm
from ntm import cli
from ntm.engines import native
from ntm.models import transformer, xlstm
from ntm.models.mamba import MambaModel
from ntm.models.transformer import TransformerModel
from ntm.models.xlstm import XLSTMModel
from ntm.tasks import BITS, TOKENS, loss_tokens, scoring, wrong_tokens_each
from ntm.tasks.mqar import MQARTask

SMALL = {"d_model": 16, "num_layers": 2, "num_heads": 2, "ff_size": 32}


def _causal(model: torch.nn.Module, size: int) -> None:
    """The output at step t depends on steps 0..t only."""
    torch.manual_seed(0)
    inputs = torch.randn(12, 3, size)
    changed = inputs.clone()
    changed[7:] = torch.randn(5, 3, size)
    model.eval()
    with torch.no_grad():
        before, after = model(inputs), model(changed)
    torch.testing.assert_close(before[:7], after[:7])
    assert not torch.allclose(before[7:], after[7:])


@pytest.mark.parametrize("position", transformer.POSITIONS)
def test_the_transformer_is_causal_with_every_position_encoding(position: str) -> None:
    _causal(TransformerModel(5, 4, position=position, **SMALL), 5)


@pytest.mark.parametrize("engine", ["native", "eager"])
def test_mamba_is_causal(engine: str) -> None:
    model = MambaModel(5, 4, d_model=16, num_layers=2, d_state=4, engine=engine)
    if engine == "native" and native.native_available() is not None:
        pytest.skip(f"native engine: {native.native_available()}")
    assert model.engine_for(torch.device("cpu"), torch.float32).engine == engine
    _causal(model, 5)


@pytest.mark.parametrize("engine", ["native", "eager"])
@pytest.mark.parametrize("slstm_at", ["", "1"])
def test_xlstm_is_causal_with_and_without_slstm_blocks(slstm_at: str, engine: str) -> None:
    if engine == "native" and native.native_available() is not None:
        pytest.skip(f"native engine: {native.native_available()}")
    model = XLSTMModel(5, 4, d_model=16, num_layers=2, num_heads=2, slstm_at=slstm_at,
                       engine=engine)  # fmt: skip
    assert model.engine_for(torch.device("cpu"), torch.float32).engine == engine
    _causal(model, 5)


@pytest.mark.parametrize("slstm_at", ["", "0"])
def test_xlstm_on_the_native_engine_computes_the_packages_blocks_with_their_gradients(
    slstm_at: str,
) -> None:
    if native.native_available() is not None:
        pytest.skip(f"native engine: {native.native_available()}")
    torch.manual_seed(0)
    model = XLSTMModel(5, 3, d_model=16, num_heads=2, conv_width=3, slstm_at=slstm_at)
    with torch.no_grad():  # away from the initial values (each norm's scale starts at one)
        for parameter in model.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    assert "engine='auto'" in repr(model)
    assert model.engine_for(torch.device("cpu"), torch.float32).engine == "native"
    inputs = torch.randn(13, 4, 5)
    runs = {}
    for engine in ("native", "eager"):
        model.engine = engine
        model.zero_grad()
        outputs = model(inputs)
        outputs.square().sum().backward()
        runs[engine] = outputs.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}
    (outputs, grads), (expected, expected_grads) = runs["native"], runs["eager"]
    torch.testing.assert_close(outputs, expected, atol=1e-5, rtol=1e-4)
    for name, want in expected_grads.items():
        scale = want.abs().max().item()
        torch.testing.assert_close(
            grads[name], want, atol=1e-5 * max(scale, 1e-3), rtol=1e-3, msg=name
        )


@pytest.mark.parametrize("slstm_at", ["", "1"])
def test_xlstm_steps_long_sequences_without_gradients_to_the_same_outputs(
    slstm_at: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.manual_seed(0)
    model = XLSTMModel(3, 2, d_model=16, num_heads=2, slstm_at=slstm_at).eval()
    inputs = torch.randn(30, 4, 3)
    parallel = model(inputs).detach()
    monkeypatch.setattr(xlstm, "PARALLEL_BYTES", 0)  # every sequence counts as long
    stepped = []
    monkeypatch.setattr(
        model, "stepped", lambda x: stepped.append(x) or XLSTMModel.stepped(model, x)
    )
    with torch.no_grad():
        torch.testing.assert_close(model(inputs), parallel, atol=1e-5, rtol=1e-5)
    assert len(stepped) == 1
    model(inputs)  # with gradients: the parallel form, whatever the length
    assert len(stepped) == 1


def test_xlstm_builds_the_blocks_asked_and_refuses_bad_settings_by_name() -> None:
    kinds = [type(b).__name__ for b in XLSTMModel(3, 2, d_model=16, slstm_at="1").backbone.blocks]
    assert kinds == ["mLSTMBlock", "sLSTMBlock"]
    model = XLSTMModel(3, 2, d_model=16, num_heads=2, max_positions=8)
    assert model(torch.zeros(8, 1, 3)).shape == (8, 1, 2)
    with pytest.raises(ValueError, match="9 steps is longer than max_positions = 8"):
        model(torch.zeros(9, 1, 3))
    with pytest.raises(ValueError, match="slstm_at = '2': expected"):
        XLSTMModel(3, 2, d_model=16, slstm_at="2")
    with pytest.raises(ValueError, match="slstm_at = 'a': expected"):
        XLSTMModel(3, 2, d_model=16, slstm_at="a")
    with pytest.raises(ValueError, match="d_model = 20: expected a multiple of 4 and of 2 "):
        XLSTMModel(3, 2, d_model=20, num_heads=4)
    with pytest.raises(ValueError, match="conv_width = 1: expected at least 2"):
        XLSTMModel(3, 2, d_model=16, conv_width=1)


def test_rope_scores_depend_on_the_distance_only() -> None:
    torch.manual_seed(0)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)
    steps = 20

    def score(t: int, s: int) -> float:
        qs = transformer.rotate(q.expand(1, 1, steps, 8).contiguous())[0, 0, t]
        ks = transformer.rotate(k.expand(1, 1, steps, 8).contiguous())[0, 0, s]
        return float(qs @ ks)

    assert score(9, 4) == pytest.approx(score(15, 10), abs=1e-5)
    assert score(9, 4) != pytest.approx(score(9, 6), abs=1e-3)


def test_alibi_attention_is_the_softmax_of_scores_with_a_distance_penalty() -> None:
    torch.manual_seed(0)
    block = transformer.Block(8, 2, 16, "alibi")
    x = torch.randn(2, 6, 8)
    q, k, v = block.qkv(block.norm1(x)).view(2, 6, 3, 2, 4).unbind(2)
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    scores = q @ k.transpose(-1, -2) / 2.0  # sqrt(4)
    distance = torch.arange(6).view(6, 1) - torch.arange(6).view(1, 6)
    slopes = torch.tensor([2.0**-4, 2.0**-8]).view(2, 1, 1)
    scores = (scores - slopes * distance).masked_fill(distance < 0, -math.inf)
    attended = torch.softmax(scores, -1) @ v
    expected = x + block.out(attended.transpose(1, 2).reshape(2, 6, 8))
    expected = expected + block.ff(block.norm2(expected))
    torch.testing.assert_close(block(x), expected)


def test_learned_positions_refuse_a_longer_sequence_by_name() -> None:
    model = TransformerModel(3, 2, position="learned", max_positions=8, **SMALL)
    assert model(torch.zeros(8, 1, 3)).shape == (8, 1, 2)
    with pytest.raises(ValueError, match="9 steps is longer than max_positions = 8"):
        model(torch.zeros(9, 1, 3))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"position": "absolute"}, "TransformerModel.position"),
        ({"d_model": 18, "num_heads": 2}, "TransformerModel.d_model"),
        ({"num_layers": 0}, "TransformerModel.num_layers"),
    ],
)
def test_bad_transformer_settings_are_named(settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TransformerModel(3, 2, **{**SMALL, **settings})


@pytest.mark.parametrize("random_fill", [False, True])
def test_mqar_asks_every_key_once_and_scores_its_value(random_fill: bool) -> None:
    task = MQARTask(vocab_size=32, num_pairs=5, length=40, random_fill=random_fill)
    batch = task.sample(64, torch.Generator().manual_seed(1))
    assert batch.inputs.shape == (40, 64, 32) and batch.targets.shape == (40, 64, 32)
    assert bool((batch.mask.sum(0) == 5).all())
    tokens, answers = batch.inputs.argmax(-1).t(), batch.targets.argmax(-1).t()
    for b in range(64):
        keys, values = tokens[b, 0:10:2].tolist(), tokens[b, 1:10:2].tolist()
        assert len(set(keys)) == 5 and all(1 <= key < 16 for key in keys)
        assert all(16 <= value < 32 for value in values)
        asked = batch.mask[:, b].nonzero().flatten().tolist()
        assert all(position >= 10 and position % 2 == 0 for position in asked)
        pairs = dict(zip(keys, values, strict=True))
        assert sorted(tokens[b, asked].tolist()) == sorted(keys)
        assert [pairs[int(tokens[b, p])] for p in asked] == answers[b, asked].tolist()
        filler = [p for p in range(10, 40) if p not in asked]
        if not random_fill:
            assert set(tokens[b, filler].tolist()) == {0}
    if random_fill:  # the fill is drawn from the whole vocabulary
        between = [tokens[b, p] for b in range(64) for p in range(10, 40) if not batch.mask[p, b]]
        assert len(set(torch.stack(between).tolist())) == 32
    # With answer_delay=1 the same sequences ask the same, and the value is due a step later.
    later = task.with_settings(answer_delay=1).sample(64, torch.Generator().manual_seed(1))
    assert torch.equal(later.inputs, batch.inputs)
    assert torch.equal(later.mask[1:], batch.mask[:-1]) and not later.mask[0].any()
    assert torch.equal(later.targets[1:], batch.targets[:-1])


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"vocab_size": 12, "num_pairs": 6}, "num_pairs = 6: expected an integer from 1 to 5"),
        (
            {"num_pairs": 8, "length": 31},
            "length = 31: expected an integer >= 4 \\* num_pairs = 32",
        ),
        ({"answer_delay": 2}, "answer_delay = 2: expected 0 or 1"),
    ],
)
def test_bad_mqar_settings_are_named(settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MQARTask(**settings)


def test_token_scoring_is_cross_entropy_in_bits_and_wrong_tokens() -> None:
    torch.manual_seed(0)
    logits = torch.randn(4, 3, 6)
    labels = torch.randint(0, 6, (4, 3))
    targets = F.one_hot(labels, 6).float()
    mask = torch.tensor([[1, 0, 1], [1, 1, 1], [0, 0, 1], [1, 1, 0]], dtype=torch.bool)
    nats = F.cross_entropy(logits.reshape(-1, 6), labels.reshape(-1), reduction="none")
    expected = float((nats.view(4, 3) * mask).sum()) / math.log(2) / 3
    assert float(loss_tokens(logits, targets, mask)) == pytest.approx(expected, rel=1e-6)
    wrong = (logits.argmax(-1) != labels) & mask
    assert wrong_tokens_each(logits, targets, mask).tolist() == wrong.sum(0).tolist()
    assert scoring(MQARTask()) is TOKENS and scoring(ntm.make_task("copy")) is BITS


def test_mqar_trains_and_evaluates_in_tokens(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    command = ["train", "--model", "transformer", "--task", "mqar", "--task-arg",
               "vocab_size=16", "--task-arg", "num_pairs=2", "--task-arg", "length=8",
               "--model-arg", "d_model=16", "--max-sequences", "64", "--batch-size", "16",
               "--eval-every", "32", "--eval-size", "16", "--nproc", "1", "--quiet",
               "--run-dir", str(run_dir)]  # fmt: skip
    assert cli.main(command) == 0
    capsys.readouterr()
    assert cli.main(["eval", str(run_dir), "--size", "32"]) == 0
    shown = capsys.readouterr().out
    assert "token errors/seq" in shown and "all right" in shown
    assert "4 pairs (x2)" in shown and "(x4)" not in shown  # 8 pairs need more than 7 keys
    assert cli.main(["eval", str(run_dir), "--ladder", "--json", "--size", "32"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert json.loads((run_dir / "ladder.json").read_text()) == rows
    assert [row["setting"] for row in rows] == [
        "training distribution", "4 pairs (x2)", "mean over the ladder",
    ]  # fmt: skip
    assert all(row["errors_of"] == "tokens" and 0 <= row["all_right"] <= 1 for row in rows)


def test_mqar_refuses_a_bad_setting_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["train", "--task", "mqar", "--task-arg", "num_pairs=100"]) == 2
    error = capsys.readouterr().err
    assert "num_pairs" in error and error.count("\n") == 1


def test_each_task_climbs_from_its_own_training_settings() -> None:
    climb = ntm.tasks.ladder
    assert [label for label, _ in climb(ntm.make_task("copy", max_length=10))] == [
        "length 20 (x2)", "length 40 (x4)", "length 80 (x8)"]  # fmt: skip
    repeat = dict(climb(ntm.make_task("repeat_copy")))
    assert repeat["L=20, R=20 (x2, x2)"] == {"min_length": 20, "max_length": 20,
                                            "min_repeats": 20, "max_repeats": 20}  # fmt: skip
    assert dict(climb(ntm.make_task("associative_recall")))["24 items (x4)"]["min_items"] == 24
    assert [label for label, _ in climb(MQARTask())] == ["8 pairs (x2)", "16 pairs (x4)"]
    for name in ntm.TASKS:
        task = ntm.make_task(name)
        for _, changes in climb(task):
            task.with_settings(**changes).sample(2, torch.Generator().manual_seed(0))
