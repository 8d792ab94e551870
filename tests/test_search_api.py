"""The public search API: defaults, rules, root value prefixes, numpy models, optional state,
the recurrent function's context, workspaces, the kernel cache and the doc's example."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from test_search_reference import _MOD, HashModel

from xtra.config import SearchConfig, paper
from xtra.search import (
    RULES,
    RecurrentOutput,
    SearchContext,
    draw_randomness,
    kernel_cache_path,
    reference_search,
    resolve_rules,
    search,
    search_kwargs,
    warm_up,
)
from xtra.search import mcts as mcts_module

ROOT = Path(__file__).resolve().parents[1]


def _numpy_batched(model: HashModel):
    """HashModel.batched on numpy arrays (the same float64 operations)."""

    def recurrent_fn(latent, lstm_state, action):
        h, c = lstm_state
        key = (latent[:, 0] * 1103515245 + action * 12345 + 1013904223) % _MOD
        idx = key % len(model.value)
        h1 = h + model.reward[idx].reshape(1, -1, 1)
        return key[:, None], (h1, c + 1.0), h1[0, :, 0], model.value[idx], model.logits[idx]

    return recurrent_fn


def _random_roots(rng, batch, num_slots, policy_size):
    legal = rng.random((batch, num_slots)) < rng.uniform(0.3, 1.0)
    legal[np.arange(batch), rng.integers(0, num_slots, batch)] = True
    action_ids = rng.integers(0, policy_size, (batch, num_slots))
    action_ids[~legal] = -1
    # The roots' "LSTM" h is their value prefix (the HashModel's h is the VP since the last reset).
    value_prefix = rng.normal(size=batch) * rng.choice([0.0, 0.1, 1.0, 10.0])
    return dict(
        latents=rng.integers(0, _MOD, batch),
        logits=rng.normal(size=(batch, policy_size)),
        legal=legal,
        action_ids=action_ids,
        value_prefix=value_prefix,
    )


def test_efficientzero_rules_match_reference_with_root_value_prefixes():
    """search(rules="efficientzero") through the public API, with random root value prefixes,
    against the plain-Python reference with EZ's rules (D-EZ-1, D-EZ-2, lowest ties), visit for
    visit, on random synthetic trees; noise on in half the cases."""
    rng = np.random.default_rng(2024)
    for case in range(150):
        batch, num_slots, policy_size = int(rng.integers(1, 7)), int(rng.integers(1, 9)), 10
        roots = _random_roots(rng, batch, num_slots, policy_size)
        model = HashModel(rng, policy_size, ties=str(rng.choice(["none", "exact", "near"])))
        kwargs = dict(
            num_simulations=int(rng.integers(1, 31)),
            discount=float(rng.choice([0.0, 0.5, 0.997**4, 1.0])),
            lstm_horizon=int(rng.choice([1, 2, 5])),
            value_delta_max=float(rng.choice([0.01, 0.0, 1.0])),
        )
        add_noise, seed = bool(rng.random() < 0.5), int(rng.integers(1 << 31))
        h0 = torch.from_numpy(roots["value_prefix"]).reshape(1, batch, 1)
        result = search(
            model.batched,
            torch.from_numpy(roots["latents"])[:, None],
            (h0, torch.zeros_like(h0)),
            torch.from_numpy(roots["logits"]),
            roots["legal"],
            roots["action_ids"],
            root_value_prefix=torch.from_numpy(roots["value_prefix"]),
            rules="efficientzero",
            add_noise=add_noise,
            rng=seed,
            **kwargs,
        )
        noise = draw_randomness(
            np.random.default_rng(seed),
            roots["legal"],
            num_simulations=kwargs["num_simulations"],
            add_noise=add_noise,
            dirichlet_alpha=0.3,
            tie_break="lowest",
        ).noise
        visits, values = reference_search(
            model.one,
            [int(x) for x in roots["latents"]],
            [(np.array([vp]), np.zeros(1)) for vp in roots["value_prefix"]],
            roots["logits"],
            roots["legal"],
            roots["action_ids"],
            c1=1.25,
            c2=19652.0,
            exploration_fraction=0.25,
            noise=noise,
            tie_keys=None,
            faithful_minmax_parent=True,
            faithful_parent_q_leak=True,
            root_value_prefix=roots["value_prefix"],
            **kwargs,
        )
        where = f"case {case}: {kwargs}, noise={add_noise}"
        np.testing.assert_array_equal(result.visit_counts, visits, err_msg=where)
        np.testing.assert_allclose(result.root_values, values, rtol=1e-9, atol=1e-9, err_msg=where)


def test_root_value_prefix_matters():
    """Against a root value prefix, the children's rewards change and so can the search."""
    rng = np.random.default_rng(4)
    model = HashModel(rng, 6, ties="none")
    differs = False
    for _ in range(10):
        roots = _random_roots(rng, 4, 6, 6)
        zero = torch.zeros(1, 4, 1, dtype=torch.float64)
        common = (
            model.batched,
            torch.from_numpy(roots["latents"])[:, None],
            (zero, zero.clone()),
            torch.from_numpy(roots["logits"]),
            roots["legal"],
            roots["action_ids"],
        )
        a = search(*common, rules="efficientzero", num_simulations=20)
        b = search(
            *common, rules="efficientzero", num_simulations=20, root_value_prefix=np.ones(4) * 3
        )
        differs |= bool((a.root_values != b.root_values).any())
    assert differs


