"""EfficientZero networks h, g, f and the SimSiam heads (spec A3; XTRA EZ-L, A3.2).

Shapes: ``B`` batch, ``C_in`` stacked input channels (frame_stack x channels), ``C`` latent
channels (``cfg.num_channels``), ``h x w`` latent resolution, ``P`` = ``cfg.policy_size`` (18: the
full ALE action set, B2), ``S`` = ``cfg.support_size``, ``L`` = ``cfg.lstm_hidden``.

Two input regimes, chosen by the observation size:

* ``min(H, W) >= 32`` (Atari 96x96): the reference's down-sampling path (A3.1 / A3.2), latent
  ``C x ceil(H/16) x ceil(W/16)`` (64x6x6 for Atari).
* ``min(H, W) < 32`` (MinAtar 10x10, toy images): no down-sampling; conv3x3(C_in -> C)-BN-ReLU then
  ``cfg.repr_blocks`` residual blocks at full resolution (the reference's ``downsample=False``
  branch, as in MuZero's board-game networks). Down-sampling a 10x10 image to 1x1 would leave
  nothing for the dynamics to work on.

The top-level module names (``representation_network``, ``dynamics_network``,
``prediction_network``, ``projection``, ``projection_head``) follow the reference, so state-dict
keys start with the same component names and component-wise transfer (B3) filters by them (the
modules inside are named our own way: reference checkpoints need a key map, not a plain load).
The reference's unused modules (``representation_network.conv/bn`` with down-sampling,
``dynamics_network.reward_resblocks``, D-EZ-11) are not built.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from xtra.config import ModelConfig
from xtra.errors import CheckpointError, ConfigError
from xtra.model.transforms import logits_to_scalar

# The smallest input side that goes through the down-sampling path (4 halvings: 32 -> 2x2).
DOWNSAMPLE_MIN_SIZE = 32

# Component name -> state-dict prefixes (B3: the reference filters keys by these names).
COMPONENTS: dict[str, tuple[str, ...]] = {
    "representation": ("representation_network.",),
    "dynamics": ("dynamics_network.",),
    "prediction": ("prediction_network.",),
    "projection": ("projection.", "projection_head."),
}


# --------------------------------------------------------------------------- building blocks


def norm2d(kind: str, channels: int) -> nn.Module:
    """Normalisation of [B, C, h, w]: BatchNorm2d (A3) or, for ``kind="layer"``, each sample over
    (C, h, w) with per-channel affine (GroupNorm with one group)."""
    return nn.BatchNorm2d(channels) if kind == "batch" else nn.GroupNorm(1, channels)


def norm1d(kind: str, features: int) -> nn.Module:
    """Normalisation of [B, F]: BatchNorm1d (A3) or, for ``kind="layer"``, LayerNorm."""
    return nn.BatchNorm1d(features) if kind == "batch" else nn.LayerNorm(features)


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution, padding 1, no bias (BN follows) (A3)."""
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


