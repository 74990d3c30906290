"""The bpAI-TAC network, its ablation variants and the Tn5 bias models (one class, configured).

Layout (paper Methods, "BpAI-TAC model"):

- **body**: a width-25 convolution with ``F`` filters, then ``D`` dilated residual blocks
  (width 3, dilation 2, 4, 8, ...), ``x <- x + ReLU(BN(conv(x)))``. All body convolutions use
  'same' padding, so the length stays 1000.
- **profile head**: a width-25 convolution with one channel per task, computed only for the
  central 250 bp (positions 375..624), plus the frozen bias model's logits (shared by every
  task). With bin size ``b`` the logits are summed within bins of ``b`` bases (paper, "Binning
  ablation"; 20 bp bins: 12 bins over the central 240 bp); the softmax over positions is
  applied by the losses (``log_softmax``) and by :meth:`BpAITAC.profile_probs`.
- **accessibility head**: predicted total insertions per task, from the full-length body output.
  ``conv``: 3 x (max-pool 5, conv 3, BN, ReLU) then a linear layer (the paper's head);
  ``globpool``: global mean-pool + linear (BPNet-like, *GlobPoolAccHead*); ``max50``: max-pool 50
  + linear (*Max50AccHead*); ``fc``: one fully connected layer on the flattened body
  (*FCAccHead*). The head's last layer is read one of two ways (``acc_output``):
  ``relu_linear`` (default; the authors' code, nuriachandra/bpAITAC ``models/modules.py``, where
  every scalar head ends in a ReLU and predicts linear counts, trained on
  ``MSE(log(pred + 1), log(y + 1))``): the output ``c = ReLU(z)`` is the predicted accessibility;
  ``log``: the output ``z`` is ``log(1 + accessibility)`` directly (no output nonlinearity). The
  paper's text is silent on this. Either way :meth:`BpAITAC.forward` returns
  ``log(1 + accessibility)``, so losses, predictions and metrics read one quantity.
- **input ReLU** (``input_relu``): the paper says every body convolution is followed by a ReLU
  (default true); the authors' code has none after the first (width-25) convolution
  (``input_relu: false``).

Batch normalisation (``BN``; ``architectures.<name>.batchnorm``, default on) follows the
authors' published code (nuriachandra/bpAITAC, ``models/modules.py``: ``ResBlock`` is conv, BN,
ReLU plus the skip; ``ScalarHeadConvMaxpool`` is max-pool, conv, BN, ReLU); the paper's Methods
text does not mention it. With ``batchnorm: false`` the BN modules are left out.

Every nonlinearity and every BN is its own ``nn.Module`` instance created in ``__init__`` (no
functional ``relu``/``softmax``/``batch_norm``), as tangermeme's DeepSHAP requires. BN uses batch
statistics in ``train()`` mode and its running statistics in ``eval()`` mode: every prediction
path (validation, test predictions, bias logits, attributions, motif insertion) runs the
network in eval mode, where BN is a fixed per-channel affine map.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bpaitac.numeric import bin_profile

logger = logging.getLogger(__name__)

SEQ_LEN = 1000
PROFILE_LEN = 250
ACC_HEADS = ("conv", "globpool", "max50", "fc")
ACC_OUTPUTS = ("relu_linear", "log")
BIN_SIZES = (1, 5, 10, 20)


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a network: sizes, heads, tasks, bin size."""

    filters: int
    dilated_blocks: int
    acc_head: str
    n_tasks: int
    bin_size: int = 1
    input_kernel: int = 25
    profile_kernel: int = 25
    batchnorm: bool = True
    input_relu: bool = True
    acc_output: str = "relu_linear"
    seq_len: int = SEQ_LEN
    profile_len: int = PROFILE_LEN

    def __post_init__(self) -> None:
        if self.filters < 1 or self.n_tasks < 1 or self.dilated_blocks < 0:
            raise ValueError(
                f"ModelSpec: filters ({self.filters}) and n_tasks ({self.n_tasks}) must be >= 1 "
                f"and dilated_blocks ({self.dilated_blocks}) >= 0; fix `architectures:`."
            )
        if self.acc_head not in ACC_HEADS:
            raise ValueError(
                f"ModelSpec: acc_head {self.acc_head!r} is not one of {', '.join(ACC_HEADS)}; "
                "fix `architectures.<name>.acc_head`."
            )
        if self.acc_output not in ACC_OUTPUTS:
            raise ValueError(
                f"ModelSpec: acc_output {self.acc_output!r} is not one of "
                f"{', '.join(ACC_OUTPUTS)}; fix `architectures.<name>.acc_output`."
            )
        if self.bin_size not in BIN_SIZES:
            raise ValueError(
                f"ModelSpec: bin size {self.bin_size} is not one of {BIN_SIZES}; fix "
                "`models.<name>.bin`."
            )
        if self.input_kernel % 2 == 0 or self.profile_kernel % 2 == 0:
            raise ValueError("ModelSpec: input_kernel and profile_kernel must be odd.")
        if self.profile_len > self.seq_len or (self.seq_len - self.profile_len) % 2:
            raise ValueError(
                f"ModelSpec: profile_len {self.profile_len} must be <= seq_len {self.seq_len} "
                "and centred (even difference)."
            )
        if self.acc_head == "conv" and self.seq_len < 125:
            raise ValueError("ModelSpec: the conv accessibility head needs seq_len >= 125.")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSpec:
        """Build from a dict, ignoring keys that are not fields (e.g. catalogue extras)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (stored in ``model.pt``)."""
        return asdict(self)