def test_numpy_model_equals_torch_model():
    rng = np.random.default_rng(7)
    for _ in range(20):
        roots = _random_roots(rng, int(rng.integers(1, 6)), 5, 10)
        model = HashModel(rng, 10, ties="exact")
        batch = len(roots["latents"])
        kwargs = dict(num_simulations=25, lstm_horizon=2, add_noise=True, rng=3, tie_break="random")
        zero = np.zeros((1, batch, 1))
        a = search(
            model.batched,
            torch.from_numpy(roots["latents"])[:, None],
            (torch.from_numpy(zero), torch.from_numpy(zero.copy())),
            torch.from_numpy(roots["logits"]),
            roots["legal"],
            roots["action_ids"],
            **kwargs,
        )
        b = search(
            _numpy_batched(model),
            roots["latents"][:, None],
            (zero, zero.copy()),
            roots["logits"],
            roots["legal"],
            roots["action_ids"],
            **kwargs,
        )
        np.testing.assert_array_equal(a.visit_counts, b.visit_counts)
        np.testing.assert_array_equal(a.root_values, b.root_values)


def test_device_pools_path_equals_host_pools(monkeypatch):
    """The index_select driver (GPUs, states of more than two arrays) and the in-kernel gather
    driver (CPU) give the same searches; a third state array is carried along."""
    rng = np.random.default_rng(8)
    model = HashModel(rng, 10, ties="exact")
    roots = _random_roots(rng, 5, 6, 10)
    zero = torch.zeros(1, 5, 1, dtype=torch.float64)

    def three(latent, state, action):
        h, c, d = state
        out = model.batched(latent, (h, c), action)
        return RecurrentOutput(out[0], (*out[1], d + 1), *out[2:])

    args = (
        torch.from_numpy(roots["latents"])[:, None],
        (zero, zero.clone()),
        torch.from_numpy(roots["logits"]),
        roots["legal"],
        roots["action_ids"],
    )
    kwargs = dict(num_simulations=30, lstm_horizon=3, add_noise=True, rng=1)
    host = search(model.batched, *args, **kwargs)
    three_states = search(three, args[0], (zero, zero.clone(), zero.clone()), *args[2:], **kwargs)
    monkeypatch.setattr(mcts_module._HostPools, "usable", staticmethod(lambda *a: False))
    device = search(model.batched, *args, **kwargs)
    for other in (three_states, device):
        np.testing.assert_array_equal(host.visit_counts, other.visit_counts)
        np.testing.assert_array_equal(host.root_values, other.root_values)


def test_minimal_call_without_state():
    """Only the function, the latents and the logits: no state, every action legal."""
    calls = []

    def recurrent_fn(latent, state, action_ids):
        assert state is None
        calls.append(action_ids.copy())
        return latent + 1, None, np.zeros(len(latent)), np.ones(len(latent)), np.zeros((2, 4))

    result = search(recurrent_fn, np.zeros((2, 3), np.float32), root_logits=np.zeros((2, 4)))
    assert result.visit_counts.shape == (2, 4)
    np.testing.assert_array_equal(result.visit_counts.sum(axis=1), [50, 50])
    assert len(calls) == 50
    with pytest.raises(TypeError, match="root_logits"):
        search(recurrent_fn, np.zeros((2, 3)))


def test_context_describes_the_new_nodes():
    """A chain (one legal action): simulation s expands node s + 1 at depth s + 1 below node s."""
    seen = []

    class Model:
        def __call__(self, latent, state, action_ids, context):
            seen.append(context)
            return latent, state, np.zeros(1), np.zeros(1), np.zeros((1, 3))

    search(
        Model(),
        np.zeros((1, 1)),
        (np.zeros((1, 1, 2)),),
        root_logits=np.zeros((1, 3)),
        legal_mask=[[False, True, False]],
        num_simulations=7,
        lstm_horizon=3,
    )
    assert [c.simulation for c in seen] == list(range(7))
    assert all(isinstance(c, SearchContext) and c.num_simulations == 7 for c in seen)
    assert [int(c.depth[0]) for c in seen] == list(range(1, 8))
    assert [int(c.parent[0]) for c in seen] == list(range(7))
    assert all(int(c.slot[0]) == 1 and int(c.root_index[0]) == 0 for c in seen)
    assert [bool(c.reset[0]) for c in seen] == [d % 3 == 0 for d in range(1, 8)]


def test_context_detection():
    def plain(latent, state, action_ids):
        pass

    def keyword(latent, state, action_ids, *, context=None):
        pass

    class Bound:
        def method(self, latent, state, action_ids, context):
            pass

    assert not mcts_module._wants_context(plain)
    assert mcts_module._wants_context(keyword)
    assert mcts_module._wants_context(Bound().method)
    assert not mcts_module._wants_context(len)


