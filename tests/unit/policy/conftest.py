"""Hypothesis profiles for the policy tests, chosen with pytest's ``--hypothesis-profile``.

Registered here (a conftest that pytest loads before Hypothesis reads the option whenever the
command names tests/unit/policy) so that no test reads the environment:

- no option: the always-on profile, a few hundred policy sets per differential test (``make
  test``);
- ``policy-long``: thousands per differential test (``make bench``);
- ``policy-mutation``: the mutation-testing oracle (``make mutation``), few examples, derandomized
  so that every mutant meets the same examples and a verdict can be reproduced.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large]

settings.register_profile(
    "policy-long", max_examples=2000, deadline=None, suppress_health_check=_QUIET
)
settings.register_profile(
    "policy-mutation",
    max_examples=60,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=_QUIET,
)