class DilatedResidualBlock(nn.Module):
    """``x + ReLU(BN(conv_d(x)))`` with a width-3 convolution of dilation ``d`` ('same' padding).

    Without ``batchnorm`` the BN is an ``nn.Identity`` (no parameters, no state), so the
    block is ``x + ReLU(conv_d(x))`` with the same state-dict keys as before BN existed.
    """

    def __init__(self, filters: int, dilation: int, batchnorm: bool) -> None:
        super().__init__()
        self.conv = nn.Conv1d(filters, filters, 3, dilation=dilation, padding=dilation)
        self.bn: nn.Module = nn.BatchNorm1d(filters) if batchnorm else nn.Identity()
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.relu(self.bn(self.conv(x)))


class ConvAccHead(nn.Module):
    """The paper's accessibility head: 3 x (max-pool 5, conv 3, BN, ReLU), flatten, linear.

    Without ``batchnorm`` the blocks are (max-pool 5, conv 3, ReLU).
    """

    def __init__(self, filters: int, n_tasks: int, seq_len: int, batchnorm: bool) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        length = seq_len
        for _ in range(3):
            layers += [nn.MaxPool1d(5), nn.Conv1d(filters, filters, 3, padding=1)]
            if batchnorm:
                layers.append(nn.BatchNorm1d(filters))
            layers.append(nn.ReLU())
            length //= 5
        self.layers = nn.Sequential(*layers)
        self.flatten = nn.Flatten()
        self.linear = nn.Linear(filters * length, n_tasks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.flatten(self.layers(x)))


