"""BPE of one long pre-token in O(n log n), with exactly the original's merge order.

The original (and `Encoder._merge`) finds the lowest-ranked adjacent pair by scanning the
whole word once per pass, so a pre-token of n bytes with no break in it (a megabyte of
letters or digits is one pre-token) costs O(n) per pass and O(n^2) in all. Here the parts
are a linked list over positions and the merge candidates sit in one bucket per rank, with a
heap of the ranks that have a bucket: each merge costs O(1) plus a heap step per new rank.

A pass takes every candidate of the lowest rank, left to right, and merges those that are
still adjacent and unchanged: every non-overlapping occurrence of that pair, as the
original's pass does. The pairs a merge creates can never have the pass's own rank (a rank
names one pair, and the product is longer than either half), so they go straight into their
own buckets and are merged in later passes. That differs from tiktoken's one merge at a
time, which a vocabulary can tell apart (a product that forms a pair of lower rank than the
pass's); the tests build such a vocabulary.

Parts are token ids, and a pair (a, b) is the integer `a << shift | b`, so the inner loop
does integer dictionary lookups and no string concatenation.
"""
from __future__ import annotations

import heapq


def pair_table(encoder: dict[str, int], ranks: dict[tuple[str, str], int]
               ) -> tuple[dict[int, int], int]:
    """({a << shift | b: rank << shift | id of a + b}, shift) for every merge (a, b)."""
    shift = max(max(encoder.values(), default=0), 1).bit_length()
    table = {}
    for (a, b), rank in ranks.items():
        try:
            table[encoder[a] << shift | encoder[b]] = rank << shift | encoder[a + b]
        except KeyError as e:
            raise ValueError(f"the merge {a!r} {b!r} uses or makes {e.args[0]!r}, which is "
                             f"not in the vocabulary") from None
    return table, shift


def merge_ids(word: list[int], table: dict[int, int], shift: int) -> list[int]:
    """The token ids that BPE makes of `word`, the ids of a pre-token's single bytes."""
    get = table.get
    n = len(word)
    mask = (1 << shift) - 1
    part = list(word)  # part[i]: the token starting at byte i; None once merged leftwards
    after = list(range(1, n + 1))  # the next live position; n past the end
    before = list(range(-1, n - 1))  # the previous live position; -1 before the start
    rank = [get(a << shift | b) for a, b in zip(word, word[1:])]  # rank of (i, after[i])
    rank.append(None)
    buckets: dict[int, list[int]] = {}
    for i, r in enumerate(rank):
        if r is not None:
            bucket = buckets.get(r)
            if bucket is None:
                buckets[r] = [i]
            else:
                bucket.append(i)
    heap = list(buckets)
    heapq.heapify(heap)

    def candidate(i: int, r: int) -> None:
        bucket = buckets.get(r)
        if bucket is None:
            buckets[r] = [i]
            heapq.heappush(heap, r)
        else:
            bucket.append(i)

    while heap:
        r = heapq.heappop(heap)  # rank << shift | the merged token's id
        token = r & mask
        todo = buckets.pop(r)
        todo.sort()  # left to right; nearly sorted already
        for i in todo:
            if rank[i] != r:  # i was merged, or its pair changed since it was queued
                continue
            j = after[i]
            part[i] = token
            part[j] = rank[j] = None
            after[i] = k = after[j]
            if k == n:
                rank[i] = None
            else:
                before[k] = i
                rank[i] = x = get(token << shift | part[k])
                if x is not None:
                    candidate(i, x)
            h = before[i]
            if h >= 0:
                rank[h] = x = get(part[h] << shift | token)
                if x is not None:
                    candidate(h, x)
    return [p for p in part if p is not None]
