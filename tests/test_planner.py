"""The planner's CUDA-graph path: the same outputs and searches as plain eager calls."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch
from test_model import MINATAR, make_net, random_obs, randomize_, tiny_cfg

from xtra.act.planner import graph_bucket
from xtra.config import tiny
from xtra.learn.loop import make_planner

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def test_graph_bucket():
    got = [graph_bucket(b) for b in (1, 2, 3, 8, 9, 256, 257, 512, 1536, 1537)]
    assert got == [1, 2, 4, 8, 16, 256, 512, 512, 1536, 1792]


def _planner_pair(encoding: str, amp: bool):
    cfg = replace(tiny(), model=tiny_cfg(action_encoding=encoding, init_zero=False))
    cfg = replace(cfg, search=replace(cfg.search, tie_break="lowest"))
    net = randomize_(make_net(cfg.model)).cuda().eval()
    eager_cfg = replace(cfg, search=replace(cfg.search, cuda_graphs=False))
    graphed = make_planner(net, cfg, torch.device("cuda"), amp=amp)
    eager = make_planner(net, eager_cfg, torch.device("cuda"), amp=amp)
    assert graphed.graphed is not None and eager.graphed is None
    return net, graphed, eager


@needs_cuda
@pytest.mark.parametrize("encoding", ["plane", "one_hot"])
@pytest.mark.parametrize("amp", [False, True])
def test_graphed_recurrent_matches_eager(encoding, amp):
    net, graphed, eager = _planner_pair(encoding, amp)
    # fp32: batch 5 runs padded to 8, and cuDNN picks other (TF32) convolution algorithms at
    # another batch size: logits then differ by ~2e-4.
    tol = 1e-2 if amp else 1e-3
    with torch.no_grad():
        for batch in (3, 8, 300, 5):  # 3 then 5: one graph (bucket 4 vs 8) per size class
            root = eager.root_inference(random_obs(batch, MINATAR, seed=batch).cuda())
            ids = torch.randint(0, net.cfg.policy_size, (batch,), device="cuda")
            want = eager.recurrent(root.latent, root.lstm_state, ids)
            got = graphed.recurrent(root.latent, root.lstm_state, ids)
            for name in ("latent", "value_prefix", "value", "value_logits", "policy_logits"):
                a, b = getattr(got, name), getattr(want, name)
                assert a.shape == b.shape, name
                torch.testing.assert_close(
                    a.float(), b.float(), rtol=tol, atol=tol, msg=lambda m, n=name: f"{n}: {m}"
                )
            for a, b in zip(got.lstm_state, want.lstm_state):
                torch.testing.assert_close(a.float(), b.float(), rtol=tol, atol=tol)
        assert sorted(graphed.graphed.graphs) == [4, 8, 512]

        # New weights loaded in place reach the captured graphs.
        other = randomize_(make_net(net.cfg, seed=1), seed=1).cuda().eval()
        net.load_state_dict(copy.deepcopy(other.state_dict()))
        root = eager.root_inference(random_obs(8, MINATAR, seed=9).cuda())
        ids = torch.zeros(8, dtype=torch.int64, device="cuda")
        with eager._autocast():
            want = other.recurrent_inference(root.latent, root.lstm_state, ids)
        got = graphed.recurrent(root.latent, root.lstm_state, ids)
        torch.testing.assert_close(got.value.float(), want.value.float(), rtol=tol, atol=tol)


@needs_cuda
def test_graphed_search_matches_eager_search():
    _, graphed, eager = _planner_pair("one_hot", amp=False)
    obs = random_obs(64, MINATAR, seed=3).cuda()
    legal = np.array([0, 1, 3, 4])
    a = eager.plan(obs, legal, add_noise=True, rng=np.random.default_rng(0))
    b = graphed.plan(obs, legal, add_noise=True, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(a.visit_counts, b.visit_counts)
    np.testing.assert_allclose(a.root_values, b.root_values, rtol=1e-4, atol=1e-5)
