"""EfficientZero networks and the inference API (spec A3, A3.6, B2, B3)."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch

from xtra.config import paper, tiny
from xtra.errors import CheckpointError, ConfigError
from xtra.model import COMPONENTS, EfficientZeroNet, NetworkOutput, action_planes, legal_logits

ATARI = (12, 96, 96)
MINATAR = (12, 10, 10)


def tiny_cfg(**changes):
    """`tiny`'s sizes with EfficientZero's BatchNorm (A3) unless ``norm`` says otherwise."""
    return replace(tiny().model, **{"norm": "batch", **changes})


def make_net(cfg=None, obs_shape=MINATAR, seed=0) -> EfficientZeroNet:
    torch.manual_seed(seed)
    return EfficientZeroNet(cfg if cfg is not None else tiny_cfg(), obs_shape)


def random_obs(batch: int, obs_shape, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, *obs_shape), generator=gen, dtype=torch.uint8)


def randomize_(net: EfficientZeroNet, seed: int = 0) -> EfficientZeroNet:
    """Non-zero heads and non-trivial BN affine/statistics, so outputs depend on every part.

    Conv/Linear weights keep PyTorch's default init (which keeps activations at scale);
    zero-initialised last layers (A3.4) get small random values.
    """
    gen = torch.Generator().manual_seed(seed)

    def noise(t, scale):
        return torch.randn(t.shape, generator=gen) * scale

    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.weight.copy_(1 + noise(m.weight, 0.2))
                m.bias.copy_(noise(m.bias, 0.2))
                m.running_mean.copy_(noise(m.running_mean, 0.1))
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
            elif isinstance(m, torch.nn.Linear) and not m.weight.any():
                m.weight.copy_(noise(m.weight, 0.1))
                m.bias.copy_(noise(m.bias, 0.1))
    return net


# --------------------------------------------------------------------------- sizes (A3)


def _spec_counts():
    """Hand counts of A3 for C=64, 96x96x12 input, A=18, S=300 (used modules only)."""
    rb32 = 2 * (32 * 32 * 9) + 2 * 64  # ResidualBlock(32): two convs + two BN
    rb64 = 2 * (64 * 64 * 9) + 2 * 128
    down = (32 * 64 * 9 + 128) + (64 * 64 * 9 + 128) + 32 * 64 * 9  # + conv shortcut
    stem = 12 * 32 * 9 + 64
    lstm = 4 * 512 * (576 + 512) + 2 * 4 * 512
    head = lambda i, o: (i * 32 + 32) + 64 + (32 * o + o)  # noqa: E731  Linear-BN-Linear
    return {
        "ez_repr": stem + rb32 + down + 3 * rb64,
        "ezl_repr": stem + 4 * rb32 + down + 12 * rb64,
        "dynamics": (65 * 64 * 9 + 128) + rb64 + (64 * 16 + 16 + 32) + lstm + 1024 + head(512, 601),
        "lstm": lstm,
        "prediction": rb64 + 2 * (64 * 16 + 16 + 32) + head(576, 601) + head(576, 18),
        "projection": (2304 * 1024 + 1024) + 2 * (1024 * 1024 + 1024) + 3 * 2048,
        "projection_head": (1024 * 512 + 512) + 1024 + (512 * 1024 + 1024),
    }


def test_parameter_counts_match_spec_a3():
    ez = EfficientZeroNet(replace(paper().model, size="ez"), ATARI).num_parameters()
    ezl = EfficientZeroNet(replace(paper().model, size="ez-l"), ATARI).num_parameters()
    # Spec A3's rounded figures (millions, 2 decimals).
    approx = {
        "representation": (0.32, 1.04),
        "dynamics": (2.38, 2.38),
        "prediction": (0.13, 0.13),
        "projection": (4.47, 4.47),
        "projection_head": (1.05, 1.05),
    }
    for name, (m_ez, m_ezl) in approx.items():
        assert abs(ez[name] / 1e6 - m_ez) < 0.005, (name, ez[name])
        assert abs(ezl[name] / 1e6 - m_ezl) < 0.005, (name, ezl[name])
    net = EfficientZeroNet(paper().model, ATARI)
    lstm = sum(p.numel() for p in net.dynamics_network.lstm.parameters())
    assert abs(lstm / 1e6 - 2.23) < 0.005
    # And the exact counts from the layer list.
    c = _spec_counts()
    assert ez["representation"] == c["ez_repr"] == 318_016
    assert ezl["representation"] == c["ezl_repr"] == 1_039_552
    assert ez["dynamics"] == c["dynamics"] == 2_382_281
    assert lstm == c["lstm"]
    assert ez["prediction"] == c["prediction"] == 133_611
    assert ez["projection"] == c["projection"] == 4_465_664
    assert ez["projection_head"] == c["projection_head"] == 1_051_136
    assert ez["total"] == sum(v for k, v in ez.items() if k != "total")
    assert "representation=" in repr(net)


# --------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("size", ["ez", "ez-l"])
def test_atari_shapes_full_size(size):
    net = EfficientZeroNet(replace(paper().model, size=size), ATARI).eval()
    assert net.downsample and net.latent_shape == (64, 6, 6)
    with torch.no_grad():
        out = net.initial_inference(random_obs(2, ATARI))
        assert out.latent.shape == (2, 64, 6, 6)
        assert out.policy_logits.shape == (2, 18)
        assert out.value_logits.shape == (2, 601)
        assert out.value.shape == out.value_prefix.shape == (2,)
        assert [t.shape for t in out.lstm_state] == [(1, 2, 512), (1, 2, 512)]
        nxt = net.recurrent_inference(out.latent, out.lstm_state, torch.tensor([0, 17]))
        assert nxt.latent.shape == (2, 64, 6, 6)
        assert nxt.value_prefix.shape == (2,)
        assert net.project(nxt.latent).shape == (2, 1024)


@pytest.mark.parametrize("size", ["ez", "ez-l"])
@pytest.mark.parametrize("obs_shape", [MINATAR, (4, 7, 9), ATARI])
def test_shapes_tiny_config(size, obs_shape):
    cfg = tiny_cfg(size=size)
    net = make_net(cfg, obs_shape)
    hw = (6, 6) if obs_shape == ATARI else obs_shape[1:]
    assert net.latent_shape == (cfg.num_channels, *hw)
    b = 3
    out = net.initial_inference(random_obs(b, obs_shape))
    assert isinstance(out, NetworkOutput)
    assert out.latent.shape == (b, cfg.num_channels, *hw)
    assert out.policy_logits.shape == (b, 18)
    assert out.value_logits.shape == (b, 2 * cfg.support_size + 1)
    assert out.lstm_state[0].shape == (1, b, cfg.lstm_hidden)
    nxt = net.recurrent_inference(out.latent, out.lstm_state, torch.tensor([1, 4, 17]))
    assert nxt.latent.shape == out.latent.shape
    assert nxt.lstm_state[1].shape == (1, b, cfg.lstm_hidden)
    latent, state, vp_logits = net.dynamics(out.latent, out.lstm_state, torch.tensor([1, 4, 17]))
    assert vp_logits.shape == (b, 2 * cfg.support_size + 1)
    assert net.project(latent, with_grad=True).shape == (b, cfg.proj_out)
    target = net.project(latent, with_grad=False)
    assert target.shape == (b, cfg.proj_out) and not target.requires_grad


def test_downsampling_is_chosen_by_input_size():
    assert make_net(obs_shape=(3, 32, 32)).latent_shape[1:] == (2, 2)
    assert make_net(obs_shape=(3, 31, 31)).latent_shape[1:] == (31, 31)
    small = make_net(obs_shape=(3, 10, 10))
    assert not hasattr(small.representation_network, "stage1")  # no unused modules


def test_uint8_and_float_observations_agree():
    net = make_net().eval()
    obs = random_obs(2, MINATAR)
    torch.testing.assert_close(net.represent(obs), net.represent(obs.float() / 255))


def test_bad_observation_shape_is_rejected():
    with pytest.raises(ValueError, match="observation shape"):
        make_net().initial_inference(random_obs(2, (12, 9, 9)))
    net = make_net()
    out = net.initial_inference(random_obs(2, MINATAR))
    with pytest.raises(ValueError, match="action_ids"):
        net.recurrent_inference(out.latent, out.lstm_state, torch.tensor([[1], [2]]))


# --------------------------------------------------------------------------- init_zero (A3.4)


@pytest.mark.parametrize("training", [True, False])
def test_zero_init_gives_uniform_policy_and_zero_values(training):
    net = make_net(tiny_cfg(size="ez-l")).train(training)
    out = net.initial_inference(random_obs(4, MINATAR))
    assert torch.equal(out.policy_logits, torch.zeros(4, 18))
    assert torch.equal(out.value, torch.zeros(4))
    assert torch.equal(out.value_prefix, torch.zeros(4))
    nxt = net.recurrent_inference(out.latent, out.lstm_state, torch.tensor([0, 3, 7, 17]))
    assert torch.equal(nxt.value_prefix, torch.zeros(4))
    assert torch.equal(nxt.value, torch.zeros(4))
    probs = torch.softmax(nxt.policy_logits, -1)
    torch.testing.assert_close(probs, torch.full((4, 18), 1 / 18))


def test_without_zero_init_heads_are_not_zero():
    net = make_net(tiny_cfg(init_zero=False)).eval()
    out = net.initial_inference(random_obs(4, MINATAR))
    assert out.policy_logits.abs().sum() > 0
    assert out.value_logits.std() > 0


# --------------------------------------------------------------------------- actions (A3.3, B2)


def test_action_plane_is_ale_id_over_18():
    planes = action_planes(torch.tensor([0, 9, 17]), 18, "plane", (3, 4))
    assert planes.shape == (3, 1, 3, 4)
    for i, a in enumerate([0, 9, 17]):
        assert torch.equal(planes[i], torch.full((1, 3, 4), a / 18))
    one_hot = action_planes(torch.tensor([2, 5]), 18, "one_hot", (2, 2))
    assert one_hot.shape == (2, 18, 2, 2)
    assert torch.equal(one_hot[:, :, 0, 0].argmax(-1), torch.tensor([2, 5]))
    assert torch.equal(one_hot.sum(1), torch.ones(2, 2, 2))


def _dynamics_input(encoding: str) -> tuple[torch.Tensor, torch.Tensor, int]:
    """g's conv input for 3 states and actions 0, 6, 17: (input, latent, latent channels)."""
    net = make_net(tiny_cfg(action_encoding=encoding)).eval()
    seen = {}
    net.dynamics_network.conv.register_forward_pre_hook(lambda m, args: seen.update(x=args[0]))
    latent = net.represent(random_obs(3, MINATAR))
    net.dynamics(latent, net.initial_lstm_state(3), torch.tensor([0, 6, 17]))
    return seen["x"], latent, net.cfg.num_channels


