"""``core.permutation.random_permutation``: a permutation, uniform, and jax's round rule."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metarl_jax.core import permutation
from metarl_jax.core.permutation import num_rounds, random_permutation


@pytest.mark.parametrize("n", [0, 1, 2, 3, 64, 1000, 4096])
def test_is_a_permutation(n):
    perm = np.asarray(jax.jit(random_permutation, static_argnums=1)(jax.random.PRNGKey(n), n))
    assert perm.dtype == np.int32 and perm.shape == (n,)
    np.testing.assert_array_equal(np.sort(perm), np.arange(n))


def test_uniform_over_all_orders_of_four():
    # 24 orders, 9600 draws: each order expected 400 times; chi-square with 23 dof has
    # p = 1e-4 at 56.9, so a biased shuffle (e.g. one round's ties kept in place) fails.
    draws = np.asarray(jax.jit(jax.vmap(lambda k: random_permutation(k, 4)))(
        jax.random.split(jax.random.PRNGKey(0), 9600)))
    index = {order: i for i, order in enumerate(itertools.permutations(range(4)))}
    counts = np.bincount([index[tuple(d)] for d in draws], minlength=24)
    expected = len(draws) / 24
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 56.9, (chi2, counts)


def test_positions_uniform_and_keys_matter():
    n, draws = 64, 2000
    perms = np.asarray(jax.jit(jax.vmap(lambda k: random_permutation(k, n)))(
        jax.random.split(jax.random.PRNGKey(1), draws)))
    # Where element 0 lands: uniform over 64 positions (chi-square, 63 dof, p = 1e-4 at 112).
    counts = np.bincount(np.argmax(perms == 0, axis=1), minlength=n)
    chi2 = float(((counts - draws / n) ** 2 / (draws / n)).sum())
    assert chi2 < 112.0, chi2
    assert len({tuple(p) for p in perms}) == draws  # distinct keys, distinct permutations


@pytest.mark.parametrize("n", [2, 64, 4096, 16384, 2**20, 2**24])
def test_rounds_carry_jaxs_random_bits(n):
    """Every round's packed key holds 32 - ceil(log2 n) random bits; together >= 3 log2 n."""
    random_bits = 32 - (n - 1).bit_length()
    rounds = num_rounds(n)
    assert rounds * random_bits >= permutation.EXPONENT * math.log2(n)
    assert (rounds - 1) * random_bits < permutation.EXPONENT * math.log2(n)


def test_falls_back_to_jax_when_too_few_bits_are_left(monkeypatch):
    monkeypatch.setattr(permutation, "MIN_RANDOM_BITS", 30)  # n = 8 leaves 29 bits
    key = jax.random.PRNGKey(3)
    np.testing.assert_array_equal(random_permutation(key, 8),
                                  jax.random.permutation(key, 8).astype(jnp.int32))


def test_rejects_negative_size():
    with pytest.raises(ValueError, match="n >= 0"):
        random_permutation(jax.random.PRNGKey(0), -1)