class ResidualBlock(nn.Module):
    """conv-BN-ReLU-conv-BN, + identity (or ``shortcut(x)``), ReLU (A3)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        shortcut: nn.Module | None = None,
        *,
        norm: str,
    ):
        super().__init__()
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn1 = norm2d(norm, out_channels)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.bn2 = norm2d(norm, out_channels)
        self.shortcut = shortcut

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.shortcut is None else self.shortcut(x)
        return F.relu(out + identity)


def mlp(
    in_features: int, hidden: int, out_features: int, init_zero: bool, norm: str
) -> nn.Sequential:
    """Linear-norm-ReLU-Linear (BatchNorm1d in A3); the last Linear zeroed when ``init_zero`` (A3.4)."""
    net = nn.Sequential(
        nn.Linear(in_features, hidden),
        norm1d(norm, hidden),
        nn.ReLU(),
        nn.Linear(hidden, out_features),
    )
    if init_zero:
        nn.init.zeros_(net[-1].weight)
        nn.init.zeros_(net[-1].bias)
    return net


def _blocks(channels: int, n: int, norm: str) -> nn.Sequential:
    return nn.Sequential(*(ResidualBlock(channels, channels, norm=norm) for _ in range(n)))


# --------------------------------------------------------------------------- h, g, f


class RepresentationNetwork(nn.Module):
    """h: observation [B, C_in, H, W] (float in [0, 1]) -> latent [B, C, h, w] (A3.1, A3.2)."""

    def __init__(self, in_channels: int, channels: int, blocks: int, downsample: bool, norm: str):
        super().__init__()
        self.downsample = downsample
        if downsample:
            half = channels // 2
            # A3.1 steps 1-7; EZ-L repeats every residual stage `blocks` times (A3.2).
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, half, 3, stride=2, padding=1, bias=False),
                norm2d(norm, half),
                nn.ReLU(),
            )
            self.stage1 = _blocks(half, blocks, norm)
            self.down = ResidualBlock(
                half,
                channels,
                stride=2,
                shortcut=nn.Conv2d(half, channels, 3, stride=2, padding=1, bias=False),
                norm=norm,
            )
            self.stage2 = _blocks(channels, blocks, norm)
            self.pool1 = nn.AvgPool2d(3, stride=2, padding=1)
            self.stage3 = _blocks(channels, blocks, norm)
            self.pool2 = nn.AvgPool2d(3, stride=2, padding=1)
        else:
            self.stem = nn.Sequential(
                conv3x3(in_channels, channels), norm2d(norm, channels), nn.ReLU()
            )
        # A3.1 step 8: the representation's own blocks at latent resolution.
        self.blocks = _blocks(channels, blocks, norm)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        if self.downsample:
            x = self.pool2(self.stage3(self.pool1(self.stage2(self.down(self.stage1(x))))))
        return self.blocks(x)


class DynamicsNetwork(nn.Module):
    """g: (latent, action planes, LSTM state) -> (latent', state', value-prefix logits) (A3.3)."""

    def __init__(
        self,
        channels: int,
        action_channels: int,
        latent_hw: tuple[int, int],
        reduced_channels: int,
        lstm_hidden: int,
        head_hidden: int,
        support_atoms: int,
        init_zero: bool,
        norm: str,
    ):
        super().__init__()
        self.conv = conv3x3(channels + action_channels, channels)
        self.bn = norm2d(norm, channels)
        self.block = ResidualBlock(channels, channels, norm=norm)
        self.conv1x1_value_prefix = nn.Conv2d(channels, reduced_channels, 1)  # with bias (A3.3)
        self.bn_value_prefix_conv = norm2d(norm, reduced_channels)
        self.flat_size = reduced_channels * latent_hw[0] * latent_hw[1]
        self.lstm = nn.LSTM(input_size=self.flat_size, hidden_size=lstm_hidden)
        self.bn_value_prefix = norm1d(norm, lstm_hidden)
        self.fc = mlp(lstm_hidden, head_hidden, support_atoms, init_zero, norm)

    def forward(
        self, latent: Tensor, action_planes: Tensor, lstm_state: tuple[Tensor, Tensor]
    ) -> tuple[Tensor, tuple[Tensor, Tensor], Tensor]:
        x = self.bn(self.conv(torch.cat([latent, action_planes.to(latent.dtype)], dim=1)))
        # Residual add of the input latent before the ReLU (A3.3 step 1).
        x = self.block(F.relu(x + latent))
        vp = F.relu(self.bn_value_prefix_conv(self.conv1x1_value_prefix(x)))
        # A sequence of length 1: the LSTM carries (h, c) across unroll/search steps.
        vp, lstm_state = self.lstm(vp.reshape(1, -1, self.flat_size), lstm_state)
        vp = F.relu(self.bn_value_prefix(vp.squeeze(0)))
        return x, lstm_state, self.fc(vp)


class PredictionNetwork(nn.Module):
    """f: latent [B, C, h, w] -> (policy logits [B, P], value logits [B, 2S+1]) (A3.4)."""

    def __init__(
        self,
        channels: int,
        latent_hw: tuple[int, int],
        reduced_channels: int,
        head_hidden: int,
        policy_size: int,
        support_atoms: int,
        init_zero: bool,
        norm: str,
    ):
        super().__init__()
        self.block = ResidualBlock(channels, channels, norm=norm)
        self.conv1x1_value = nn.Conv2d(channels, reduced_channels, 1)
        self.conv1x1_policy = nn.Conv2d(channels, reduced_channels, 1)
        self.bn_value = norm2d(norm, reduced_channels)
        self.bn_policy = norm2d(norm, reduced_channels)
        flat = reduced_channels * latent_hw[0] * latent_hw[1]
        self.fc_value = mlp(flat, head_hidden, support_atoms, init_zero, norm)
        self.fc_policy = mlp(flat, head_hidden, policy_size, init_zero, norm)

    def forward(self, latent: Tensor) -> tuple[Tensor, Tensor]:
        x = self.block(latent)
        value = F.relu(self.bn_value(self.conv1x1_value(x))).flatten(1)
        policy = F.relu(self.bn_policy(self.conv1x1_policy(x))).flatten(1)
        return self.fc_policy(policy), self.fc_value(value)


# --------------------------------------------------------------------------- the network


@dataclass
class NetworkOutput:
    """What search, self-play, reanalysis and evaluation get from the model (A3.6)."""

    latent: Tensor  # [B, C, h, w]
    lstm_state: tuple[Tensor, Tensor]  # (h, c), each [1, B, L]
    value_prefix: Tensor  # [B] scalar, h^-1 of the head's expectation; zeros at the root
    value: Tensor  # [B] scalar
    value_logits: Tensor  # [B, 2S+1]
    policy_logits: Tensor  # [B, P] over ALE ids; slice with legal_logits


def action_planes(
    action_ids: Tensor, policy_size: int, encoding: str, hw: tuple[int, int]
) -> Tensor:
    """Action input of g as image planes (A3.3, B2).

    Args:
        action_ids: [B] int64 ALE action ids in 0..P-1.
        policy_size: P; the "plane" encoding divides by it (18 in XTRA: ``ale_id / 18``).
        encoding: "plane" (one constant plane, the reference) or "one_hot" (P planes).
        hw: (h, w) of the latent.

    Returns:
        [B, 1, h, w] or [B, P, h, w] float32.
    """
    action_ids = action_ids.reshape(-1).long()
    if encoding == "plane":
        values = action_ids.float().div(policy_size)[:, None]
    elif encoding == "one_hot":
        # scatter, not F.one_hot: one_hot checks the ids' range on the host, a device sync
        # that a CUDA graph cannot capture.
        values = torch.zeros(action_ids.shape[0], policy_size, device=action_ids.device)
        values.scatter_(1, action_ids[:, None], 1.0)
    else:
        raise ConfigError(
            f"model.action_encoding={encoding!r} is not allowed: use plane or one_hot"
        )
    return values[:, :, None, None].expand(-1, -1, *hw)


def legal_logits(policy_logits: Tensor, legal_actions: Tensor | Sequence[int]) -> Tensor:
    """Gather a game's legal ALE ids from the 18-way policy logits (B2).

    Args:
        policy_logits: [B, 18] (or [B, P]).
        legal_actions: [A] ids shared by the batch, or [B, A] per row.

    Returns:
        [B, A] logits in the order of ``legal_actions``.
    """
    idx = torch.as_tensor(legal_actions, dtype=torch.long, device=policy_logits.device)
    if idx.dim() == 1:
        return policy_logits[:, idx]
    return policy_logits.gather(1, idx)


class EfficientZeroNet(nn.Module):
    """EfficientZero / EfficientZero-L network with the inference API (A3, A3.6).

    Args:
        cfg: model hyper-parameters (``cfg.size`` picks EZ or EZ-L, A3.2).
        obs_shape: (C_in, H, W) of one stacked observation, e.g. (12, 96, 96) for Atari RGB.

    ``represent``, ``dynamics``, ``predict`` and ``project`` are the paper's h, g, f and the SimSiam
    heads; ``initial_inference`` / ``recurrent_inference`` compose them. BatchNorm follows
    ``train()`` / ``eval()`` as usual, and grad mode is the caller's choice (search wraps calls
    in ``torch.no_grad``).
    """

    def __init__(self, cfg: ModelConfig, obs_shape: tuple[int, int, int]):
        super().__init__()
        if len(obs_shape) != 3:
            raise ValueError(f"obs_shape must be (C_in, H, W), got {tuple(obs_shape)}")
        self.cfg = cfg
        self.obs_shape = tuple(int(s) for s in obs_shape)
        c_in, height, width = self.obs_shape
        self.downsample = min(height, width) >= DOWNSAMPLE_MIN_SIZE
        if self.downsample:
            # Every stride-2 conv / pool (k3, p1) maps n -> ceil(n/2); there are four of them.
            self.latent_hw = (math.ceil(height / 16), math.ceil(width / 16))
        else:
            self.latent_hw = (height, width)
        channels = cfg.num_channels
        atoms = 2 * cfg.support_size + 1
        action_channels = 1 if cfg.action_encoding == "plane" else cfg.policy_size
        self.latent_shape = (channels, *self.latent_hw)

        self.representation_network = RepresentationNetwork(
            c_in, channels, cfg.repr_blocks, self.downsample, cfg.norm
        )
        self.dynamics_network = DynamicsNetwork(
            channels,
            action_channels,
            self.latent_hw,
            cfg.reduced_channels,
            cfg.lstm_hidden,
            cfg.head_hidden,
            atoms,
            cfg.init_zero,
            cfg.norm,
        )
        self.prediction_network = PredictionNetwork(
            channels,
            self.latent_hw,
            cfg.reduced_channels,
            cfg.head_hidden,
            cfg.policy_size,
            atoms,
            cfg.init_zero,
            cfg.norm,
        )
        # A3.5: projection (3 layers) and prediction head; the head's output size equals the
        # projection's (the reference's pred_out = proj_out = 1024), as the cosine needs.
        self.projection_in = channels * self.latent_hw[0] * self.latent_hw[1]
        self.projection = nn.Sequential(
            nn.Linear(self.projection_in, cfg.proj_hidden),
            norm1d(cfg.norm, cfg.proj_hidden),
            nn.ReLU(),
            nn.Linear(cfg.proj_hidden, cfg.proj_hidden),
            norm1d(cfg.norm, cfg.proj_hidden),
            nn.ReLU(),
            nn.Linear(cfg.proj_hidden, cfg.proj_out),
            norm1d(cfg.norm, cfg.proj_out),
        )
        self.projection_head = nn.Sequential(
            nn.Linear(cfg.proj_out, cfg.pred_hidden),
            norm1d(cfg.norm, cfg.pred_hidden),
            nn.ReLU(),
            nn.Linear(cfg.pred_hidden, cfg.proj_out),
        )
        if cfg.channels_last:
            # Convolutions follow their weights' layout, so inputs need no conversion; moving the
            # module to a device and loading a state dict keep the layout.
            self.to(memory_format=torch.channels_last)

    # ----------------------------------------------------------------------- h, g, f, projection

    def represent(self, obs: Tensor) -> Tensor:
        """h: obs [B, C_in, H, W], uint8 (divided by 255 here) or float in [0, 1] -> [B, C, h, w]"""
        if obs.dtype == torch.uint8:
            obs = obs.float().div_(255.0)
        return self.representation_network(obs)

    def dynamics(
        self, latent: Tensor, lstm_state: tuple[Tensor, Tensor], action_ids: Tensor
    ) -> tuple[Tensor, tuple[Tensor, Tensor], Tensor]:
        """g: (latent [B, C, h, w], (h, c) each [1, B, L], action_ids [B] ALE ids)
        -> (next latent [B, C, h, w], next (h, c), value-prefix logits [B, 2S+1])."""
        planes = action_planes(
            action_ids.to(latent.device),
            self.cfg.policy_size,
            self.cfg.action_encoding,
            self.latent_hw,
        )
        return self.dynamics_network(latent, planes, lstm_state)

    def predict(self, latent: Tensor) -> tuple[Tensor, Tensor]:
        """f: latent [B, C, h, w] -> (policy logits [B, P], value logits [B, 2S+1])."""
        return self.prediction_network(latent)

    def project(self, latent: Tensor, with_grad: bool = True) -> Tensor:
        """SimSiam branch (A3.5): latent [B, C, h, w] -> [B, proj_out].

        ``with_grad=True``: prediction head on the projection (the online branch);
        ``with_grad=False``: the projection alone, detached (the target branch).
        """
        proj = self.projection(latent.reshape(-1, self.projection_in))
        if with_grad:
            return self.projection_head(proj)
        return proj.detach()

    # ----------------------------------------------------------------------- inference API

    def initial_lstm_state(
        self, batch: int, device: torch.device | str | None = None
    ) -> tuple[Tensor, Tensor]:
        """Zero (h, c), each [1, B, L] (also the reset state every lstm_horizon levels, A5)."""
        device = device if device is not None else next(self.parameters()).device
        zeros = torch.zeros(1, batch, self.cfg.lstm_hidden, device=device)
        return zeros, zeros.clone()

    def initial_inference(self, obs: Tensor) -> NetworkOutput:
        """Root: obs [B, C_in, H, W] -> h and f's outputs; value prefix 0, LSTM zeros (A3.6)."""
        if tuple(obs.shape[1:]) != self.obs_shape:
            raise ValueError(
                f"observation shape {tuple(obs.shape[1:])} does not match the network's "
                f"{self.obs_shape}"
            )
        latent = self.represent(obs)
        policy_logits, value_logits = self.predict(latent)
        batch = latent.shape[0]
        return NetworkOutput(
            latent=latent,
            lstm_state=self.initial_lstm_state(batch, latent.device),
            value_prefix=torch.zeros(batch, device=latent.device),
            value=self._to_scalar(value_logits),
            value_logits=value_logits,
            policy_logits=policy_logits,
        )

    def recurrent_inference(
        self, latent: Tensor, lstm_state: tuple[Tensor, Tensor], action_ids: Tensor
    ) -> NetworkOutput:
        """One step: (latent [B, C, h, w], (h, c), action_ids [B] ALE ids) -> g then f (A3.6)."""
        if action_ids.shape != (latent.shape[0],):
            raise ValueError(
                f"action_ids must have shape [B]=({latent.shape[0]},), "
                f"got {tuple(action_ids.shape)}"
            )
        next_latent, next_state, vp_logits = self.dynamics(latent, lstm_state, action_ids)
        policy_logits, value_logits = self.predict(next_latent)
        return NetworkOutput(
            latent=next_latent,
            lstm_state=next_state,
            value_prefix=self._to_scalar(vp_logits),
            value=self._to_scalar(value_logits),
            value_logits=value_logits,
            policy_logits=policy_logits,
        )

    def _to_scalar(self, logits: Tensor) -> Tensor:
        return logits_to_scalar(logits, self.cfg.support_size, self.cfg.transform_eps)

    # ----------------------------------------------------------------------- components (B3)

    def component_parameters(self, name: str) -> Iterator[nn.Parameter]:
        """Parameters of one component: representation, dynamics, prediction or projection.

        "projection" covers the projection and its prediction head. Freezing a component
        (``requires_grad_(False)``) does not stop its BatchNorm running statistics from
        updating in ``train()`` mode; put those modules in ``eval()`` for a fully frozen part.
        """
        prefixes = self._prefixes(name)
        for key, param in self.named_parameters():
            if key.startswith(prefixes):
                yield param

    def load_components(
        self, state_dict: dict[str, Tensor], components: Iterable[str]
    ) -> list[str]:
        """Copy only the named components' weights and BN buffers from ``state_dict`` (B3).

        Everything else is left untouched. Raises :class:`CheckpointError` when the checkpoint
        lacks a key of a requested component or a shape differs (e.g. a different model size).

        Returns:
            The loaded keys, sorted.
        """
        components = set(components)
        prefixes = tuple(p for name in sorted(components) for p in self._prefixes(name))
        own = self.state_dict()
        keys = sorted(k for k in own if k.startswith(prefixes))
        missing = [k for k in keys if k not in state_dict]
        if missing:
            raise CheckpointError(
                f"checkpoint lacks {len(missing)} weights of {', '.join(sorted(components))} "
                f"(first: {missing[0]!r}): was it saved from an EfficientZeroNet of this version?"
            )
        for k in keys:
            if tuple(state_dict[k].shape) != tuple(own[k].shape):
                raise CheckpointError(
                    f"checkpoint weight {k!r} has shape {tuple(state_dict[k].shape)}, this network "
                    f"has {tuple(own[k].shape)}: model size or observation shape differ"
                )
        with torch.no_grad():
            for k in keys:
                own[k].copy_(state_dict[k])  # state_dict() tensors share storage with the module
        return keys

    @staticmethod
    def _prefixes(name: str) -> tuple[str, ...]:
        if name not in COMPONENTS:
            raise ConfigError(
                f"unknown network component {name!r}: choose from {', '.join(COMPONENTS)}"
            )
        return COMPONENTS[name]

    # ----------------------------------------------------------------------- sizes

    def num_parameters(self) -> dict[str, int]:
        """Parameter counts per component (spec A3: ~0.32M / 1.04M, 2.38M, 0.13M, 4.47M, 1.05M)."""
        modules = {
            "representation": self.representation_network,
            "dynamics": self.dynamics_network,
            "prediction": self.prediction_network,
            "projection": self.projection,
            "projection_head": self.projection_head,
        }
        counts = {k: sum(p.numel() for p in m.parameters()) for k, m in modules.items()}
        counts["total"] = sum(counts.values())
        return counts

    def extra_repr(self) -> str:
        counts = ", ".join(f"{k}={v / 1e6:.3f}M" for k, v in self.num_parameters().items())
        return (
            f"size={self.cfg.size}, obs_shape={self.obs_shape}, latent={self.latent_shape}, "
            f"downsample={self.downsample}, params: {counts}"
        )