def test_dynamics_sees_latent_and_action_plane():
    x, latent, channels = _dynamics_input("plane")
    assert x.shape == (3, channels + 1, 10, 10)
    assert torch.equal(x[:, :-1], latent)
    assert torch.equal(x[:, -1, 0, 0], torch.tensor([0, 6, 17]) / 18)
    assert torch.equal(x[:, -1], x[:, -1, :1, :1].expand(-1, 10, 10))


def test_dynamics_sees_latent_and_one_hot_action_planes():
    x, latent, channels = _dynamics_input("one_hot")
    assert x.shape == (3, channels + 18, 10, 10)
    assert torch.equal(x[:, :channels], latent)
    assert torch.equal(x[:, channels:].amax((2, 3)).argmax(-1), torch.tensor([0, 6, 17]))
    assert torch.equal(x[:, channels:].sum(1), torch.ones(3, 10, 10))


@pytest.mark.parametrize("encoding", ["plane", "one_hot"])
def test_dynamics_output_depends_on_action(encoding):
    net = randomize_(make_net(tiny_cfg(action_encoding=encoding))).eval()
    latent = net.represent(random_obs(1, MINATAR)).expand(3, -1, -1, -1)
    state = net.initial_lstm_state(3)
    nxt, (hx, _), vp = net.dynamics(latent, state, torch.tensor([0, 5, 17]))
    for a, b in [(0, 1), (1, 2), (0, 2)]:
        assert not torch.allclose(nxt[a], nxt[b])
        assert not torch.allclose(hx[0, a], hx[0, b])
        assert not torch.allclose(vp[a], vp[b])


