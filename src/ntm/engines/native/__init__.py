"""The native engines: recurrences in C, a whole sequence per call.

The NTM's, the DNC's and SAM's recurrences, Mamba's selective scan, the causal
convolution of Mamba's and the xLSTM's blocks, and the xLSTM's head-wise projections and
matrix memory.

The fused path (:mod:`ntm.engines.fused`) removes autograd's per-operation cost; what is left is
the cost of launching a few hundred small tensor operations per step, in Python or in the
code ``torch.compile`` generates. Here the recurrence of a whole sequence, forward and
backward, is one call each into ``ntm_sequence.c`` (the NTM), ``dnc_sequence.c`` (the
DNC, :mod:`ntm.engines.native.dnc`), ``sam_sequence.c`` (Sparse Access Memory,
:mod:`ntm.engines.native.sam`) or ``mamba_scan.c`` (Mamba's scan,
:mod:`ntm.engines.native.mamba`), ``causal_conv.c`` (:mod:`ntm.engines.native.conv`),
``headwise.c`` (:mod:`ntm.engines.native.headwise`) and ``mlstm_cell.c``
(:mod:`ntm.engines.native.mlstm`),
which share ``kernels.h``. They are built at first use
into one library with the system's C compiler (``cc``, or ``$CC``) for this machine's
processor, in a few seconds, and cached under ``$NTM_CACHE_DIR`` (default
``~/.cache/ntm``). The first controller layer's input projection, the output layer and
every weight gradient stay in PyTorch as products over all time steps, exactly as in the
fused path, whose functions they share.

It computes the same function as :class:`ntm.NTMCell` stepped in a loop, in float32 on the
CPU; tests compare its outputs and gradients with the eager path's. Where it cannot run
(no C compiler, another dtype or device), :func:`native_available` says why and the NTM
runs the fused path instead (the DNC, SAM and Mamba their eager one).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor

from ntm.engines.fused import (
    _Spec,
    _split_params,
    cell_spec,
    input_projection,
    output_backward,
    output_layer,
    weight_gradients,
)

SOURCE = Path(__file__).with_name("ntm_sequence.c")
#: The DNC's recurrence, and what both engines share: built into the same library.
DNC_SOURCE = Path(__file__).with_name("dnc_sequence.c")
#: Sparse Access Memory's (:mod:`ntm.engines.native.sam`), its search, and the
#: nearest-neighbour index the search uses for large memories, in the same library.
SAM_SOURCE = Path(__file__).with_name("sam_sequence.c")
SAM_SEARCH = Path(__file__).with_name("sam_search.h")
SAM_INDEX = Path(__file__).with_name("sam_index.c")
SAM_INDEX_HEADER = Path(__file__).with_name("sam_index.h")
#: Mamba's selective scan (:mod:`ntm.engines.native.mamba`), in the same library.
MAMBA_SOURCE = Path(__file__).with_name("mamba_scan.c")
#: The causal depthwise convolution and SiLU of Mamba's and the xLSTM's blocks
#: (:mod:`ntm.engines.native.conv`), in the same library.
CONV_SOURCE = Path(__file__).with_name("causal_conv.c")
#: The xLSTM's head-wise (block-diagonal) projections (:mod:`ntm.engines.native.headwise`),
#: in the same library.
HEADWISE_SOURCE = Path(__file__).with_name("headwise.c")
#: The mLSTM's matrix memory in its parallel form (:mod:`ntm.engines.native.mlstm`), in the
#: same library.
MLSTM_SOURCE = Path(__file__).with_name("mlstm_cell.c")
HEADER = Path(__file__).with_name("kernels.h")

#: Compiler flags: optimised for the processor that builds it (the library is cached per
#: machine), without errno from the maths functions so that their loops vectorise.
FLAGS = (
    "-O3",
    "-march=native",
    "-fno-math-errno",
    "-fassociative-math",
    "-fno-signed-zeros",
    "-fno-trapping-math",
    "-fPIC",
    "-shared",
)
#: Linked in when present: glibc's vector maths (exp and log 8 floats at a time).
VECTOR_MATHS = ("-DNTM_LIBMVEC", "-lmvec")
#: The most shift offsets a head may have here (``2 * shift_range + 1``).
MAX_SHIFTS = 64

_LIBRARY: dict[str, Any] = {}


class _Dims(ctypes.Structure):
    _fields_ = [
        *((name, ctypes.c_int) for name in ("T", "B", "L", "C", "lstm", "R", "W", "N", "M", "K")),
        ("eps", ctypes.c_float),
        ("head_clip", ctypes.c_float),
    ]


def cache_dir() -> Path:
    """Where the built library is kept: ``$NTM_CACHE_DIR``, else ``~/.cache/ntm``."""
    if os.environ.get("NTM_CACHE_DIR"):
        return Path(os.environ["NTM_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ntm"


def _machine() -> str:
    """What the build depends on besides the source: the processor's model and features."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() + platform.machine()
    lines = [line for line in info.splitlines() if line.startswith(("model name", "flags"))]
    return "\n".join(sorted(set(lines)))