def test_rules_and_overrides():
    assert resolve_rules("xtra") == RULES["xtra"]
    assert resolve_rules("efficientzero") == dict(
        tie_break="lowest", faithful_minmax_parent=True, faithful_parent_q_leak=True
    )
    assert resolve_rules("efficientzero", tie_break="random")["tie_break"] == "random"
    assert resolve_rules("xtra", faithful_minmax_parent=True)["faithful_minmax_parent"] is True
    with pytest.raises(ValueError, match="rules"):
        resolve_rules("muzero")


def test_defaults_are_the_configs_and_search_kwargs_still_work():
    """The keyword defaults equal SearchConfig's and the paper discount; the training loop's
    call with search_kwargs gives the same search as the defaults with rules="xtra"."""
    cfg = SearchConfig()
    m = mcts_module
    assert (m.NUM_SIMULATIONS, m.C1, m.C2) == (cfg.num_simulations, cfg.c1, cfg.c2)
    assert (m.VALUE_DELTA_MAX, m.LSTM_HORIZON) == (cfg.value_delta_max, cfg.lstm_horizon)
    assert (m.DIRICHLET_ALPHA, m.EXPLORATION_FRACTION) == (
        cfg.dirichlet_alpha,
        cfg.exploration_fraction,
    )
    assert m.DISCOUNT == paper().discount
    assert RULES["xtra"]["tie_break"] == cfg.tie_break
    rng = np.random.default_rng(5)
    model = HashModel(rng, 10, ties="exact")
    roots = _random_roots(rng, 4, 6, 10)
    zero = torch.zeros(1, 4, 1, dtype=torch.float64)
    args = (
        model.batched,
        torch.from_numpy(roots["latents"])[:, None],
        (zero, zero.clone()),
        torch.from_numpy(roots["logits"]),
        roots["legal"],
        roots["action_ids"],
    )
    a = search(
        *args, add_noise=True, rng=np.random.default_rng(1), **search_kwargs(cfg, m.DISCOUNT)
    )
    b = search(*args, add_noise=True, rng=1)
    np.testing.assert_array_equal(a.visit_counts, b.visit_counts)
    np.testing.assert_array_equal(a.root_values, b.root_values)


def test_workspace_reuse_and_nested_searches():
    """Repeated searches of one shape reuse a workspace and give the same results as the first;
    a search started inside recurrent_fn (same shape, workspace in use) gets its own."""
    rng = np.random.default_rng(9)
    model = HashModel(rng, 10, ties="none")
    roots = _random_roots(rng, 3, 5, 10)
    zero = torch.zeros(1, 3, 1, dtype=torch.float64)
    args = (
        torch.from_numpy(roots["latents"])[:, None],
        (zero, zero.clone()),
        torch.from_numpy(roots["logits"]),
        roots["legal"],
        roots["action_ids"],
    )
    first = search(model.batched, *args, num_simulations=12, rng=0)
    inner = []

    def nesting(latent, state, action):
        if not inner:
            inner.append(search(model.batched, *args, num_simulations=12, rng=0))
        return model.batched(latent, state, action)

    again = search(model.batched, *args, num_simulations=12, rng=0)
    nested = search(nesting, *args, num_simulations=12, rng=0)
    for other in (again, nested, inner[0]):
        np.testing.assert_array_equal(first.visit_counts, other.visit_counts)
        np.testing.assert_array_equal(first.root_values, other.root_values)


def _doc_example() -> str:
    text = (ROOT / "docs" / "search.md").read_text()
    section = text[text.index("## Searching with your own model") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_doc_example_runs():
    code = _doc_example()
    assert 'rules="efficientzero"' in code
    namespace: dict = {"__name__": "doc_example"}
    exec(compile(code, "docs/search.md", "exec"), namespace)  # asserts inside
    counts = namespace["result"].visit_counts
    assert counts.shape == (3, 2) and (counts.sum(axis=1) == 40).all()


def test_warm_up_and_cache_path():
    times = warm_up(parallel=False)
    assert set(times) == {"serial"} and times["serial"] >= 0
    path = kernel_cache_path()
    assert path is None or os.path.isdir(path)


def _cache_path_in_subprocess(env_updates: dict) -> str:
    env = dict(os.environ)
    env.pop("NUMBA_CACHE_DIR", None)
    env.update(env_updates)
    code = "import xtra.search as s; print(s.kernel_cache_path())"
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return proc.stdout.strip().splitlines()[-1]


def test_kernel_cache_directory_is_overridable_and_falls_back(tmp_path):
    """XTRA_CACHE_DIR moves the kernel cache; an unusable directory falls back without error."""
    path = _cache_path_in_subprocess({"XTRA_CACHE_DIR": str(tmp_path / "cache")})
    assert path.startswith(str(tmp_path / "cache" / "numba"))
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    path = _cache_path_in_subprocess({"XTRA_CACHE_DIR": str(blocker / "cache")})
    assert not path.startswith(str(blocker))