def test_lstm_state_is_carried():
    net = randomize_(make_net()).eval()
    latent = net.represent(random_obs(2, MINATAR))
    zero = net.initial_lstm_state(2)
    _, state, vp_zero = net.dynamics(latent, zero, torch.tensor([1, 1]))
    _, _, vp_carried = net.dynamics(latent, state, torch.tensor([1, 1]))
    assert not torch.allclose(vp_zero, vp_carried)


def test_recurrent_inference_is_dynamics_then_predict():
    net = randomize_(make_net()).eval()
    root = net.initial_inference(random_obs(2, MINATAR))
    actions = torch.tensor([3, 11])
    out = net.recurrent_inference(root.latent, root.lstm_state, actions)
    latent, state, vp_logits = net.dynamics(root.latent, root.lstm_state, actions)
    policy, value = net.predict(latent)
    torch.testing.assert_close(out.latent, latent)
    torch.testing.assert_close(out.lstm_state[0], state[0])
    torch.testing.assert_close(out.policy_logits, policy)
    torch.testing.assert_close(out.value_logits, value)
    assert out.value_prefix.abs().sum() > 0 and out.value.dtype == torch.float32


def test_legal_logits():
    logits = torch.arange(36.0).reshape(2, 18)
    torch.testing.assert_close(legal_logits(logits, [0, 2, 11]), logits[:, [0, 2, 11]])
    per_row = torch.tensor([[0, 1, 2], [17, 3, 4]])
    torch.testing.assert_close(
        legal_logits(logits, per_row), torch.tensor([[0.0, 1, 2], [35, 21, 22]])
    )