def _build() -> Path:
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not compiler:
        raise RuntimeError("no C compiler (cc, gcc or $CC) on the PATH")
    sources = (SOURCE, DNC_SOURCE, SAM_SOURCE, SAM_INDEX, MAMBA_SOURCE, CONV_SOURCE,
               HEADWISE_SOURCE, MLSTM_SOURCE)  # fmt: skip
    headers = (HEADER, SAM_SEARCH, SAM_INDEX_HEADER)
    key = hashlib.sha256(b"".join(path.read_bytes() for path in (*sources, *headers)))
    key.update(" ".join(FLAGS).encode() + compiler.encode())
    key.update(_machine().encode())
    target = cache_dir() / f"ntm_native-{key.hexdigest()[:16]}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for extra in (VECTOR_MATHS, ()):
        # Built beside the target and renamed into place: processes starting together
        # (--nproc) never load a half-written file.
        handle, partial = tempfile.mkstemp(suffix=".so", dir=target.parent)
        os.close(handle)
        command = [compiler, *FLAGS, *extra[:1], "-I", str(HEADER.parent), "-o", partial,
                   *map(str, sources), *extra[1:], "-lm"]  # fmt: skip
        try:
            done = subprocess.run(command, capture_output=True, text=True, check=False)
        except OSError as error:
            Path(partial).unlink(missing_ok=True)
            raise RuntimeError(f"cannot run the C compiler {compiler}: {error}") from error
        if done.returncode == 0:
            Path(partial).replace(target)
            return target
        Path(partial).unlink(missing_ok=True)
        errors.append(done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"])
    raise RuntimeError(f"{compiler} failed: {errors[-1][0]}")


#: The library's entry points, each with a function that reports its pointer count; each
#: takes its engine's dimensions (a ctypes structure) and an array of pointers.
_FUNCTIONS = ("ntm_forward", "ntm_backward", "dnc_forward", "dnc_backward", "sam_forward",
              "sam_backward", "sam_reset", "mamba_scan_forward", "mamba_scan_backward",
              "causal_conv_forward", "causal_conv_backward", "headwise_forward",
              "headwise_backward", "mlstm_cell_forward", "mlstm_cell_backward")  # fmt: skip


def _library() -> ctypes.CDLL:
    if "library" not in _LIBRARY:
        library = ctypes.CDLL(str(_build()))
        # The C library's symbols, by name: ctypes offers no other way to them.
        for name in _FUNCTIONS:
            function = getattr(library, name)
            function.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)]
            function.restype = ctypes.c_int
        _LIBRARY["pointers"] = tuple(
            getattr(library, f"{name}_pointers")()
            for name in _FUNCTIONS  # C symbols
        )
        _LIBRARY["library"] = library
    return _LIBRARY["library"]  # type: ignore[no-any-return]


def native_available() -> str | None:
    """None when the native library builds and loads here; otherwise why not."""
    if "problem" not in _LIBRARY:
        try:
            _library()
            _LIBRARY["problem"] = None
        except (OSError, RuntimeError) as error:
            _LIBRARY["problem"] = str(error)
    return _LIBRARY["problem"]  # type: ignore[no-any-return]


