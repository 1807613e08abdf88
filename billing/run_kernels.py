"""Numba kernels of the bill run: pure functions over arrays and preallocated outputs."""

from __future__ import annotations

from numba import njit

SUM_BOUND = 1 << 62  # a group sum at or past this is refused before int64 could wrap


@njit(cache=True, nogil=True)
def _group_sums(rows, account, service, reason, usage, rated, covered, net, n_services,
                count_out, usage_out, rated_out, covered_out, net_out):
    """Add up rated rows (reason 0) of `rows` per (account, service) into the *_out arrays,
    indexed account * n_services + service. Returns False when a sum reached SUM_BOUND."""
    for k in range(len(rows)):
        i = rows[k]
        if reason[k] != 0:
            continue
        g = account[i] * n_services + service[i]
        count_out[g] += 1
        usage_out[g] += usage[i]
        rated_out[g] += rated[k]
        covered_out[g] += covered[k]
        net_out[g] += net[k]
        if (usage_out[g] >= SUM_BOUND or rated_out[g] >= SUM_BOUND
                or net_out[g] >= SUM_BOUND or net_out[g] <= -SUM_BOUND):
            return False
    return True