class GlobPoolAccHead(nn.Module):
    """Global mean-pool over positions, then linear (BPNet's count head)."""

    def __init__(self, filters: int, n_tasks: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.flatten = nn.Flatten()
        self.linear = nn.Linear(filters, n_tasks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.flatten(self.pool(x)))


class Max50AccHead(nn.Module):
    """Max-pool with window 50, flatten, linear."""

    def __init__(self, filters: int, n_tasks: int, seq_len: int) -> None:
        super().__init__()
        self.pool = nn.MaxPool1d(50)
        self.flatten = nn.Flatten()
        self.linear = nn.Linear(filters * (seq_len // 50), n_tasks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.flatten(self.pool(x)))


class FCAccHead(nn.Module):
    """One fully connected layer on the flattened full-length body output."""

    def __init__(self, filters: int, n_tasks: int, seq_len: int) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.linear = nn.Linear(filters * seq_len, n_tasks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.flatten(x))


def make_acc_head(spec: ModelSpec) -> nn.Module:
    """The accessibility head named by ``spec.acc_head``."""
    if spec.acc_head == "conv":
        return ConvAccHead(spec.filters, spec.n_tasks, spec.seq_len, spec.batchnorm)
    if spec.acc_head == "globpool":
        return GlobPoolAccHead(spec.filters, spec.n_tasks)
    if spec.acc_head == "max50":
        return Max50AccHead(spec.filters, spec.n_tasks, spec.seq_len)
    return FCAccHead(spec.filters, spec.n_tasks, spec.seq_len)


class BpAITAC(nn.Module):
    """bpAI-TAC: dilated residual body, profile head (+ bias logits, binning), accessibility head.

    ``forward(x, bias=None)`` takes one-hot sequences ``x`` (B, 4, seq_len) and optional bias
    logits (B, profile_len) and returns ``(profile_logits, log_counts)``: profile logits
    (B, T, profile_len // bin_size) before the softmax over positions, and the predicted
    ``log(1 + total insertions)`` (B, T), whichever ``acc_output`` the head has.
    """

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        f = spec.filters
        self.input_conv = nn.Conv1d(4, f, spec.input_kernel, padding=spec.input_kernel // 2)
        # The paper's text (default) or the authors' code (input_relu: false), module docstring.
        self.input_relu: nn.Module = nn.ReLU() if spec.input_relu else nn.Identity()
        self.blocks = nn.Sequential(
            *[
                DilatedResidualBlock(f, 2 ** (i + 1), spec.batchnorm)
                for i in range(spec.dilated_blocks)
            ]
        )
        self.profile_conv = nn.Conv1d(f, spec.n_tasks, spec.profile_kernel)
        self.acc_head = make_acc_head(spec)
        # relu_linear: the head's ReLU output is the linear accessibility (authors' code).
        self.acc_relu: nn.Module = nn.ReLU() if spec.acc_output == "relu_linear" else nn.Identity()
        self.softmax = nn.Softmax(dim=-1)
        self._init_parameters()
        # Body positions the (unpadded) profile convolution needs for the central window.
        half = spec.profile_kernel // 2
        self._start = (spec.seq_len - spec.profile_len) // 2 - half
        self._stop = self._start + spec.profile_len + 2 * half

    def _init_parameters(self) -> None:
        """He (Kaiming-normal, fan-in) weights and zero biases for every convolution feeding a
        ReLU; residual-branch weights are further scaled by ``1 / sqrt(D)``.

        PyTorch's default convolution init scales activations down by about sqrt(6) per
        conv + ReLU layer, so the accessibility head's output starts almost constant and
        training sits on a long plateau (or its last ReLUs die) before it learns anything on
        small data sets. Unscaled He init in the residual branches would instead double the
        activation variance with every block (x512 for the paper's 9 blocks); with the
        ``1 / sqrt(D)`` scaling the whole body grows it by at most e.

        With batch normalisation (the default) the same init is kept, and it is harmless: a
        convolution followed by BN is scale-invariant (BN divides its weight scale out in train
        mode, and its running statistics learn that scale for eval mode), so neither He nor the
        ``1 / sqrt(D)`` factor changes the forward pass; BN (weight 1, bias 0) sets each residual
        branch to ~unit scale, so the body's variance grows additively, about linearly in D. The
        weight scale then only sets the relative size of Adam's steps on those weights; for the
        paper's D = 9 the scaled He std (sqrt(2 / 3F) / 3) is close to PyTorch's default
        (sqrt(1 / 9F)), the init of the authors' code.
        """
        convs = [self.input_conv]
        convs += [m for m in self.acc_head.modules() if isinstance(m, nn.Conv1d)]
        for conv in convs:
            nn.init.kaiming_normal_(conv.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(conv.bias)
        depth = max(len(self.blocks), 1)
        for block in self.blocks:
            nn.init.kaiming_normal_(block.conv.weight, mode="fan_in", nonlinearity="relu")
            block.conv.weight.data.mul_(depth**-0.5)
            nn.init.zeros_(block.conv.bias)

    def body(self, x: torch.Tensor) -> torch.Tensor:
        """The shared representation (B, F, seq_len)."""
        return self.blocks(self.input_relu(self.input_conv(x)))

    def forward(
        self, x: torch.Tensor, bias: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if x.dim() != 3 or x.shape[1] != 4 or x.shape[2] != self.spec.seq_len:
            raise ValueError(
                f"BpAITAC: expected one-hot input (B, 4, {self.spec.seq_len}), "
                f"got {tuple(x.shape)}."
            )
        h = self.body(x)
        # 'Same'-padded conv cropped to the centre == unpadded conv on the widened centre.
        logits = self.profile_conv(h[:, :, self._start : self._stop])
        if bias is not None:
            # In float32 also under bf16 autocast: bias logits span several units.
            dtype = torch.promote_types(logits.dtype, torch.float32)
            logits = logits.to(dtype) + bias.to(dtype).unsqueeze(1)
        return bin_profile(logits, self.spec.bin_size), self._log_accessibility(h)

    def _log_accessibility(self, h: torch.Tensor) -> torch.Tensor:
        """``log(1 + accessibility)`` (B, T) from the body output ``h`` (B, F, seq_len)."""
        out = self.acc_relu(self.acc_head(h))
        if self.spec.acc_output == "log":
            return out
        # log1p in float32 also under bf16 autocast (counts span several orders of magnitude).
        return torch.log1p(out.float())

    def accessibility_output(self, x: torch.Tensor) -> torch.Tensor:
        """The accessibility head's own output (B, T) for one-hot ``x`` (B, 4, seq_len): the
        linear accessibility ``ReLU(z)`` with ``acc_output: relu_linear``, ``log(1 +
        accessibility)`` with ``log``. Built of ``nn.Module`` operations only, so DeepSHAP
        (tangermeme) attributes it exactly; ``forward``'s ``log1p`` is left out for that reason.
        """
        return self.acc_relu(self.acc_head(self.body(x)))

    def init_count_head(self, log_means: torch.Tensor) -> None:
        """Start the accessibility head as the mean predictor: a zero final weight matrix and,
        as bias, the per-task training mean ``m`` of ``log(1 + counts)`` (``acc_output: log``)
        or ``expm1(m)`` (``relu_linear``: the constant that minimises the log-count MSE, and a
        positive start that keeps the output ReLU from dying).

        Otherwise the output must climb from ~0 to ~log(1 + typical counts) through the weights,
        and random final weights add noise the loss first removes by silencing the head's last
        ReLUs; on small data sets (few optimiser steps) both stall learning. With zero weights
        the first updates align the final layer with informative features instead.
        """
        linear = self.acc_head.linear
        if log_means.shape != linear.bias.shape:
            raise ValueError(
                f"expected {tuple(linear.bias.shape)} offsets, got {tuple(log_means.shape)}."
            )
        start = torch.expm1(log_means) if self.spec.acc_output == "relu_linear" else log_means
        with torch.no_grad():
            linear.bias.copy_(start.to(linear.bias))
            linear.weight.zero_()

    def profile_probs(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """Predicted insertion distribution over (binned) positions (B, T, profile_len // b)."""
        return self.softmax(self(x, bias)[0])


def build_model(spec: ModelSpec | dict[str, Any]) -> BpAITAC:
    """A freshly initialised network from a spec (or its dict form)."""
    if isinstance(spec, dict):
        spec = ModelSpec.from_dict(spec)
    return BpAITAC(spec)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def spec_from_config(arch: dict[str, Any], n_tasks: int, bin_size: int = 1) -> ModelSpec:
    """Combine an ``architectures:`` entry with the task count and bin size of a model.

    The entry is validated against train.schema.yaml with its defaults filled (the workflow's
    config already is; hand-written entries in tests and notebooks get the same defaults).
    """
    from bpaitac.workflow.config import complete_section

    arch = complete_section(arch, "train.schema.yaml#/$defs/architecture", "architectures")
    return ModelSpec(
        filters=int(arch["filters"]),
        dilated_blocks=int(arch["dilated_blocks"]),
        acc_head=str(arch["acc_head"]),
        n_tasks=int(n_tasks),
        bin_size=int(bin_size),
        input_kernel=int(arch["input_kernel"]),
        profile_kernel=int(arch["profile_kernel"]),
        batchnorm=bool(arch["batchnorm"]),
        input_relu=bool(arch["input_relu"]),
        acc_output=str(arch["acc_output"]),
    )


def save_model(path: str | os.PathLike, model: BpAITAC, meta: dict[str, Any]) -> None:
    """Write ``{"state_dict", "spec"}`` atomically; ``spec`` = model spec + ``meta``.

    ``meta`` holds the catalogue entry, architecture and target names (docs/contracts.md).
    """
    from bpaitac.io import atomic_path

    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {"state_dict": state, "spec": {**meta, "model_spec": model.spec.to_dict()}}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


DEVICES = ("cpu", "cuda", "auto")


def resolve_device(name: str | torch.device) -> torch.device:
    """The torch device of a config ``device`` value: ``cpu``, ``cuda`` or ``auto``.

    ``auto`` is ``cuda`` when ``torch.cuda.is_available()``, else ``cpu``. ``cuda`` means
    ``cuda:0``, the first visible GPU: under Slurm, ``CUDA_VISIBLE_DEVICES`` limits a job to the
    GPU(s) it was allocated, so ``cuda:0`` is the GPU the job was given. ``cuda`` without a
    visible GPU and unknown names are errors naming the config key. Every entry point that takes
    a device (training, predictions, bias logits, attributions, motif insertion, bias-model
    evaluation) resolves it here. The first resolution of each kind is logged with the job's
    GPU variables (:data:`GPU_ENV`), so a rule's log shows which GPU a Slurm job was given.
    """
    if isinstance(name, torch.device):
        device = name  # already resolved (a torch.device is never `auto`)
    elif name == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    elif name in DEVICES:
        device = torch.device(name)
    else:
        raise ValueError(f"config key `device`: {name!r}; use {', '.join(DEVICES)}.")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            "config `device: cuda` but no CUDA device is visible; set `device: auto` or `cpu`, "
            f"or run on a GPU node ({gpu_environment()})."
        )
    _log_device(name, device)
    return device


# What a scheduler tells a job about its GPUs: Slurm sets CUDA_VISIBLE_DEVICES and
# SLURM_JOB_GPUS in a batch job given `--gpus`/`--gres`, SLURM_STEP_GPUS in its `srun` steps
# (where Snakemake's Slurm plugin runs the rule).
GPU_ENV = ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_GPUS", "SLURM_STEP_GPUS", "SLURM_JOB_ID")
_LOGGED: set[tuple[str, str]] = set()


def gpu_environment() -> str:
    """The job's GPU variables as ``NAME=value`` pairs (those that are set)."""
    seen = [f"{k}={os.environ[k]}" for k in GPU_ENV if k in os.environ]
    return ", ".join(seen) if seen else "no CUDA_VISIBLE_DEVICES or Slurm job variables set"


def _log_device(name: str | torch.device, device: torch.device) -> None:
    key = (str(name), str(device))
    if key in _LOGGED:
        return
    _LOGGED.add(key)
    what = str(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        what = f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    logger.info("device %s -> %s; %s", name, what, gpu_environment())


def load_model(
    path: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[BpAITAC, dict[str, Any]]:
    """Load a ``model.pt`` written by :func:`save_model`; returns (model in eval mode, spec).

    ``device`` is ``cpu``, ``cuda`` or ``auto`` (:func:`resolve_device`).
    """
    device = resolve_device(device)
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: model file not found; run the training rule first.")
    payload = torch.load(path, map_location=device, weights_only=False)
    if not isinstance(payload, dict) or "state_dict" not in payload or "spec" not in payload:
        raise ValueError(f"{path}: not a bpaitac model file (needs keys state_dict and spec).")
    spec = payload["spec"]
    model_spec = dict(spec["model_spec"])
    # Files written before `batchnorm`, `input_relu` and `acc_output` existed hold networks
    # without BN, with the input ReLU and with a log-count accessibility output.
    model_spec.setdefault("batchnorm", False)
    model_spec.setdefault("input_relu", True)
    model_spec.setdefault("acc_output", "log")
    model = build_model(model_spec).to(device)
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model, spec