def require_cpu_float32(owner: str, name: str, tensor: Tensor) -> None:
    """Refuse (ValueError, naming ``owner``'s argument ``name``) a tensor that the native
    kernels cannot take: anything but float32 on the CPU."""
    if tensor.device.type != "cpu" or tensor.dtype != torch.float32:
        raise ValueError(
            f"{owner}: {name} must be float32 on the CPU, got {tensor.dtype} on {tensor.device}"
        )


def runs_natively(cfg: Any, inputs: Tensor, params: list[Tensor]) -> bool:
    """Whether the native engine can run this sequence: float32 on the CPU, a shift range
    it holds, and the library built."""
    return (
        inputs.device.type == "cpu"
        and inputs.dtype == torch.float32
        and all(p.dtype == torch.float32 and p.device.type == "cpu" for p in params)
        and 2 * cfg.shift_range + 1 <= MAX_SHIFTS
        and native_available() is None
    )


class _ForwardBuffers(NamedTuple):
    """What ``ntm_forward`` reads and fills, in the order of its pointer array (the C
    side's enum); ``ntm_backward`` takes them again, then its own."""

    pre_input: Tensor  # (T, B, G): the first layer's gate inputs from the input, biases in
    read_weights_t: Tensor
    layer_weights_t: Tensor
    layer_biases: Tensor
    recurrent_weights_t: Tensor
    head_weights_t: Tensor
    head_bias: Tensor
    memories: Tensor  # (T+1, B, M, N)
    reads: Tensor  # (T+1, B, R*M)
    read_weights: Tensor  # (T+1, B, R, N)
    write_weights: Tensor  # (T+1, B, W, N)
    hidden: Tensor  # (T+1, L, B, C)
    cells: Tensor  # (T+1, L, B, C)
    gates: Tensor
    tanh_cells: Tensor
    raw: Tensor  # (T, B, P): the heads' raw parameters
    norms: Tensor  # (T+1, B, N)
    read_saved_0: Tensor
    read_saved_1: Tensor
    read_saved_2: Tensor
    read_saved_3: Tensor
    write_saved_0: Tensor
    write_saved_1: Tensor
    write_saved_2: Tensor
    write_saved_3: Tensor


def _call(
    name: str, dims: ctypes.Structure, tensors: Sequence[Tensor], accept: Sequence[int] = ()
) -> int:
    """Call ``name`` of the library with ``dims`` and ``tensors``' data pointers (float32,
    or int32 and int64 where the C side says so), refusing a call whose count is not the one the
    library reports (``ntm_forward_pointers()``). Returns its status: 0, or one of ``accept``
    for the caller to handle; any other raises a RuntimeError."""
    _library()
    expected = dict(zip(_FUNCTIONS, _LIBRARY["pointers"], strict=True))[name]
    if len(tensors) != expected:
        raise RuntimeError(
            f"ntm.engines.native: {name} takes {expected} buffers, got {len(tensors)}"
        )
    for tensor in tensors:
        if not tensor.is_contiguous() or tensor.dtype not in (
            torch.float32,
            torch.int32,
            torch.int64,
        ):
            raise RuntimeError(f"ntm.engines.native: {name} needs contiguous float32 buffers")
    pointers = (ctypes.c_void_p * len(tensors))(*(t.data_ptr() for t in tensors))
    status: int = getattr(_library(), name)(ctypes.addressof(dims), pointers)  # a C symbol
    if status != 0 and status not in accept:
        raise RuntimeError(f"ntm.engines.native: {name} failed with status {status}")
    return status


def _stacked(tensors: list[Tensor], like: Tensor) -> Tensor:
    """The tensors stacked and contiguous, or a one-element placeholder when none."""
    return torch.stack(tensors).contiguous() if tensors else like.new_zeros(1)