# --------------------------------------------------------------------------- components (B3)


def test_components_partition_the_parameters():
    net = make_net()
    ids = {name: {id(p) for p in net.component_parameters(name)} for name in COMPONENTS}
    union = set().union(*ids.values())
    assert union == {id(p) for p in net.parameters()}
    assert sum(len(v) for v in ids.values()) == len(union)
    with pytest.raises(ConfigError, match="unknown network component"):
        list(net.component_parameters("encoder"))


def test_load_components_only_touches_the_named_ones():
    source = randomize_(make_net(seed=1), seed=1)
    net = make_net(seed=2)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    loaded = net.load_components(source.state_dict(), {"representation"})
    after = net.state_dict()
    assert loaded and all(k.startswith("representation_network.") for k in loaded)
    assert set(loaded) == {k for k in after if k.startswith("representation_network.")}
    assert any(k.endswith("running_mean") for k in loaded)  # BN buffers travel too
    for k, v in after.items():
        if k in loaded:
            assert torch.equal(v, source.state_dict()[k]), k
        else:
            assert torch.equal(v, before[k]), k
    # Parameters are updated in place (optimisers keep pointing at them).
    p = next(net.component_parameters("representation"))
    assert p is next(iter(net.representation_network.parameters()))


def test_load_components_several_and_errors():
    source = randomize_(make_net(seed=1), seed=1)
    net = make_net(seed=2)
    loaded = net.load_components(source.state_dict(), ["representation", "dynamics", "prediction"])
    for k, v in net.state_dict().items():
        same = torch.equal(v, source.state_dict()[k])
        assert same == (not k.startswith(("projection.", "projection_head."))) or k.endswith(
            "num_batches_tracked"
        ), k
    assert len(loaded) == len(
        [k for k in net.state_dict() if not k.startswith(("projection.", "projection_head."))]
    )
    partial = {k: v for k, v in source.state_dict().items() if "lstm" not in k}
    with pytest.raises(CheckpointError, match="lacks"):
        net.load_components(partial, {"dynamics"})
    other = make_net(tiny_cfg(size="ez-l"), obs_shape=(12, 8, 8))
    with pytest.raises(CheckpointError, match="shape"):
        net.load_components(other.state_dict(), {"prediction"})


# --------------------------------------------------------------------------- precision, devices


def test_autocast_bf16_cpu_forward_is_finite():
    net = randomize_(make_net(tiny_cfg(init_zero=False)))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        root = net.initial_inference(random_obs(4, MINATAR))
        out = net.recurrent_inference(root.latent, root.lstm_state, torch.tensor([0, 1, 2, 3]))
        proj = net.project(out.latent)
    for t in (out.latent, out.policy_logits, out.value_logits, out.value, out.value_prefix, proj):
        assert torch.isfinite(t.float()).all()
    assert out.value.dtype == torch.float32 and out.value_prefix.dtype == torch.float32


def test_backward_reaches_every_parameter():
    net = randomize_(make_net(tiny_cfg(init_zero=False)))
    root = net.initial_inference(random_obs(4, MINATAR))
    latent, _, vp = net.dynamics(root.latent, root.lstm_state, torch.tensor([0, 1, 2, 3]))
    policy, value = net.predict(latent)
    loss = vp.sum() + policy.sum() + value.sum() + root.value_logits.sum()
    loss = loss + net.project(latent).sum() - net.project(root.latent, with_grad=False).sum()
    loss.backward()
    no_grad = [k for k, p in net.named_parameters() if p.grad is None]
    assert no_grad == []


