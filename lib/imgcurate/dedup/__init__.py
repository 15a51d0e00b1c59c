"""Duplicate finding: exact (bytes and pixels), perceptual (pHash) and semantic (SemDeDup).

One module per role: ``hashes`` (per-image hashes), ``exact`` and ``near`` (group
samples by hash), ``components`` (connected components in Spark), ``semantic``
(k-means then per-cluster similarity), ``keep`` (which member of a group stays).
The stage that ties them together is :mod:`imgcurate.stages.dedup`.
"""
