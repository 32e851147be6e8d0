"""Helpers of the template repository itself, shared by its tests, benchmarks, scripts and CI.

``render``: the one ``copier copy`` wrapper. ``testkit``: the generated bots' test kit
(``template/ecosystem_shared/testing``, copied verbatim into every bot) imported by path, so
the repository starts PostgreSQL and waits for things with the same code the bots use.
"""