class _NativeSequence(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        spec: _Spec,
        inputs: Tensor,
        memory: Tensor,
        reads: Tensor,
        read_weights: Tensor,
        write_weights: Tensor,
        hidden: Tensor,
        cell: Tensor,
        *params: Tensor,
    ) -> tuple[Tensor, ...]:
        cfg = spec.config
        steps, batch, _ = inputs.shape
        layers, size = cfg.controller_layers, cfg.controller_size
        num_read, num_write = cfg.num_read_heads, cfg.num_write_heads
        slots, word = cfg.memory_size, cfg.word_size
        ctrl, head_w, head_b, out_w, out_b, input_w, read_w = _split_params(spec, params)
        pre_input = input_projection(spec, ctrl, input_w, inputs).contiguous()
        gate_rows = pre_input.shape[-1]
        params_size = head_w.shape[0]

        def empty(*shape: int) -> Tensor:
            return inputs.new_empty(shape)

        mems = empty(steps + 1, batch, word, slots)
        mems[0] = memory.detach().transpose(1, 2)
        reads_seq = empty(steps + 1, batch, num_read * word)
        reads_seq[0] = reads.detach().reshape(batch, -1)
        read_ws = empty(steps + 1, batch, num_read, slots)
        read_ws[0] = read_weights.detach()
        write_ws = empty(steps + 1, batch, num_write, slots)
        write_ws[0] = write_weights.detach()
        hs = empty(steps + 1, layers, batch, size)
        cs = empty(steps + 1, layers, batch, size)
        if spec.lstm:  # a feedforward controller has no state: (0, B, C)
            hs[0] = hidden.detach()
            cs[0] = cell.detach()
        lstm_steps = steps if spec.lstm else 0
        gates = empty(lstm_steps, layers, batch, gate_rows) if spec.lstm else empty(1)
        tanh_c = empty(lstm_steps, layers, batch, size) if spec.lstm else empty(1)
        raw = empty(steps, batch, params_size)
        norms = empty(steps + 1, batch, slots)
        read_saved = [empty(steps, batch, num_read, slots) for _ in range(4)]
        write_saved = [empty(steps, batch, num_write, slots) for _ in range(4)]
        biases = [layer[2] + layer[3] if spec.lstm else layer[1] for layer in ctrl[1:]]
        weights_t = [
            read_w.t().contiguous(),
            _stacked([layer[0].t() for layer in ctrl[1:]], inputs),
            _stacked(biases, inputs),
            _stacked([layer[1].t() for layer in ctrl] if spec.lstm else [], inputs),
            head_w.t().contiguous(),
            head_b.contiguous(),
        ]
        dims = _Dims(steps, batch, layers, size, int(spec.lstm), num_read, num_write, slots,
                     word, cfg.shift_range, cfg.eps, cfg.head_clip)  # fmt: skip
        buffers = _ForwardBuffers._make([pre_input, *weights_t, mems, reads_seq, read_ws,
                                         write_ws, hs, cs, gates, tanh_c, raw, norms,
                                         *read_saved, *write_saved])  # fmt: skip
        _call("ntm_forward", dims, buffers)

        top_seq = hs[1:, layers - 1]  # (T, B, C)
        logits, out_in, out_mask = output_layer(cfg, top_seq, reads_seq[1:], out_w, out_b)
        ctx.spec = spec
        ctx.params = params
        ctx.dims = dims
        ctx.saved = (inputs.detach(), buffers, out_in, out_mask)
        final_hidden = hs[steps].clone() if spec.lstm else hidden.detach().clone()
        final_cell = cs[steps].clone() if spec.lstm else cell.detach().clone()
        final = (
            mems[steps].transpose(1, 2).contiguous(),
            reads_seq[steps].reshape(batch, num_read, word).clone(),
            read_ws[steps].clone(),
            write_ws[steps].clone(),
            final_hidden,
            final_cell,
        )
        ctx.mark_non_differentiable(*final)
        return (logits, *final)

    @staticmethod
    def backward(ctx: Any, d_logits: Tensor, *_: Any) -> tuple[Tensor | None, ...]:
        spec: _Spec = ctx.spec
        cfg = spec.config
        dims: _Dims = ctx.dims
        inputs, buffers, out_in, out_mask = ctx.saved
        ctrl, head_w, _, out_w, _, input_w, read_w = _split_params(spec, ctx.params)
        steps, batch = dims.T, dims.B
        layers, size = dims.L, dims.C
        hs, reads_seq = buffers.hidden, buffers.reads
        d_out_pre, d_top, d_reads_out = output_backward(cfg, d_logits, out_mask, out_w)
        gate_rows = buffers.pre_input.shape[-1]
        d_raw = inputs.new_empty(steps, batch, head_w.shape[0])
        d_gates = inputs.new_empty(steps, layers, batch, gate_rows)
        carries = [
            inputs.new_zeros(batch, cfg.word_size, cfg.memory_size),
            inputs.new_zeros(batch, cfg.num_read_heads * cfg.word_size),
            inputs.new_zeros(batch, cfg.num_read_heads, cfg.memory_size),
            inputs.new_zeros(batch, cfg.num_write_heads, cfg.memory_size),
            inputs.new_zeros(layers, batch, size),
            inputs.new_zeros(layers, batch, size),
        ]
        weights = [
            read_w.contiguous(),
            _stacked([layer[0] for layer in ctrl[1:]], inputs),
            _stacked([layer[1] for layer in ctrl] if spec.lstm else [], inputs),
            head_w.contiguous(),
        ]
        _call(
            "ntm_backward",
            dims,
            [*buffers, *weights, d_top.contiguous(), d_reads_out.contiguous(), d_raw, d_gates,
             *carries],
        )  # fmt: skip
        grads, d_inputs = weight_gradients(
            spec,
            input_w,
            inputs,
            reads_seq[:-1],
            [hs[1:, i - 1] for i in range(1, layers)],
            [hs[:-1, i] for i in range(layers)] if spec.lstm else [],
            [d_gates[:, i] for i in range(layers)],
            d_raw,
            hs[1:, layers - 1],
            d_out_pre,
            out_in,
        )
        d_memory, d_reads, d_read_w, d_write_w, d_h, d_c = carries
        d_reads = d_reads.reshape(batch, cfg.num_read_heads, cfg.word_size)
        d_hidden, d_cell = (d_h, d_c) if spec.lstm else (None, None)
        return (None, d_inputs, d_memory.transpose(1, 2), d_reads, d_read_w, d_write_w,
                d_hidden, d_cell, *grads)  # fmt: skip