@pytest.mark.parametrize("obs_shape", [MINATAR, ATARI])
def test_channels_last_changes_the_layout_not_the_function(obs_shape):
    """model.channels_last: every conv weight NHWC after building, moving and loading a state
    dict; outputs and gradients as close to a float64 computation as NCHW's are."""
    cfg = tiny_cfg(init_zero=False)
    ref = randomize_(make_net(cfg, obs_shape))
    net = make_net(replace(cfg, channels_last=True), obs_shape).to("cpu")
    net.load_state_dict(ref.state_dict())
    convs = [m.weight for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    assert not all(w.is_contiguous() for w in convs)  # NHWC, not a view of NCHW order

    obs, actions = random_obs(4, obs_shape), torch.tensor([0, 1, 2, 3])
    outputs, grads = [], []
    for model, dtype in ((copy.deepcopy(ref).double(), torch.float64), (ref, torch.float32),
                         (net, torch.float32)):  # fmt: skip
        default = torch.get_default_dtype()
        torch.set_default_dtype(dtype)  # the LSTM's zero state
        try:
            root = model.initial_inference(obs.to(dtype))
            out = model.recurrent_inference(root.latent, root.lstm_state, actions)
            loss = out.value_logits.sum() + out.policy_logits.sum()
            loss = loss + model.project(out.latent).sum()
            model.zero_grad()
            loss.backward()
        finally:
            torch.set_default_dtype(default)
        outputs.append([root.value, root.policy_logits, out.latent, out.value_prefix, out.value])
        grads.append({k: p.grad for k, p in model.named_parameters() if p.grad is not None})
    exact, nchw, nhwc = outputs
    for a, b, c in zip(exact, nchw, nhwc):
        torch.testing.assert_close(b.double(), a, rtol=1e-3, atol=1e-4)
        torch.testing.assert_close(c.double(), a, rtol=1e-3, atol=1e-4)
    assert grads[0].keys() == grads[1].keys() == grads[2].keys()
    for k, g in grads[0].items():
        scale = g.abs().max()
        if scale > 1e-3:  # conv biases under BatchNorm get ~0 gradients: nothing to compare
            # float32 over 96x96 frames: NCHW is off by up to 2.5e-4 of the scale, NHWC 9e-4
            assert (grads[1][k].double() - g).abs().max() <= 2e-3 * scale, k
            assert (grads[2][k].double() - g).abs().max() <= 2e-3 * scale, k


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_autocast_matches_device():
    net = randomize_(make_net(tiny_cfg(init_zero=False))).cuda().eval()
    obs = random_obs(4, MINATAR).cuda()
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.float16):
        root = net.initial_inference(obs)
        out = net.recurrent_inference(root.latent, root.lstm_state, torch.tensor([0, 1, 2, 17]))
    assert out.latent.is_cuda and out.value.dtype == torch.float32
    assert torch.isfinite(out.value_prefix).all()


# --------------------------------------------------------------------------- model.norm


def test_layer_norm_network_is_the_same_in_train_and_eval_mode_and_per_sample():
    """``model.norm=layer`` keeps no running statistics: what the search and the evaluation see
    (eval mode) is the network that trained (train mode), and a sample's outputs do not depend
    on the rest of its batch."""
    net = randomize_(make_net(tiny_cfg(norm="layer")))
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in net.modules())
    obs = random_obs(6, MINATAR).float() / 255
    actions = torch.tensor([0, 3, 4, 1, 2, 5])
    outs = {}
    for mode in (True, False):
        net.train(mode)
        with torch.no_grad():
            root = net.initial_inference(obs)
            step = net.recurrent_inference(root.latent, root.lstm_state, actions)
            alone = net.recurrent_inference(root.latent[:1], _first(root.lstm_state), actions[:1])
        outs[mode] = (root.value, root.policy_logits, step.value_prefix, step.latent)
        torch.testing.assert_close(alone.value_prefix, step.value_prefix[:1])
        torch.testing.assert_close(alone.latent, step.latent[:1])
    for a, b in zip(outs[True], outs[False]):
        torch.testing.assert_close(a, b)
    # The batch-norm network differs between the two modes (its running statistics are not the
    # batch's), which is what the switch removes.
    bn = randomize_(make_net())
    with torch.no_grad():
        train_v = bn.train().initial_inference(obs).value
        eval_v = bn.eval().initial_inference(obs).value
    assert not torch.allclose(train_v, eval_v)


def _first(state):
    return tuple(s[:, :1] for s in state)