@contextlib.contextmanager
def frozen_running_stats(model: torch.nn.Module) -> Iterator[None]:
    """Train-mode forward passes inside normalise with their batch statistics but leave every
    BatchNorm's running statistics as they were (momentum 0; the batch counters put back).
    It writes nothing that autograd has saved, so a backward through passes before, inside and
    after it stays valid (copying saved buffers back would break it)."""
    norms = [m for m in model.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
    saved = [(m.momentum, None if m.num_batches_tracked is None else m.num_batches_tracked.clone())
             for m in norms]  # fmt: skip
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        with torch.no_grad():
            for m, (momentum, count) in zip(norms, saved):
                m.momentum = momentum
                if count is not None:
                    m.num_batches_tracked.copy_(count)


def _stay_eval(self: torch.nn.Module, mode: bool = True) -> torch.nn.Module:
    """``train()`` of a frozen component: it (and its BatchNorm statistics) stays in eval mode."""
    return torch.nn.Module.train(self, False)


def freeze_component(model: EfficientZeroNet, name: str) -> None:
    """Take component ``name`` out of training: no gradients (so not in an optimiser built
    afterwards) and its modules kept in eval mode, whatever ``model.train()`` says."""
    import types

    for p in model.component_parameters(name):
        p.requires_grad_(False)
    prefixes = COMPONENTS[name]
    for key, module in model.named_children():
        if f"{key}." in prefixes:
            module.train = types.MethodType(_stay_eval, module)
            module.eval()


__all__ = [
    "COMPONENTS",
    "DOWNSAMPLE_MIN_SIZE",
    "EfficientZeroNet",
    "NetworkOutput",
    "ResidualBlock",
    "action_planes",
    "freeze_component",
    "frozen_running_stats",
    "legal_logits",
]