#: Without gradients, the forward pass runs the sequence in windows of steps whose kept
#: memories (steps x B x M x N floats, which the backward pass would need) fit in this many
#: bytes, each window starting from the last one's final state: an evaluation at length
#: 1,000 with 1,024 slots then holds a window of memories, not the 5 GB of all of them.
WINDOW_BYTES = 256 * 2**20


def window_steps(cfg: Any, batch: int) -> int:
    """Steps per window of a forward pass without gradients (at least one)."""
    step = 4 * batch * int(cfg.memory_size) * int(cfg.word_size)
    return max(1, WINDOW_BYTES // step)


def native_sequence(cell: Any, inputs: Tensor, state: Any) -> tuple[Tensor, Any] | None:
    """Run ``cell`` (an :class:`ntm.NTMCell`) over ``inputs`` (T, B, I) natively, as
    :func:`ntm.engines.fused.fused_sequence` does; None where the native engine cannot run it
    (:func:`runs_natively`). Without gradients it runs in windows (:data:`WINDOW_BYTES`)."""
    spec, params = cell_spec(cell, compiled=False)
    if not runs_natively(spec.config, inputs, params):
        return None
    wanted = torch.is_grad_enabled() and any(t.requires_grad for t in (inputs, *state, *params))
    steps = inputs.shape[0]
    window = steps if wanted or not steps else window_steps(spec.config, inputs.shape[1])
    logits = []
    for start in range(0, max(steps, 1), max(window, 1)):  # an empty sequence: one call
        part = inputs[start : start + window]
        outputs = _NativeSequence.apply(spec, part, *state, *params)  # type: ignore[no-untyped-call]
        logits.append(outputs[0])
        state = type(state)(*outputs[1:])
    return (logits[0] if len(logits) == 1 else torch.cat(logits)), state
